"""The router: which routes (and so which models) apply to a series."""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

from ..config import PeerConfig, Priority, RouteConfig

__all__ = ["Router", "requirements_met", "route_matches", "route_priority", "rules_hold"]

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


def route_priority(route: RouteConfig, attrs: Mapping[str, Any], senders: Iterable[str] = ()) -> Priority:
    """The priority of ``route``'s job on a series with ``attrs`` sent by the calling AE titles ``senders``.

    The route's ``priority``, raised (never lowered) by its ``priority_from``: the value of
    its attribute (compared upper case, spaces stripped) and the sender's title.
    """
    rule = route.priority_from
    found = [route.priority]
    if rule.attribute is not None and attrs.get(rule.attribute) is not None:
        value = rule.values.get(str(attrs[rule.attribute]).strip().upper())
        found += [value] if value is not None else []
    found += [rule.calling_ae[t.strip()] for t in senders if t.strip() in rule.calling_ae]
    return Priority.highest(*found)


class Router:
    """The routes of the configuration, in file order: series-level ones, and study-level ones.

    ``peers``: the ``[[peers]]`` entries; those with ``sends_whole_series`` complete a
    series when their association is released (:meth:`completes_on_release`).
    """

    def __init__(self, routes: Sequence[RouteConfig], peers: Sequence[PeerConfig] = ()) -> None:
        self.routes = tuple(r for r in routes if r.level != "study")
        self.study_routes = tuple(r for r in routes if r.level == "study")
        self.whole_series_titles = frozenset(p.ae_title.strip() for p in peers if p.sends_whole_series)
        self.priority_by_sender = any(r.priority_from.calling_ae for r in self.routes)
        """Whether a route's priority depends on the calling AE title (``priority_from.calling_ae``)."""

    def completes_on_release(self, attrs: Mapping[str, Any], senders: Sequence[str] = ()) -> bool:
        """Whether a release after a series' last image completes it: a matching route's
        ``complete_on_release``, or every title that sent it is a ``sends_whole_series`` peer."""
        if any(r.complete_on_release for r in self.matching(attrs)):
            return True
        return bool(senders) and all(t.strip() in self.whole_series_titles for t in senders)

    def priority(self, attrs: Mapping[str, Any], senders: Iterable[str] = ()) -> Priority:
        """The highest priority of the series-level routes matching ``attrs`` (read-ahead order)."""
        titles = tuple(senders)
        return Priority.highest(*(route_priority(r, attrs, titles) for r in self.matching(attrs)))

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
