"""Parsing a ``[[routes]]`` entry and its tables of routing rules (``match``, ``requires``)."""
from __future__ import annotations

import re
from typing import Any, Mapping

from .choices import OnLate, OnOutOfDomain, Priority, RouteLevel
from .keys import ConfigError, choice, get_value, only_keys
from .schema import PriorityFrom, RouteConfig

__all__ = ["parse_route", "parse_rules"]

_ROUTE_KEYS = {"name", "model", "destinations", "match", "quiet_seconds", "expected_instances", "on_late", "on_out_of_domain",
               "level", "requires", "study_timeout_seconds", "complete_on_release", "priority", "retract_superseded",
               "priority_from"}


def parse_route(prefix: str, table: Mapping[str, Any], destinations: set[str]) -> RouteConfig:
    """One ``[[routes]]`` table; each of its destinations must be one of ``destinations``."""
    only_keys(prefix, table, _ROUTE_KEYS)
    dests = get_value(prefix, table, "destinations", list)
    for j, dest in enumerate(dests):
        if dest not in destinations:
            raise ConfigError(f"{prefix}.destinations[{j}]", f"no destination named {dest!r}")
    match = parse_rules(f"{prefix}.match", get_value(prefix, table, "match", dict, {}))
    level = choice(f"{prefix}.level", get_value(prefix, table, "level", str, RouteLevel.SERIES), RouteLevel)
    requires = _parse_requires(prefix, table, level)
    timeout = get_value(prefix, table, "study_timeout_seconds", (int, float), 3600.0)
    if not timeout > 0:
        raise ConfigError(f"{prefix}.study_timeout_seconds", f"expected a value > 0, got {timeout}")
    quiet = get_value(prefix, table, "quiet_seconds", (int, float), None)
    if quiet is not None and quiet < 0:
        raise ConfigError(f"{prefix}.quiet_seconds", f"expected a value >= 0, got {quiet}")
    expected = get_value(prefix, table, "expected_instances", int, None)
    if expected is not None and expected < 1:
        raise ConfigError(f"{prefix}.expected_instances", f"expected a value >= 1, got {expected}")
    on_late = choice(f"{prefix}.on_late", get_value(prefix, table, "on_late", str, OnLate.RERUN), OnLate)
    return RouteConfig(
        name=get_value(prefix, table, "name", str),
        model=get_value(prefix, table, "model", str),
        destinations=tuple(dests),
        match=match,
        quiet_seconds=None if quiet is None else float(quiet),
        expected_instances=expected,
        on_late=on_late,
        retract_superseded=get_value(prefix, table, "retract_superseded", bool, True),
        on_out_of_domain=choice(f"{prefix}.on_out_of_domain", get_value(
            prefix, table, "on_out_of_domain", str, OnOutOfDomain.WITHHOLD), OnOutOfDomain),
        complete_on_release=get_value(prefix, table, "complete_on_release", bool, False),
        level=level,
        requires=requires,
        study_timeout_seconds=float(timeout),
        priority=choice(f"{prefix}.priority", get_value(prefix, table, "priority", str, Priority.ROUTINE), Priority),
        priority_from=parse_priority_from(f"{prefix}.priority_from",
                                          get_value(prefix, table, "priority_from", dict, {})),
    )


def parse_priority_from(prefix: str, table: Mapping[str, Any]) -> PriorityFrom:
    """``priority_from``: ``attribute`` with its ``values`` (value → priority), and ``calling_ae`` (title → priority)."""
    from ..pipeline.index import ROUTING_KEYWORDS  # see parse_rules

    only_keys(prefix, table, {"attribute", "values", "calling_ae"})
    attribute = get_value(prefix, table, "attribute", str, None)
    values = _priorities(f"{prefix}.values", get_value(prefix, table, "values", dict, {}))
    if attribute is not None and attribute not in ROUTING_KEYWORDS:
        raise ConfigError(f"{prefix}.attribute", f"not a routing attribute (one of: {', '.join(ROUTING_KEYWORDS)})")
    if (attribute is None) != (not values):
        raise ConfigError(prefix, "attribute and values go together, e.g. "
                                  '{attribute = "RequestedProcedurePriority", values = {STAT = "stat"}}')
    titles = _priorities(f"{prefix}.calling_ae", get_value(prefix, table, "calling_ae", dict, {}))
    return PriorityFrom(attribute=attribute, values={k.strip().upper(): v for k, v in values.items()},
                        calling_ae={k.strip(): v for k, v in titles.items()})


def _priorities(prefix: str, table: Mapping[str, Any]) -> dict[str, Priority]:
    """A table of ``key = "stat" | "urgent" | "routine"``."""
    return {str(key): choice(f"{prefix}.{key}", value, Priority) for key, value in table.items()}


def _parse_requires(prefix: str, table: Mapping[str, Any],
                    level: RouteLevel) -> tuple[dict[str, tuple[str, ...] | re.Pattern[str]], ...]:
    """A route's ``requires``: one table of rules per series, for (and required by) a study route."""
    requires_list = get_value(prefix, table, "requires", list, [])
    if level == RouteLevel.STUDY and not requires_list:
        raise ConfigError(f"{prefix}.requires", 'required when level = "study": one table of rules per series, '
                                                'e.g. [{SeriesDescription = "re:^T1"}, {SeriesDescription = "re:^T2"}]')
    if level != RouteLevel.STUDY and (requires_list or "study_timeout_seconds" in table):
        key = "requires" if requires_list else "study_timeout_seconds"
        raise ConfigError(f"{prefix}.{key}", 'only for a study-level route (level = "study")')
    requires = []
    for j, rules in enumerate(requires_list):
        if not isinstance(rules, dict) or not rules:
            raise ConfigError(f"{prefix}.requires[{j}]", f"expected a table of rules, got {rules!r}")
        requires.append(parse_rules(f"{prefix}.requires[{j}]", rules))
    return tuple(requires)


def parse_rules(prefix: str, table: Mapping[str, Any]) -> dict[str, tuple[str, ...] | re.Pattern[str]]:
    """A table of routing rules (``match``, or one ``requires`` entry): attribute → value(s) or ``re:``."""
    # imported here, not at the top: node.pipeline.index pulls in the store, which must stay
    # free to import the configuration without a cycle
    from ..pipeline.index import ROUTING_KEYWORDS

    match: dict[str, tuple[str, ...] | re.Pattern[str]] = {}
    for key, value in table.items():
        where = f"{prefix}.{key}"
        if key not in ROUTING_KEYWORDS:
            raise ConfigError(where, f"not a routing attribute, so it never matches "
                                     f"(routes match on: {', '.join(ROUTING_KEYWORDS)})")
        if isinstance(value, str) and value.startswith("re:"):
            try:
                match[key] = re.compile(value[3:])
            except re.error as exc:
                raise ConfigError(where, f"bad regular expression: {exc}") from exc
        elif isinstance(value, str):
            match[key] = (value,)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            match[key] = tuple(value)
        else:
            raise ConfigError(where, f'expected a string, a list of strings or "re:...", got {value!r}')
    return match
