"""The assembler: decides when a series is complete and hands it to the router.

A series is complete when every instance acknowledged for it is indexed and no instance
arrived for the quiet period of the routes it matches (the shortest one; the global
default for a series no route matches), measured from the last *received* instance; or,
with ``early_completion``, as soon as its expected number of instances is known from a
trustworthy source and reached: a route's ``expected_instances``, or one instance for a
multi-frame object (Number of Frames); or, for a route with ``complete_on_release``, as
soon as the association (or STOW-RS request) that brought it was released, after its
last instance (:meth:`Assembler.released`; kept in memory: after a restart the quiet
period applies). State lives in the job store, so a restart
resumes half-received series where they were; their quiet period starts again at the
restart.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

from ..config import AssemblerConfig
from ..logs import log
from ..metrics import Metrics
from .route import Router, route_priority
from ..states import NO_WAKEUPS, IllegalTransition, JobState, SeriesState, Stage, Wakeups
from ..store import JobStore, SeriesRow
from .loop import LoopStage, StageLoop
from .study_routes import StudyRouter

__all__ = ["Assembler"]

_RELEASE_MEMORY_SECONDS = 3600.0  # a release older than this no longer completes anything

_logger = logging.getLogger("ainode.assemble")


class Assembler(LoopStage):
    """A thread that completes quiet series and routes them into jobs."""

    def __init__(
        self, config: AssemblerConfig, store: JobStore, router: Router, metrics: Metrics,
        wakeups: Wakeups = NO_WAKEUPS, clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._router = router
        self._metrics = metrics
        self._wakeups = wakeups
        self._study_router = StudyRouter(router, store, metrics, clock=clock)
        self._clock = clock
        self._started_at = clock()
        self._released: dict[str, float] = {}  # series UID → when a transfer that brought it was released
        self._released_lock = threading.Lock()
        self._loop = StageLoop("assembler", self._step, config.poll_seconds, logger=_logger, first_wait=True)

    def released(self, series_uids: Iterable[str]) -> None:
        """The association or STOW-RS request that brought these series ended normally (now)."""
        now = self._clock()
        with self._released_lock:
            for uid in series_uids:
                self._released[uid] = now
            for uid in [u for u, at in self._released.items() if now - at > _RELEASE_MEMORY_SECONDS]:
                del self._released[uid]
        self._loop.wake()

    def _released_after_last(self, series: SeriesRow) -> bool:
        """Whether a release came after the series' last instance, and a matching route completes on it."""
        with self._released_lock:
            at = self._released.get(series.series_uid)
        return (at is not None and at >= series.last_received  # a route's, or a whole-series peer's (issue 32)
                and self._router.completes_on_release(series.attrs, self._store.series_senders(series.series_uid)))

    def quiet_seconds(self, series: SeriesRow) -> float:
        """The quiet period that applies to ``series``."""
        quiets = [
            r.quiet_seconds if r.quiet_seconds is not None else self._config.quiet_seconds
            for r in self._router.matching(series.attrs)
        ]
        return min(quiets) if quiets else float(self._config.quiet_seconds)

    def expected_instances(self, series: SeriesRow) -> int | None:
        """How many instances the series should have, when a trustworthy source says so.

        A route's ``expected_instances``, or one for a multi-frame object (Number of
        Frames). Never Images in Acquisition: it counts one acquisition, not the series,
        and is often wrong in the field.
        """
        counts = [r.expected_instances for r in self._router.matching(series.attrs) if r.expected_instances]
        if counts:
            return max(counts)
        if series.attrs.get("NumberOfFrames"):
            return 1
        return None

    def _completion(self, series: SeriesRow, now: float) -> str | None:
        if series.unindexed:
            return None  # acknowledged instances the indexer has not filed yet belong to it
        if self._config.early_completion:
            expected = self.expected_instances(series)
            if expected is not None and series.instance_count >= expected:
                return f"{series.instance_count} of {expected} expected instances"
        if self._released_after_last(series):
            return f"{series.instance_count} instances, released by their sender"
        # Time the node was down does not count: the modality could not send then.
        if now - max(series.last_received, self._started_at) >= self.quiet_seconds(series):
            return f"{series.instance_count} instances, quiet period over"
        return None

    def run_once(self) -> int:
        """Complete and route what is due; returns how many series were routed."""
        now = self._clock()
        # An acknowledged instance whose series is not known yet may belong to any series.
        waiting = () if self._store.unfiled_instance_count() else self._store.series_in_state(SeriesState.RECEIVED)
        for series in waiting:
            why = self._completion(series, now)
            if why is not None:
                try:
                    self._store.set_series_state(series.series_uid, SeriesState.COMPLETE, why)
                except IllegalTransition:  # a node sharing the store completed it first
                    continue
                self._metrics.series_completed.inc()
                log(_logger, logging.INFO, "series complete", series_uid=series.series_uid,
                    instances=series.instance_count, reason=why)
        routed = 0
        for series in self._store.series_in_state(SeriesState.COMPLETE):
            try:
                self._route(series)
            except IllegalTransition:  # a node sharing the store routed it first
                continue
            routed += 1
        if self._study_router.run_once():
            self._wakeups.produced(JobState.QUEUED)
        return routed

    def _route(self, series: SeriesRow) -> None:
        allowed = self._store.route_filter(series.series_uid)  # a process request may allow only some routes
        routes = [r for r in self._router.matching(series.attrs) if allowed is None or r.name in allowed]
        senders = self._store.series_senders(series.series_uid) if routes else []
        jobs = [(r.name, r.model, r.destinations, route_priority(r, series.attrs, senders)) for r in routes]
        ids = self._store.route_series(series.series_uid, jobs)
        study_routes = self._study_router.note(series, allowed)
        if study_routes:
            log(_logger, logging.INFO, "series noted for study routes", series_uid=series.series_uid,
                study_uid=series.study_uid, study_routes=study_routes)
        outcome = SeriesState.ROUTED if routes else SeriesState.IGNORED
        self._metrics.series_routed.labels(outcome.value).inc()
        received_for = time.time() - series.first_received  # the store's clock, not the assembler's
        for model in dict.fromkeys(r.model for r in routes) or ("none",):
            self._metrics.observe_stage(Stage.RECEIVE, model, received_for)
        message = ("series routed" if routes else "series ignored: no route matches" if not study_routes
                   else "series ignored by series routes: held for study routes")
        log(_logger, logging.INFO, message, series_uid=series.series_uid, routes=[r.name for r in routes], jobs=ids)
        if ids:
            self._wakeups.produced(JobState.QUEUED)

    def _step(self) -> None:
        self.run_once()
