"""The node: every component wired together, started and stopped in order."""
from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from dataclasses import replace
from typing import Any

from .pipeline.assemble import Assembler
from .http.auth import BearerAuth
from .config import Config
from .ingest.disk import DiskGuard
from .egress.outbox import Outbox
from .pipeline.index import Indexer
from .ingest.listeners import ListenerProcesses, ingest_server
from .logs import log
from .metrics import Metrics
from .metrics.server import MetricsServer
from .pipeline.retain import Janitor
from .pipeline.route import Router
from .pipeline.run import Runner
from .store.spool import Spool
from .pipeline.stages import Pipeline, StageRow
from .states import Stage
from .store import open_store
from .http.web import WebServer

__all__ = ["Node"]

_logger = logging.getLogger("ainode.node")

_STOP_MARGIN_SECONDS = 8.0
"""How long past ``[node] shutdown_grace_seconds`` stopping and exiting may take before the
process is ended regardless (closing deliveries, the HTTP interface, the store)."""


def _exit_now(code: int) -> None:
    """Kill this process's children (worker and listener processes), then exit without cleanup."""
    for child in multiprocessing.active_children():
        try:
            child.kill()
        except Exception:  # already gone
            pass
    logging.shutdown()
    os._exit(code)


class Node:
    """One ainode: the stages of :meth:`stages`, plus the HTTP interface.

    ``ainode serve`` runs every stage (all but ``run`` with ``[runner] enabled = false``:
    an ingest-only node). ``worker=True`` is ``ainode worker``: the ``run`` stage only, and
    ``deliver`` when asked, on a store and spool shared with ingest nodes (``[store] url``).
    A stage this process does not run has no component and is left out of :meth:`stages`.
    """

    def __init__(self, config: Config, *, worker: bool = False, deliver: bool = True) -> None:
        self.config = config
        self.worker = worker
        data_dir = config.node.data_dir
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data_dir.chmod(0o700)  # patient images and the job store: the node's user only
        self.store = open_store(config.store.url, data_dir)
        self.spool = Spool(data_dir / "spool")
        self.metrics = Metrics()
        self.metrics.watch_store(self.store)
        self.metrics.declare((r.model for r in config.routes), (d.name for d in config.destinations))
        self.pipeline = Pipeline()
        self.outbox: Outbox | None = Outbox(config, self.store, self.metrics) if deliver else None
        self.runner: Runner | None = None
        if worker or config.runner.enabled:
            self.runner = Runner(config, self.store, self.spool, self.metrics, self.pipeline)
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self.listeners: ListenerProcesses | None = None  # [node] listeners > 1: made at start, once the port is bound
        self.metrics_server: MetricsServer | None = None
        if worker:  # no ingest side: those stages run on the ingest nodes
            self.ingest = self.indexer = self.assembler = self.janitor = self.web = None  # type: ignore[assignment]
            if config.runner.metrics_port:
                self.metrics_server = MetricsServer(self.metrics, config.node.http_host, config.runner.metrics_port)
            self._attach_stages()
            return
        self._use_spool_disk_for_temporary_files()
        router = Router(config.routes, config.peers)  # peers: whole-series senders complete on release
        self.assembler = Assembler(config.assembler, self.store, router, self.metrics, self.pipeline)
        self.indexer = Indexer(self.store, self.metrics, self.pipeline, rerun_on_late=router.reruns_on_late)
        self.disk = DiskGuard(self.spool.root, config.spool.min_free_mb, config.spool.min_free_percent)
        self.ingest = ingest_server(config, self.store, self.spool, self.metrics, wakeups=self.pipeline,
                                    disk_guard=self.disk)
        self.janitor = Janitor(config.spool, self.store, self.spool)
        self.web = WebServer(config.node.http_host, config.node.http_port, self.store, self.metrics, self.health,
                             acceptor=self.ingest.acceptor, sources=config.sources,
                             auth=BearerAuth.from_config(config.http, config.node.http_host), http=config.http,
                             route_names=[r.name for r in config.routes],
                             models=list(dict.fromkeys(r.model for r in config.routes)))
        self._attach_stages()

    def _attach_stages(self) -> None:
        """Give each row of the stage table the component that runs it in this process."""
        for stage, component in (
            (Stage.INGEST, self.ingest), (Stage.INDEX, self.indexer), (Stage.ASSEMBLE, self.assembler),
            (Stage.ROUTE, self.assembler), (Stage.RUN, self.runner), (Stage.DELIVER, self.outbox),
            (Stage.RETAIN, self.janitor),
        ):
            self.pipeline.attach(stage, component)

    def stages(self) -> tuple[StageRow, ...]:
        """The rows of the stage table this process runs, in pipeline order."""
        return self.pipeline.rows()

    def health(self) -> dict[str, Any]:
        """Whether every stage is alive (the status), and whether the disk lets ingest accept.

        A disk below its watermark does not make the node unhealthy: restarting it would
        not free space. It shows as ``accepting_instances: false`` and in the metrics.
        """
        threads = {t.name for t in threading.enumerate()}
        wanted = ["indexer", "assembler"] + (["runner"] if self.runner else [])
        wanted += [f"outbox-{d.name}" for d in self.config.destinations] if self.outbox else []
        missing = [name for name in wanted if name not in threads]
        missing += self.listeners.missing() if self.listeners else []
        disk = self.disk.status()
        return {"status": "ok" if not missing else "degraded", "missing": missing,
                "accepting_instances": not disk["below_watermark"], "disk": disk,
                "jobs": self.store.job_counts(), "instances": self.store.instance_counts()}

    def _use_spool_disk_for_temporary_files(self) -> None:
        """Datasets arriving over DICOM are written to temporary files as they come in
        (pynetdicom's chunked receive, through :mod:`tempfile`): keep them on the spool's
        disk, under the disk watermark, instead of a ``/tmp`` that may be small or in RAM.
        Leftovers of transfers cut by a crash are removed here, at start."""
        incoming = self.spool.root / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        for leftover in incoming.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
        self._previous_tempdir = tempfile.tempdir
        tempfile.tempdir = str(incoming)

    def recover_spool(self) -> int:
        """Put instances that are on disk but missing from the job store back in it."""
        orphans = self.spool.recover(self.store.known_instance_uids())
        for uid, sop_class, path in orphans:
            self.store.add_instance(uid, sop_class, str(path), "recovered")
        if orphans:
            log(_logger, logging.WARNING, "instances recovered from the spool", count=len(orphans))
        return len(orphans)

    def start(self) -> None:
        """Start the stages from the last to the first, so nothing arrives before it can be handled."""
        if not self.worker:
            self.recover_spool()
        self.pipeline.start()
        if self.worker:
            if self.metrics_server is not None:
                self.metrics_server.start()
            log(_logger, logging.INFO, "worker started", delivers=self.outbox is not None,
                models=sorted({r.model for r in self.config.routes}), data_dir=str(self.config.node.data_dir))
            return
        if self.config.node.listeners > 1:
            self._start_listeners()
        self.web.start()
        log(_logger, logging.INFO, "node started", ae_title=self.config.node.ae_title,
            dicom_port=self.ingest.port, http_port=self.web.port,
            routes=[r.name for r in self.config.routes], data_dir=str(self.config.node.data_dir))

    def stop(self) -> None:
        """Stop in order, within ``[node] shutdown_grace_seconds`` plus a few seconds.

        1. Intake: no new association (the listeners close their sockets), STOW-RS
           answers 503; the extra listener processes are told to stop too.
        2. Running C-STOREs (and the listeners' ones) finish, until the grace period ends.
        3. Deliveries close after the objects being sent now; what is left stays due in
           the job store for the next start (or another node sharing it).
        4. Running jobs end until the grace period ends; those still running then are
           handed back to the queue and their worker processes killed.
        5. The stages, in pipeline order (each after its current step), the HTTP
           interface, the job store.

        Whatever is cut (a C-STORE not answered, a job handed back, a delivery whose lease
        runs out) is done again, once, after the next start: the store keeps it durably.
        """
        if self._stopping.is_set() and self._stopped.is_set():
            return
        self._stopping.set()
        started = time.monotonic()
        grace = self.config.node.shutdown_grace_seconds
        deadline = started + grace
        log(_logger, logging.INFO, "node stopping", grace_seconds=grace)
        if tempfile.tempdir == str(self.spool.root / "incoming"):  # give the process its temporary folder back
            tempfile.tempdir = getattr(self, "_previous_tempdir", None)
        if not self.worker:  # 1. intake
            self.web.app.state.intake_closed = True
            self.ingest.stop()
        if self.listeners is not None:
            self.listeners.close_intake()
        steps: dict[str, float] = {}
        mark = time.monotonic()

        def _step(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            steps[name], mark = round(now - mark, 2), now

        _step("intake")
        cut = self._wait_for_associations(deadline) if not self.worker else 0  # 2. running C-STOREs
        if self.listeners is not None:
            self.listeners.stop(timeout=max(0.0, deadline - time.monotonic()) + 2.0)
        if self.outbox is not None:  # 3. deliveries
            self.outbox.stop()
        _step("associations")
        still_running = self.runner.drain(deadline) if self.runner is not None else []  # 4. jobs
        _step("jobs")
        self.pipeline.stop()  # 5. every stage (the runner hands back what still runs)
        _step("stages")
        if not self.worker:
            self.web.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.store.close()
        _step("rest")
        self._stopped.set()
        log(_logger, logging.INFO, "node stopped", seconds=round(time.monotonic() - started, 2), steps=steps,
            associations_cut=cut, jobs_handed_back=len(still_running))

    def _wait_for_associations(self, deadline: float) -> int:
        """Wait until no association is open in this process, or ``deadline``; how many are still open."""
        while time.monotonic() < deadline:
            if self.ingest.open_associations() == 0:
                return 0
            time.sleep(0.1)
        open_now = self.ingest.open_associations()
        if open_now:
            log(_logger, logging.WARNING, "associations still open at the end of the grace period", count=open_now)
        return open_now

    def _start_listeners(self) -> None:
        """Start the extra listener processes on the ports the node's own listener bound."""
        tls = self.config.dicom_tls
        tls_port = self.ingest.tls_port if tls is not None and tls.port is not None else None
        self.listeners = ListenerProcesses(self.config, self.ingest.port, tls_port, self.metrics, self.pipeline)
        self.listeners.start()
        listeners, ingest = self.listeners, self.ingest
        self.metrics.associations_open.set_function(lambda: ingest.open_associations() + listeners.open_associations())

    def serve_forever(self) -> None:
        """Run until SIGINT or SIGTERM, then :meth:`stop`; a second signal exits at once.

        Exiting at once is safe: a job's lease and a delivery's lease run out and their
        work is done again after the next start; received instances are durable before
        they are answered. If stopping has not ended ``_STOP_MARGIN_SECONDS`` after the
        grace period (a bug), what still runs is written to the log and the process
        exits anyway: a stop request is never ignored.
        """
        def _signal(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._stopping.is_set():
                log(_logger, logging.WARNING, "second stop signal: exiting at once", signal=name)
                _exit_now(128 + signum)
            self._stopping.set()
            log(_logger, logging.INFO, "stop requested", signal=name)
            threading.Thread(target=self._stop_within_bound, name="node-stop", daemon=True).start()

        signal.signal(signal.SIGTERM, _signal)
        signal.signal(signal.SIGINT, _signal)
        self.start()
        self._stopped.wait()

    def _stop_within_bound(self) -> None:
        """:meth:`stop`, with a watchdog that ends the process if stopping (or exiting after it) overruns."""
        limit = self.config.node.shutdown_grace_seconds + _STOP_MARGIN_SECONDS

        def _watchdog() -> None:
            time.sleep(limit)
            names = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
            log(_logger, logging.ERROR, "node did not exit within its shutdown bound; exiting anyway",
                seconds=limit, threads=names, children=[p.pid for p in multiprocessing.active_children()])
            faulthandler.dump_traceback(all_threads=True)
            _exit_now(1)

        threading.Thread(target=_watchdog, name="stop-watchdog", daemon=True).start()
        self.stop()

    @staticmethod
    def with_overrides(config: Config, **node_fields: Any) -> Config:
        """``config`` with some ``[node]`` fields replaced (command-line options)."""
        fields = {k: v for k, v in node_fields.items() if v is not None}
        return replace(config, node=replace(config.node, **fields))
