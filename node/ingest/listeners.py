"""Ingest across cores: ``[node] listeners = N`` DICOM listener processes on one port.

The node's own process listens as usual; N-1 more processes, started here, bind the
same port (and TLS port) with ``SO_REUSEPORT``, and the kernel spreads incoming
connections over all of them. Each runs only an :class:`~node.ingest.IngestServer` (its
own pynetdicom threads, its own GIL): receive, write durably to the shared spool,
record in the job store (filed under its series where ingest can), answer. Everything
after that (what only the indexer decides, assembling, routing) stays in the node's
process, which finds the new rows in the store; a listener only tells it, over a queue,
that it filed something (wake the assembler) or stored something the indexer must file,
which series an association released (``complete_on_release`` routes), and its counters
(so ``/metrics`` counts every listener's instances and associations).

Sharing the store: PostgreSQL, or the node's SQLite file in WAL mode (each process has
its own connection; SQLite serialises the writers, ``busy_timeout`` makes the others
wait). A series whose associations land in different listeners is one series: the
rows meet in the store, and the one assembler completes it once.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Iterable

from prometheus_client import Counter

from ..config import Config
from .disk import DiskGuard
from ..logs import log
from ..metrics import Metrics
from ..states import NO_WAKEUPS, InstanceState, SeriesState, Wakeups
from ..store.spool import Spool
from ..store import JobStoreContract, open_store
from ..dicom.tls import server_context
from .peers import PeerPolicy
from .server import IngestServer

__all__ = ["ListenerProcesses", "ingest_server"]

_logger = logging.getLogger("ainode.ingest")

_REPORT_SECONDS = 0.5
"""How often a listener process sends its counters to the node's process."""


def ingest_server(config: Config, store: JobStoreContract, spool: Spool, metrics: Metrics, *,
                  wakeups: Wakeups = NO_WAKEUPS, port: int | None = None, tls_port: int | None = None,
                  disk_guard: DiskGuard | None = None) -> IngestServer:
    """The DICOM listener that ``config`` describes (``port``/``tls_port``: bind those instead).

    With ``[node] listeners`` above 1 it binds with ``SO_REUSEPORT``, beside the others.
    ``disk_guard``: the spool's free-space guard (default: one from ``[spool]``).
    """
    node = config.node
    tls: dict[str, Any] = {}
    if config.dicom_tls is not None:
        t = config.dicom_tls
        tls = {"tls_context": server_context(t.cert, t.key, t.ca, t.require_client_cert),
               "tls_port": t.port if tls_port is None else tls_port}
    return IngestServer(
        node.ae_title, node.dicom_host, node.dicom_port if port is None else port, store, spool, metrics,
        wakeups, max_associations=node.max_associations,
        network_timeout=node.network_timeout_seconds,
        max_dataset_bytes=int(config.spool.max_dataset_mb * 1024 * 1024),
        disk_guard=disk_guard or DiskGuard(spool.root, config.spool.min_free_mb, config.spool.min_free_percent),
        peers=PeerPolicy(config.peers, node.accept_unknown_peers), **tls,
        on_duplicate=config.ingest.on_duplicate, reuse_port=node.listeners > 1,
    )


@dataclass
class _Child:
    index: int
    process: Any  # multiprocessing's SpawnProcess
    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    open_associations: int = 0
    ready: bool = False


