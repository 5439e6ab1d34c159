"""The router: which routes (and so which models) apply to a series."""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from ..config import RouteConfig

__all__ = ["Router", "requirements_met", "route_matches", "rules_hold"]

Rules = Mapping[str, "tuple[str, ...] | re.Pattern[str]"]


def route_matches(route: RouteConfig, attrs: Mapping[str, Any]) -> bool:
    """Whether every rule of ``route.match`` holds for the series attributes ``attrs``."""
    return rules_hold(route.match, attrs)


def requirements_met(route: RouteConfig, attrs: Mapping[str, Any]) -> list[int]:
    """Which of a study route's ``requires`` (by index) a series with ``attrs`` fills.

    Empty when ``route.match`` does not hold for the series.
    """
    if not route_matches(route, attrs):
        return []
    return [i for i, rules in enumerate(route.requires) if rules_hold(rules, attrs)]


def rules_hold(rules: Rules, attrs: Mapping[str, Any]) -> bool:
    """Whether every rule holds for the series attributes ``attrs``.

    A rule is an exact value, a list of allowed values, or a regular expression
    (``"re:..."``, searched in the value). Values compare as strings, case-sensitively,
    after stripping spaces; a missing attribute matches no rule.
    """
    for keyword, rule in rules.items():
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
    """The routes of the configuration, in file order: series-level ones, and study-level ones."""

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self.routes = tuple(r for r in routes if r.level != "study")
        self.study_routes = tuple(r for r in routes if r.level == "study")

    def matching(self, attrs: Mapping[str, Any]) -> list[RouteConfig]:
        """The series-level routes whose rules all hold for ``attrs``."""
        return [r for r in self.routes if route_matches(r, attrs)]

    def study_matching(self, attrs: Mapping[str, Any]) -> list[tuple[RouteConfig, list[int]]]:
        """The study-level routes a series with ``attrs`` counts for, each with the requirements it fills."""
        found = [(r, requirements_met(r, attrs)) for r in self.study_routes]
        return [(r, met) for r, met in found if met]

    def reruns_on_late(self, attrs: Mapping[str, Any]) -> bool:
        """Whether an image arriving after this series' jobs ran should run them again."""
        return any(r.on_late == "rerun" for r in self.matching(attrs))
