"""The node: every component wired together, started and stopped in order."""
from __future__ import annotations

import logging
import signal
import tempfile
import threading
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .assemble import Assembler
from .auth import BearerAuth
from .config import Config
from .disk import DiskGuard
from .egress.outbox import Outbox
from .index import Indexer
from .ingest import IngestServer
from .ingest.peers import PeerPolicy
from .logs import log
from .metrics import Metrics
from .retention import Janitor
from .route import Router
from .runner import Runner
from .spool import Spool
from .states import InstanceState, JobState, ResultState, SeriesState
from .store import open_store
from .tls import server_context
from .web import WebServer

__all__ = ["Node", "Stage"]

_logger = logging.getLogger("ainode.node")


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: the state it takes work in, the state it leaves it in."""

    name: str
    consumes: StrEnum | None
    produces: tuple[StrEnum, ...]
    component: Any


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
        self.outbox: Outbox | None = Outbox(config, self.store, self.metrics) if deliver else None
        self.runner: Runner | None = None
        if worker or config.runner.enabled:
            self.runner = Runner(config, self.store, self.spool, self.metrics,
                                 on_written=self.outbox.wake if self.outbox else _nothing)
        self._stopped = threading.Event()
        if worker:  # no ingest side: those stages run on the ingest nodes
            self.ingest = self.indexer = self.assembler = self.janitor = self.web = None  # type: ignore[assignment]
            return
        self._use_spool_disk_for_temporary_files()
        router = Router(config.routes)
        self.assembler = Assembler(config.assembler, self.store, router, self.metrics,
                                   on_jobs=self.runner.wake if self.runner else _nothing)
        self.indexer = Indexer(self.store, self.metrics, on_indexed=self.assembler.wake,
                               rerun_on_late=router.reruns_on_late)
        self.disk = DiskGuard(self.spool.root, config.spool.min_free_mb, config.spool.min_free_percent)
        self.ingest = IngestServer(
            config.node.ae_title, config.node.dicom_host, config.node.dicom_port,
            self.store, self.spool, self.metrics, on_stored=self.indexer.wake,
            max_associations=config.node.max_associations, network_timeout=config.node.network_timeout_seconds,
            max_dataset_bytes=int(config.spool.max_dataset_mb * 1024 * 1024), disk_guard=self.disk,
            peers=PeerPolicy(config.peers, config.node.accept_unknown_peers), **_dicom_tls(config),
            on_duplicate=config.ingest.on_duplicate, on_released=self.assembler.released,
        )
        self.janitor = Janitor(config.spool, self.store, self.spool)
        self.web = WebServer(config.node.http_host, config.node.http_port, self.store, self.metrics, self.health,
                             acceptor=self.ingest.acceptor, sources=config.sources,
                             auth=BearerAuth.from_config(config.http, config.node.http_host), http=config.http,
                             route_names=[r.name for r in config.routes],
                             models=list(dict.fromkeys(r.model for r in config.routes)))

    def stages(self) -> tuple[Stage, ...]:
        """The whole pipeline, in order: what each stage consumes and produces, and who runs it."""
        I, S, J, R = InstanceState, SeriesState, JobState, ResultState  # noqa: N806 - short names for the table
        table = (
            Stage("ingest", None, (I.RECEIVED,), self.ingest),
            Stage("index", I.RECEIVED, (I.INDEXED, I.QUARANTINED, S.RECEIVED), self.indexer),
            Stage("assemble", S.RECEIVED, (S.COMPLETE,), self.assembler),
            Stage("route", S.COMPLETE, (S.ROUTED, S.IGNORED, J.QUEUED), self.assembler),
            Stage("run", J.QUEUED, (J.RUNNING, J.WRITTEN, J.FAILED, R.PENDING), self.runner),
            Stage("deliver", R.PENDING, (R.DELIVERED, R.DEAD, J.DELIVERED, J.FAILED), self.outbox),
            Stage("retain", S.ROUTED, (S.PURGED,), self.janitor),
        )
        return tuple(stage for stage in table if stage.component is not None)

    def health(self) -> dict[str, Any]:
        """Whether every stage is alive (the status), and whether the disk lets ingest accept.

        A disk below its watermark does not make the node unhealthy: restarting it would
        not free space. It shows as ``accepting_instances: false`` and in the metrics.
        """
        threads = {t.name for t in threading.enumerate()}
        wanted = ["indexer", "assembler"] + (["runner"] if self.runner else [])
        wanted += [f"outbox-{d.name}" for d in self.config.destinations] if self.outbox else []
        missing = [name for name in wanted if name not in threads]
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
        started: set[int] = set()
        for stage in reversed(self.stages()):
            if id(stage.component) not in started:
                started.add(id(stage.component))
                stage.component.start()
        if self.worker:
            log(_logger, logging.INFO, "worker started", delivers=self.outbox is not None,
                models=sorted({r.model for r in self.config.routes}), data_dir=str(self.config.node.data_dir))
            return
        self.web.start()
        log(_logger, logging.INFO, "node started", ae_title=self.config.node.ae_title,
            dicom_port=self.ingest.port, http_port=self.web.port,
            routes=[r.name for r in self.config.routes], data_dir=str(self.config.node.data_dir))

    def stop(self) -> None:
        """Stop listening first, then the stages in pipeline order."""
        if not self.worker:
            self.web.stop()
        stopped: set[int] = set()
        for stage in self.stages():
            if id(stage.component) not in stopped:
                stopped.add(id(stage.component))
                stage.component.stop()
        self.store.close()
        self._stopped.set()
        log(_logger, logging.INFO, "node stopped")

    def serve_forever(self) -> None:
        """Run until SIGINT or SIGTERM."""
        def _stop(signum: int, _frame: Any) -> None:
            threading.Thread(target=self.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        self.start()
        self._stopped.wait()

    @staticmethod
    def with_overrides(config: Config, **node_fields: Any) -> Config:
        """``config`` with some ``[node]`` fields replaced (command-line options)."""
        fields = {k: v for k, v in node_fields.items() if v is not None}
        return replace(config, node=replace(config.node, **fields))


def _nothing() -> None:
    """No stage to wake: it runs in another process, which polls the shared store."""


def _dicom_tls(config: Config) -> dict[str, Any]:
    """The ingest server's TLS arguments from ``[dicom_tls]`` (none without it)."""
    tls = config.dicom_tls
    if tls is None:
        return {}
    return {"tls_context": server_context(tls.cert, tls.key, tls.ca, tls.require_client_cert), "tls_port": tls.port}
