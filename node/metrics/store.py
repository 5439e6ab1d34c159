"""Queue depths read from the job store at scrape time: a Prometheus custom collector.

Counts by state are the store's own truth (shared by every node on a PostgreSQL store),
so they are asked for when Prometheus scrapes instead of being kept in step by hand.
A store that cannot answer makes the scrape skip these families, never fail.
"""
from __future__ import annotations

import logging
from enum import StrEnum
from typing import Callable, Iterable, Mapping, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..logs import log
from ..states import InstanceState, JobState, ResultState, SeriesState

__all__ = ["StoreCounts", "StoreCollector"]

_logger = logging.getLogger("ainode.metrics")


class StoreCounts(Protocol):
    """The part of the job store the collector reads: rows by state."""

    def instance_counts(self) -> Mapping[str, int]: ...
    def series_counts(self) -> Mapping[str, int]: ...
    def job_counts(self) -> Mapping[str, int]: ...
    def result_counts(self) -> Mapping[str, int]: ...


_FAMILIES: tuple[tuple[str, str, type[StrEnum], str], ...] = (
    ("ainode_instances", "Received instances in the job store by state", InstanceState, "instance_counts"),
    ("ainode_series", "Series in the job store by state", SeriesState, "series_counts"),
    ("ainode_jobs", "Jobs in the job store by state (queued: the queue depth)", JobState, "job_counts"),
    ("ainode_results", "Result objects per destination in the job store by state", ResultState, "result_counts"),
)


class StoreCollector(Collector):
    """``ainode_{instances,series,jobs,results}{state}`` and ``ainode_dead_letters``.

    Every state of :mod:`node.states` is present (0 when no row has it), so a label set
    never disappears from a dashboard.
    """

    def __init__(self, store: StoreCounts) -> None:
        self._store = store

    def describe(self) -> Iterable[Metric]:
        """The families without values (registration must not query the store)."""
        for name, doc, _states, _method in _FAMILIES:
            yield GaugeMetricFamily(name, doc, labels=["state"])
        yield _dead_letters_family()

    def collect(self) -> Iterable[Metric]:
        dead: int | None = None
        for name, doc, states, method in _FAMILIES:
            counts = _counts(getattr(self._store, method))
            if counts is None:
                continue
            family = GaugeMetricFamily(name, doc, labels=["state"])
            for state in states:
                family.add_metric([state.value], counts.get(state.value, 0))
            yield family
            if states is ResultState:
                dead = counts.get(ResultState.DEAD.value, 0)
        if dead is not None:
            family = _dead_letters_family()
            family.add_metric([], dead)
            yield family


def _dead_letters_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("ainode_dead_letters",
                             "Result objects that ran out of delivery attempts, waiting for a replay")


def _counts(read: Callable[[], Mapping[str, int]]) -> dict[str, int] | None:
    try:
        return dict(read())
    except Exception as exc:  # a scrape must not fail because the store is busy or gone
        log(_logger, logging.WARNING, "store counts unavailable for metrics", reason=type(exc).__name__)
        return None
