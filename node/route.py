"""The router: which routes (and so which models) apply to a series."""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from .config import RouteConfig

__all__ = ["Router", "route_matches"]


def route_matches(route: RouteConfig, attrs: Mapping[str, Any]) -> bool:
    """Whether every rule of ``route.match`` holds for the series attributes ``attrs``.

    A rule is an exact value, a list of allowed values, or a regular expression
    (``"re:..."``, searched in the value). Values compare as strings, case-sensitively,
    after stripping spaces; a missing attribute matches no rule.
    """
    for keyword, rule in route.match.items():
        value = attrs.get(keyword)
        if value is None:
            return False
        text = str(value).strip()
        if isinstance(rule, re.Pattern):
            if not rule.search(text):
                return False
        elif text not in rule:
            return False
    return True


class Router:
    """The routes of the configuration, in file order."""

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self.routes = tuple(routes)

    def matching(self, attrs: Mapping[str, Any]) -> list[RouteConfig]:
        """The routes whose rules all hold for ``attrs``."""
        return [r for r in self.routes if route_matches(r, attrs)]

    def reruns_on_late(self, attrs: Mapping[str, Any]) -> bool:
        """Whether an image arriving after this series' jobs ran should run them again."""
        return any(r.on_late == "rerun" for r in self.matching(attrs))
