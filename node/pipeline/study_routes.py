"""Study-level routes: one job per study once every required series is complete.

A route with ``level = "study"`` names the series it needs (``requires``, one table of
rules per series, each checked with the route's ``match``). Each complete series of a
study that fills a requirement is noted in the job store; when every requirement is
filled the route fires once, queuing one job that reads all those series, in
requirement order. If ``study_timeout_seconds`` pass (from the first noted series)
first, the route is decided ``incomplete``: recorded with the missing requirements,
counted in ``ainode_study_route_decisions``, and no job runs.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from ..config import RouteConfig
from ..logs import log
from ..metrics import Metrics
from .route import Router
from ..states import StudyRouteState
from ..store import JobStore, SeriesRow

__all__ = ["StudyRouter"]

_logger = logging.getLogger("ainode.study_routes")


class StudyRouter:
    """Notes complete series against the study-level routes and decides each route once per study."""

    def __init__(self, router: Router, store: JobStore, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._routes = {r.name: r for r in router.study_routes}
        self._router = router
        self._store = store
        self._metrics = metrics
        self._clock = clock

    def note(self, series: SeriesRow, allowed: Sequence[str] | None = None) -> list[str]:
        """Note a complete series for the study routes it fills (only ``allowed`` ones, when given).

        Returns the names of the routes it was noted for.
        """
        noted = []
        for route, met in self._router.study_matching(series.attrs):
            if allowed is not None and route.name not in allowed:
                continue
            if self._store.note_study_series(series.study_uid, route.name, met, series.series_uid):
                noted.append(route.name)
        return noted

    def run_once(self) -> list[int]:
        """Decide what is due: fire complete studies, close timed-out ones. Returns new job ids."""
        now = self._clock()
        jobs = []
        for waiting in self._store.waiting_study_routes():
            route = self._routes.get(waiting["route"])
            if route is None:
                continue  # the route was removed from the configuration: leave the row as it was
            missing = [i for i in range(len(route.requires)) if i not in waiting["requirements_met"]]
            if not missing:
                job_id = self._decide(waiting, route, StudyRouteState.FIRED,
                                      f"{len(waiting['series'])} series fill all {len(route.requires)} requirements")
                if job_id is not None:
                    jobs.append(job_id)
            elif now - waiting["first_seen"] >= route.study_timeout_seconds:
                self._decide(waiting, route, StudyRouteState.INCOMPLETE,
                             f"timed out after {route.study_timeout_seconds:g} s: requires{missing} not received"
                             f" ({_describe(route, missing)})")
        return jobs

    def _decide(self, waiting: dict[str, Any], route: RouteConfig, state: StudyRouteState, detail: str) -> int | None:
        job = (route.model, route.destinations) if state is StudyRouteState.FIRED else None
        job_id = self._store.decide_study_route(waiting["id"], state, detail, job)
        self._metrics.study_route_decisions.labels(route.name, state.value).inc()
        log(_logger, logging.INFO if state is StudyRouteState.FIRED else logging.WARNING,
            f"study route {state.value}", study_uid=waiting["study_uid"], route=route.name,
            series=waiting["series"], job_id=job_id, reason=detail)
        return job_id


def _describe(route: RouteConfig, indexes: Sequence[int]) -> str:
    """The rules of the missing requirements, as written in the configuration."""
    parts = []
    for i in indexes:
        rules = route.requires[i]
        parts.append(", ".join(f"{k}={getattr(v, 'pattern', None) and 're:' + v.pattern or '|'.join(v)}"
                               for k, v in rules.items()))
    return "; ".join(parts)
