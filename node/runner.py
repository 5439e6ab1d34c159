"""The runner: takes routed jobs and runs them in worker processes."""
from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from .config import Config
from .logs import log
from .metrics import Metrics
from .spool import Spool
from .store import JobStore
from .worker import JobOutcome, JobSpec, run_job, warm_up

__all__ = ["Runner"]

_logger = logging.getLogger("ainode.runner")


class Runner:
    """A thread feeding jobs to a pool of worker processes, one job per worker at a time."""

    def __init__(
        self, config: Config, store: JobStore, spool: Spool, metrics: Metrics,
        on_written: Callable[[], None] = lambda: None, workers: int = 1,
    ) -> None:
        self._config = config
        self._store = store
        self._spool = spool
        self._metrics = metrics
        self._on_written = on_written
        self._workers = workers
        self._pool = self._new_pool()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._running: dict[int, Future[JobOutcome]] = {}
        self._thread = threading.Thread(target=self._run, name="runner", daemon=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))

    def start(self) -> None:
        for job in self._store.jobs_in_state("running"):
            self._store.set_job_state(job["id"], "routed", reason="interrupted by a restart; queued again")
        self._warm_up()
        self._thread.start()

    def _warm_up(self) -> None:
        """Start the worker and load every routed model's engine while no series waits."""
        models = dict.fromkeys(route.model for route in self._config.routes)
        specs = [self._spec({"id": 0, "model": name, "series_uid": ""}) for name in models]
        if not specs:
            return
        future = self._pool.submit(warm_up, specs)

        def _report(done: Future[list[str]]) -> None:
            try:
                log(_logger, logging.INFO, "models loaded", engines=done.result())
            except Exception as exc:
                log(_logger, logging.WARNING, "model warm-up failed", reason=repr(exc))

        future.add_done_callback(_report)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        """Tell the runner there are new jobs."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._collect()
                self._submit()
            except Exception as exc:
                log(_logger, logging.ERROR, "runner error", reason=repr(exc))
            self._wake.wait(timeout=0.5)

    def _submit(self) -> None:
        free = self._workers - len(self._running)
        if free <= 0:
            return
        for job in self._store.jobs_in_state("routed")[:free]:
            spec = self._spec(job)
            self._store.set_job_state(job["id"], "running")
            log(_logger, logging.INFO, "job started", job_id=job["id"], model=job["model"],
                series_uid=job["series_uid"], instances=len(spec.instance_paths))
            try:
                future = self._pool.submit(run_job, spec)
            except BrokenProcessPool:
                self._pool = self._new_pool()
                future = self._pool.submit(run_job, spec)
            future.add_done_callback(lambda _f: self._wake.set())
            self._running[job["id"]] = future

    def _spec(self, job: dict) -> JobSpec:
        model = self._config.model(job["model"])
        paths = tuple(i.path for i in self._store.series_instances(job["series_uid"])) if job["series_uid"] else ()
        return JobSpec(
            job_id=job["id"], model=model.name, pack=model.pack,
            weights=str(model.weights) if model.weights else None, engine=model.engine,
            batch_size=model.batch_size, instance_paths=paths,
            out_dir=str(self._spool.result_dir(job["id"])) if job["id"] else "",
            engine_cache_dir=str(self._config.node.data_dir / "engine-cache"),
            triton_url=model.triton_url, triton_model=model.triton_model,
        )

    def _collect(self) -> None:
        for job_id, future in list(self._running.items()):
            if not future.done():
                continue
            del self._running[job_id]
            job = self._store.get_job(job_id)
            model = job["model"] if job else "?"
            try:
                outcome = future.result()
            except Exception as exc:  # the worker process died
                outcome = JobOutcome(job_id, False, "worker", f"worker process failed: {exc!r}")
                if isinstance(exc, BrokenProcessPool):
                    self._pool = self._new_pool()
            self._finish(job, model, outcome)

    def _finish(self, job: dict | None, model: str, outcome: JobOutcome) -> None:
        if job is None:
            return
        engine = outcome.engine or "none"
        if outcome.engine:
            self._metrics.engine_info.labels(model, engine).set(1)
        if not outcome.ok:
            self._store.set_job_state(outcome.job_id, "failed", stage=outcome.stage, reason=outcome.reason,
                                      engine=outcome.engine)
            self._metrics.job_failures.labels(model, outcome.stage or "unknown").inc()
            log(_logger, logging.ERROR, "job failed", job_id=outcome.job_id, model=model, stage=outcome.stage,
                reason=outcome.reason, traceback=outcome.summary.get("traceback"))
            return
        self._metrics.inference_seconds.labels(model, engine).observe(outcome.inference_seconds)
        self._metrics.pipeline_seconds.labels(model).observe(outcome.total_seconds)
        self._store.job_written(outcome.job_id, outcome.results, job["destinations"], engine=outcome.engine,
                                timings=outcome.stage_seconds)
        log(_logger, logging.INFO, "job written", job_id=outcome.job_id, model=model, engine=engine,
            objects=len(outcome.results), inference_seconds=round(outcome.inference_seconds, 3),
            total_seconds=round(outcome.total_seconds, 3),
            stages={k: round(v, 3) for k, v in outcome.stage_seconds.items()}, **outcome.summary)
        self._on_written()