class ListenerProcesses:
    """The node's extra listener processes (``listeners - 1``), seen from the node's process.

    Parameters
    ----------
    config
        The node's configuration (each process builds its listener from it).
    port, tls_port
        The ports the node's own listener bound (the others join them).
    metrics
        The node's metrics: the listeners' counters are added to them.
    wakeups
        As :class:`~node.ingest.IngestServer`'s, told in the node's process what the
        listeners produced and released.
    """

    def __init__(self, config: Config, port: int, tls_port: int | None, metrics: Metrics,
                 wakeups: Wakeups = NO_WAKEUPS) -> None:
        self._config = config
        self._ports = (port, tls_port)
        self._metrics = metrics
        self._wakeups = wakeups
        self._context = multiprocessing.get_context("spawn")
        self._events: Any = self._context.Queue()
        self._children: list[_Child] = []
        self._counters = {c.describe()[0].name: c for c in vars(metrics).values() if isinstance(c, Counter)}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener-events", daemon=True)

    def start(self, timeout: float = 60.0) -> None:
        """Start the processes; returns once each one listens."""
        self._thread.start()
        for index in range(2, self._config.node.listeners + 1):
            process = self._context.Process(
                target=_listener_main, name=f"ainode-listener-{index}", daemon=True,
                args=(self._config, *self._ports, index, self._events, os.getpid()))
            process.start()
            self._children.append(_Child(index, process, {}))
        deadline = time.monotonic() + timeout
        while not all(c.ready for c in self._children):
            dead = [c.index for c in self._children if not c.process.is_alive()]
            if dead or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"listener process(es) {dead or 'not ready'} failed to start (see the log)")
            time.sleep(0.05)
        log(_logger, logging.INFO, "listener processes started", listeners=self._config.node.listeners,
            pids=[c.process.pid for c in self._children])

    def close_intake(self) -> None:
        """Tell every listener process to stop: it refuses new associations at once and
        ends once its open ones have (within ``[node] shutdown_grace_seconds``)."""
        for child in self._children:
            if child.process.is_alive():
                child.process.terminate()  # SIGTERM: the listener stops serving and closes its store

    def stop(self, timeout: float | None = None) -> None:
        """Stop every listener process (each finishes its open C-STOREs), then the event thread.

        ``timeout``: how long they all get (default: the grace period and 2 s); one still
        running then is killed.
        """
        self.close_intake()
        if timeout is None:
            timeout = self._config.node.shutdown_grace_seconds + 2.0
        deadline = time.monotonic() + timeout
        for child in self._children:
            child.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                child.process.kill()
                child.process.join(timeout=5)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._drain()

    def pids(self) -> list[int]:
        """The process ids of the extra listeners."""
        return [c.process.pid for c in self._children]

    def missing(self) -> list[str]:
        """Names of listener processes that are no longer running (for the node's health)."""
        return [f"listener-{c.index}" for c in self._children if c.ready and not c.process.is_alive()]

    def open_associations(self) -> int:
        """Associations open in the extra listeners, as they last reported."""
        with self._lock:
            return sum(c.open_associations for c in self._children if c.process.is_alive())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._events.get(timeout=0.5)
            except queue.Empty:
                continue
            self._handle(event)

    def _drain(self) -> None:
        """Handle what the processes sent before they ended (their last counters, releases)."""
        while True:
            try:
                self._handle(self._events.get(timeout=0.1))
            except queue.Empty:
                return

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        try:
            if kind == "produced":
                self._wakeups.produced(*(_STATES[name] for name in event[1]))
            elif kind == "released":
                self._wakeups.released(event[1])
            elif kind == "ready":
                self._child(event[1]).ready = True
            elif kind == "counters":
                self._add_counters(self._child(event[1]), event[2], event[3])
        except Exception as exc:  # one bad event never stops the others
            log(_logger, logging.ERROR, "listener event not handled", kind=kind, reason=repr(exc))

    def _child(self, index: int) -> _Child:
        return next(c for c in self._children if c.index == index)

    def _add_counters(self, child: _Child, counters: dict[tuple[str, tuple[tuple[str, str], ...]], float],
                      open_associations: int) -> None:
        """Add what each of a listener's counters grew since its last report to the node's."""
        with self._lock:
            child.open_associations = open_associations
            for key, value in counters.items():
                grown = value - child.counters.get(key, 0.0)
                name, labels = key
                counter = self._counters.get(name)
                if grown > 0 and counter is not None:
                    (counter.labels(**dict(labels)) if labels else counter).inc(grown)
            child.counters = dict(counters)


def _counter_values(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter sample of ``metrics``: ``(family name, labels) → value``."""
    values = {}
    for family in metrics.registry.collect():
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name == family.name + "_total":
                values[(family.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


_STATES: dict[str, StrEnum] = {
    f"{kind.__name__}.{state.value}": state for kind in (InstanceState, SeriesState) for state in kind}
"""The states a listener process reports produced, by the key they travel under."""


def _state_key(state: StrEnum) -> str:
    return f"{type(state).__name__}.{state.value}"


class _Relay:
    """A listener process's :class:`~node.states.Wakeups`: what it produced goes to the node's process."""

    def __init__(self, news: "_News", events: Any) -> None:
        self._news = news
        self._events = events

    def produced(self, *states: StrEnum) -> None:
        for state in states:
            self._news.add(_state_key(state))

    def released(self, series_uids: Iterable[str]) -> None:
        self._events.put(("released", list(series_uids)))


class _News:
    """What a listener process has to tell the node's process: kinds of news, each once."""

    def __init__(self) -> None:
        self._kinds: set[str] = set()
        self._lock = threading.Lock()
        self._event = threading.Event()

    def add(self, kind: str) -> None:
        with self._lock:
            self._kinds.add(kind)
        self._event.set()

    def wait(self, timeout: float) -> list[str]:
        """The kinds added since the last call, waiting up to ``timeout`` for the first."""
        if not self._event.wait(timeout):
            return []
        with self._lock:
            self._event.clear()
            kinds, self._kinds = sorted(self._kinds), set()
        return kinds


def _listener_main(config: Config, port: int, tls_port: int | None, index: int, events: Any, parent: int) -> None:
    """One extra listener process: an ingest server on the node's port until SIGTERM."""
    from ..worker import die_with_parent

    die_with_parent(parent)  # also sets up JSON logging in this fresh interpreter
    os.umask(0o077)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node's process decides when to stop
    data_dir = config.node.data_dir
    store = open_store(config.store.url, data_dir)
    spool = Spool(data_dir / "spool")
    tempfile.tempdir = str(spool.root / "incoming")  # as the node's process: received datasets on the spool's disk
    metrics = Metrics()
    news = _News()
    server = ingest_server(config, store, spool, metrics, wakeups=_Relay(news, events), port=port, tls_port=tls_port)
    server.start()
    events.put(("ready", index))
    log(_logger, logging.INFO, "listener process started", listener=index, port=port)
    try:
        reported = time.monotonic()
        while not stopping.is_set():
            produced = news.wait(0.05)  # one wake-up of each state for every instance stored meanwhile
            if produced:
                events.put(("produced", produced))
            if time.monotonic() - reported >= _REPORT_SECONDS:
                reported = time.monotonic()
                events.put(("counters", index, _counter_values(metrics), server.open_associations()))
    finally:
        server.stop()  # new associations refused; the open ones finish, within the grace period
        deadline = time.monotonic() + config.node.shutdown_grace_seconds
        while server.open_associations() and time.monotonic() < deadline:
            time.sleep(0.1)
        events.put(("counters", index, _counter_values(metrics), 0))
        events.put(("produced", [_state_key(InstanceState.RECEIVED)]))
        events.put(("filed",))
        store.close()
        events.close()
        events.join_thread()
