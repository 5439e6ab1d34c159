"""The runner: claims queued jobs under a lease and runs them in worker processes.

A claimed job is ``running`` with a lease held by this process (``host:pid:token``),
renewed while its worker runs. If this process dies, the next start (or any other
runner, once the lease runs out) queues the job again; a worker's outcome that arrives
after its lease was lost is dropped, so a job is never recorded twice.

While no job needs it, a worker reads ahead: it runs a slice-wise model on the slices of
a series still arriving (see :func:`node.worker.read_ahead`). Stat work waiting makes routine work yield.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time
from enum import StrEnum
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..config import Config
from ..logs import log
from ..metrics import STAGES, Metrics
from .applicability import note_applicability, on_out_of_domain
from .loop import StageLoop
from .preempt import Preemption
from .priorities import claim_free_workers, effective_reserve, may_read_ahead, observe_queue_wait, read_ahead_order
from .route import Router
from ..store.spool import Spool
from ..states import NO_WAKEUPS, FailureStage, ResultState, SeriesState, Wakeups
from ..store import JobRow, JobStore, lease_owner_id, owner_is_gone
from ..worker import JobOutcome, JobSpec, ReadAheadOutcome, init_worker, read_ahead, run_job, warm_up

__all__ = ["Runner"]

_logger = logging.getLogger("ainode.runner")

_READ_AHEAD_BATCH = 32
"""Most files sent to a worker in one read-ahead (a job claimed meanwhile waits for at most one such batch)."""


_WORKER_END_SECONDS = 5.0
"""How long an idle worker process gets to end (its helper process first) before it is killed."""


class Runner:
    """A thread feeding jobs to a pool of worker processes, one job per worker at a time."""

    def __init__(
        self, config: Config, store: JobStore, spool: Spool, metrics: Metrics,
        wakeups: Wakeups = NO_WAKEUPS, workers: int | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._spool = spool
        self._metrics = metrics
        self._wakeups = wakeups
        self._workers = workers or config.runner.workers
        self._lease_seconds = config.runner.lease_seconds
        self._owner = lease_owner_id()
        self._handover: Any = None
        self._destinations: dict[int, list[str]] = {}
        self._preemption = Preemption(config.runner, store, metrics, [r.name for r in config.routes])
        self._pool = self._new_pool()
        self._running: dict[int, Future[JobOutcome]] = {}
        self._priorities: dict[int, str] = {}  # job id → priority of the running jobs, in start order
        self._reserve = effective_reserve(self._workers, config.runner.reserve_for_stat)
        self._router = Router(config.routes, config.peers)
        self._filed = threading.Event()
        self._reading: Future[ReadAheadOutcome] | None = None
        self._reading_stat = False  # whether the read-ahead under way is of a stat series
        self._read_paths: dict[tuple[str, str], set[str]] = {}  # (series UID, model) → files sent to read ahead
        self._given_up: set[tuple[str, str]] = set()  # (series UID, model) whose read-ahead failed: the job reads
        self._not_slice_wise: set[str] = set()  # models whose pack said it does not read ahead
        self._renewed_at = 0.0
        self._draining = False  # stopping: no new job, no new read-ahead
        self._watch: Any = None
        self._loop = StageLoop("runner", self._step, min(0.5, self._lease_seconds / 4), logger=_logger)
        self._handover_loop = StageLoop("runner-handover", self._take_handover, 0.0, logger=_logger)

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        self._handover = context.Queue()  # a new one with every pool: a killed worker may have broken the old
        asks = self._preemption.new_pool(context, self._workers)  # the jobs asked to yield to stat work
        return ProcessPoolExecutor(self._workers, mp_context=context,
                                   initializer=init_worker, initargs=(os.getpid(), self._handover, asks))

    def start(self) -> None:
        released = self._store.release_job_leases(lambda owner, _until: owner_is_gone(owner))
        if released:
            log(_logger, logging.WARNING, "jobs of a stopped node queued again", jobs=released)
        self._warm_up()
        self._watch = self._store.watch({"jobs": self.wake})  # jobs an ingest node sharing the store queued
        self._loop.start()
        self._handover_loop.start()

    def _warm_up(self) -> None:
        """Start the worker and load every routed model's engine while no series waits."""
        models = dict.fromkeys(route.model for route in self._config.routes)
        specs = [self._spec(0, name, "") for name in models]
        if not specs:
            return
        future = self._pool.submit(warm_up, specs)

        def _report(done: Future[list[str]]) -> None:
            try:
                lines = done.result()
                log(_logger, logging.INFO, "models loaded", engines=lines)
                for model, _, engine in (line.partition(": ") for line in lines):
                    if engine and not engine.startswith("not loaded"):
                        self._metrics.engine_info.labels(model, engine).set(1)
                        self._metrics.inference_seconds.labels(model, engine)  # at 0 before the first job
            except Exception as exc:
                log(_logger, logging.WARNING, "model warm-up failed", reason=repr(exc))

        future.add_done_callback(_report)

    def drain(self, deadline: float) -> list[int]:
        """Claim no more jobs, start no read-ahead; let running jobs end until ``deadline`` (``time.monotonic()``).

        The runner's thread still collects what ends meanwhile (recorded as always).
        Returns the jobs still running at the deadline: :meth:`stop` hands them back to
        the queue.
        """
        self._draining = True
        self._loop.wake()
        while time.monotonic() < deadline and self._loop.is_alive():
            reading = self._reading
            if not self._running and (reading is None or reading.done()):
                break
            time.sleep(0.05)
        return sorted(self._running)

    def stop(self) -> None:
        """Stop within ``[node] shutdown_grace_seconds`` (less what :meth:`drain` already took).

        Running jobs get the grace period to end; those still running then are handed
        back to the queue (their worker processes killed first, so that no outcome of
        theirs comes after). Every worker process has ended when this returns.
        """
        if not self._draining and self._loop.started:
            self.drain(time.monotonic() + self._config.node.shutdown_grace_seconds)
        self._draining = True
        if self._watch is not None:
            self._watch.stop()
        self._loop.stop()
        for job_id, future in list(self._running.items()):  # ended after the loop's last look
            if future.done() and future.exception() is None:
                del self._running[job_id]
                job = self._store.get_job(job_id)
                if job is not None:
                    self._finish(job, future.result())
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        if self._running or (self._reading is not None and not self._reading.done()):
            for process in processes:  # a job past the grace period: its worker goes first
                if process.is_alive():
                    process.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)
        ending = time.monotonic()
        for process in processes:  # an idle worker ends at once (and ends its helper process)
            process.join(timeout=_WORKER_END_SECONDS)
            if process.is_alive():
                log(_logger, logging.WARNING, "worker process did not end; killed", pid=process.pid)
                process.kill()
                process.join(timeout=1)
        log(_logger, logging.DEBUG, "worker processes ended", workers=len(processes),
            seconds=round(time.monotonic() - ending, 2))
        if self._running:
            handed_back = self._store.release_job_leases(
                lambda owner, _until: owner == self._owner)
            log(_logger, logging.WARNING, "jobs handed back to the queue at stop", jobs=handed_back)
            self._running.clear()
        self._handover_loop.stop(timeout=2)

    def wake(self, state: StrEnum | None = None) -> None:
        """Tell the runner there are new jobs (or, ``series received``, slices to read ahead)."""
        if state is SeriesState.RECEIVED:
            self.instances_filed()
        else:
            self._loop.wake()

    def instances_filed(self) -> None:
        """Tell the runner instances were filed: slices of an arriving series may be read ahead.

        Wakes the runner only when a routed model may read ahead and no read-ahead is under
        way (its end wakes it): filing an instance must not cost the ingest a job-store query.
        """
        if not self._config.runner.read_ahead or not self._may_read_ahead():
            return
        self._filed.set()
        reading = self._reading
        if reading is None or reading.done():
            self._loop.wake()

    def _may_read_ahead(self) -> bool:
        """Whether a routed model is not known to work on whole volumes only."""
        return any(route.model not in self._not_slice_wise for route in self._config.routes)

    def _step(self) -> None:
        self._collect()
        self._keep_leases()
        self._submit()
        self._read_ahead()

    def _keep_leases(self) -> None:
        """Renew this runner's leases; take back jobs whose owner's lease ran out."""
        now = time.time()
        if now - self._renewed_at < self._lease_seconds / 4:
            return
        self._renewed_at = now
        self._store.renew_job_leases(self._owner, list(self._running), self._lease_seconds)
        expired = self._store.release_job_leases(
            lambda owner, until: owner != self._owner and (until < now or owner_is_gone(owner)))
        if expired:
            log(_logger, logging.WARNING, "jobs whose worker was lost queued again", jobs=expired)

    def _submit(self) -> None:
        if self._draining:
            return
        reading = self._reading_stat and self._reading is not None and not self._reading.done()
        running = [self._priorities.get(i, "routine") for i in self._running] + ["stat"] * reading  # it holds one
        for job in claim_free_workers(self._store, self._owner, self._lease_seconds, workers=self._workers,
                                      reserve=self._preemption.reserve(self._reserve), running=running):
            try:
                spec = replace(self._spec(job.id, job.model, job.series_uid),
                               on_out_of_domain=on_out_of_domain(self._config, job.route), may_park=self._workers == 1)
            except Exception as exc:  # a job that cannot even be described must not block the queue
                self._fail(job, JobOutcome(job.id, False, FailureStage.SPEC, f"{type(exc).__name__}: {exc}"))
                continue
            observe_queue_wait(self._store, self._metrics, job)
            log(_logger, logging.INFO, "job started", job_id=job.id, model=job.model,
                series_uid=job.series_uid, instances=len(spec.instance_paths), run=job.runs)
            try:
                future = self._pool.submit(run_job, spec)
            except BrokenProcessPool:
                self._pool = self._new_pool()
                future = self._pool.submit(run_job, spec)
            future.add_done_callback(lambda _f: self._loop.wake())
            self._destinations[job.id] = list(job.destinations)
            self._priorities[job.id] = job.priority
            self._running[job.id] = future
        stat_reading = self._reading_stat and self._reading is not None and not self._reading.done()
        self._preemption.step(self._priorities, self._workers - len(self._running), stat_reading)

    def _read_ahead(self) -> None:
        """Send the newly filed slices of one arriving series to a worker no job needs (one at a time)."""
        if self._reading is not None:
            if not self._reading.done():
                return  # its end wakes the runner, and the slices filed meanwhile go next
            self._note_read_ahead(self._reading)
            self._reading = None
        if self._draining or not self._filed.is_set():
            return
        self._filed.clear()
        arriving = self._store.series_in_state(SeriesState.RECEIVED)
        live = {series.series_uid for series in arriving}
        for key in [key for key in self._read_paths if key[0] not in live]:
            del self._read_paths[key]
        self._given_up = {key for key in self._given_up if key[0] in live}
        free = self._workers - len(self._running)  # none: only a stat series, next in the pool (issue 32)
        for series, priority in read_ahead_order(self._router, arriving, self._store.series_senders):
            if not may_read_ahead(priority, free=free, reserve=self._reserve):  # stat first; reserved: stat only
                self._filed.set()  # a worker that frees up reads it
                continue
            for model in dict.fromkeys(route.model for route in self._router.matching(series.attrs)):
                if model in self._not_slice_wise or (series.series_uid, model) in self._given_up:
                    continue
                sent = self._read_paths.setdefault((series.series_uid, model), set())
                paths = [i.path for i in self._store.series_instances(series.series_uid) if i.path not in sent]
                if not paths:
                    continue
                paths = paths[:_READ_AHEAD_BATCH]
                try:
                    spec = replace(self._spec(0, model, series.series_uid),
                                   instance_paths=tuple(paths))
                except Exception:  # the job will say why (its 'spec' stage)
                    self._not_slice_wise.add(model)
                    continue
                sent.update(paths)
                try:
                    self._reading = self._pool.submit(read_ahead, spec)
                except (BrokenProcessPool, RuntimeError):
                    return  # the next job's submission replaces the pool
                self._reading.add_done_callback(lambda _done: self._loop.wake())
                self._reading_stat = self._preemption.reading(priority)  # stat: routine work gives way a while
                self._filed.set()  # more may wait: look again when this one ends
                self._loop.wake()  # at once: a stat read-ahead behind routine work makes it yield
                return

    def _note_read_ahead(self, done: Future[ReadAheadOutcome]) -> None:
        """Learn from a finished read-ahead: a model that does not read ahead, a series given up, slices read."""
        try:
            outcome = done.result()
        except Exception:  # the worker died: the runner's next submission finds out
            return
        if not outcome.slice_wise:
            self._not_slice_wise.add(outcome.model)
        elif outcome.reason:
            self._given_up.add((outcome.series_uid, outcome.model))
            log(_logger, logging.INFO, "read-ahead failed; the job reads the series itself",
                model=outcome.model, series_uid=outcome.series_uid, reason=outcome.reason)
        elif outcome.images:
            self._metrics.slices_read_ahead.labels(outcome.model).inc(outcome.images)

    def _take_handover(self) -> None:
        """Queue one object a worker has saved for delivery at once (the job still running).

        An object handed over after its job was finished, failed or lost is left alone:
        :meth:`JobStore.job_written` queues every object of a written job anyway.
        """
        try:
            job_id, result = self._handover.get(timeout=0.5)
        except queue.Empty:
            return
        except (EOFError, OSError, ValueError):  # the pool (and its queue) is being replaced
            time.sleep(0.1)
            return
        destinations = self._destinations.get(job_id)
        if not destinations:
            return
        try:
            if self._store.result_written(job_id, result, destinations, owner=self._owner):
                self._wakeups.produced(ResultState.PENDING)
        except Exception as exc:  # the job's outcome queues it again
            log(_logger, logging.WARNING, "written object not queued early", job_id=job_id, reason=repr(exc))

    def _spec(self, job_id: int, model_name: str, series_uid: str) -> JobSpec:
        """What a worker needs to run ``model_name`` on a job (``job_id`` 0: a warm-up or read-ahead)."""
        model = self._config.model(model_name)
        # a study job reads every series its study route required, in requirement order
        series = self._store.job_series(job_id) if job_id else []
        paths = tuple(i.path for uid in series for i in self._store.series_instances(uid))
        return JobSpec(
            job_id=job_id, model=model.name, pack=model.pack,
            weights=str(model.weights) if model.weights else None, engine=model.engine,
            batch_size=model.batch_size, instance_paths=paths, series_uid=series_uid,
            out_dir=str(self._spool.result_dir(job_id)) if job_id else "",
            engine_cache_dir=str(self._config.node.data_dir / "engine-cache"),
            triton_url=model.triton_url, triton_model=model.triton_model,
            hand_over=self._config.egress.deliver_as_written,
            sent_before=tuple(self._store.results_sent(job_id)) if job_id else (),
        )

    def _collect(self) -> None:
        for job_id, future in list(self._running.items()):
            if not future.done():
                continue
            del self._running[job_id]
            job = self._store.get_job(job_id)
            self._destinations.pop(job_id, None)
            self._preemption.ended(job_id, self._priorities.pop(job_id, None))
            try:
                outcome = future.result()
            except Exception as exc:  # the worker process died
                outcome = JobOutcome(job_id, False, FailureStage.WORKER, f"worker process failed: {exc!r}")
                if isinstance(exc, BrokenProcessPool):
                    self._pool = self._new_pool()
            if job is not None:
                self._finish(job, outcome)

    def _fail(self, job: JobRow, outcome: JobOutcome) -> None:
        stage = outcome.stage or FailureStage.WORKER
        if not self._store.fail_job(job.id, stage, outcome.reason or "unknown", engine=outcome.engine,
                                    owner=self._owner):
            log(_logger, logging.WARNING, "outcome dropped: the job's lease was lost", job_id=job.id)
            return
        self._metrics.job_failures.labels(job.model, stage.value).inc()
        log(_logger, logging.ERROR, "job failed", job_id=job.id, model=job.model, stage=stage.value,
            reason=outcome.reason, traceback=outcome.summary.get("traceback"))

    def _finish(self, job: JobRow, outcome: JobOutcome) -> None:
        if outcome.yielded:  # gave its worker to a stat job before writing: queued again as it was
            self._preemption.requeue(job, outcome, self._owner)
            return
        model = job.model
        engine = outcome.engine or "none"
        if outcome.engine:
            self._metrics.engine_info.labels(model, engine).set(1)
        if not outcome.ok:
            self._fail(job, outcome)
            return
        if not self._store.job_written(outcome.job_id, outcome.results, job.destinations, engine=outcome.engine,
                                       timings=outcome.stage_seconds, owner=self._owner):
            log(_logger, logging.WARNING, "outcome dropped: the job's lease was lost", job_id=outcome.job_id)
            return
        self._metrics.inference_seconds.labels(model, engine).observe(outcome.inference_seconds)
        self._metrics.pipeline_seconds.labels(model).observe(outcome.total_seconds)
        note_applicability(self._store, self._metrics, job, outcome.summary)
        for stage, seconds in outcome.stage_seconds.items():
            if stage in STAGES:
                self._metrics.observe_stage(stage, model, seconds)
        log(_logger, logging.INFO, "job written", job_id=outcome.job_id, model=model, engine=engine,
            objects=len(outcome.results), inference_seconds=round(outcome.inference_seconds, 3),
            total_seconds=round(outcome.total_seconds, 3),
            stages={k: round(v, 3) for k, v in outcome.stage_seconds.items()}, **outcome.summary)
        self._wakeups.produced(ResultState.PENDING)
