"""Helpers that run in a thread beside a scenario: the node's peak RSS, liveness probes
(C-ECHO, ``/healthz``, the process) and a slow TCP relay in front of the PACS."""
from __future__ import annotations

import abc

import contextlib
import socket
import threading
import time
from typing import Any, Callable, Self

import httpx

from benchmarks.services import NodeProcess, echoscu, node_exit_code, process_tree_rss


class _InThread(abc.ABC):
    """Runs ``_run`` in a daemon thread named ``name`` from ``with`` entry; at exit sets
    ``_stop`` and waits up to ``join_timeout`` seconds for the thread."""

    def __init__(self, name: str, join_timeout: float) -> None:
        self._stop = threading.Event()
        self._join_timeout = join_timeout
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self._join_timeout)

    @abc.abstractmethod
    def _run(self) -> None:
        """The thread's work, until ``_stop`` is set."""


class RssSampler(_InThread):
    """Samples the resident memory of a process tree (a node and its workers) in a thread."""

    def __init__(self, pid: Callable[[], int | None], interval: float = 0.2) -> None:
        super().__init__("rss-sampler", join_timeout=5)
        self._pid = pid
        self._interval = interval
        self.peak = 0
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            pid = self._pid()
            if pid is not None:
                self.peak = max(self.peak, process_tree_rss(pid))
                self.samples += 1
            self._stop.wait(self._interval)


class Prober(_InThread):
    """C-ECHO (dcmtk ``echoscu``), ``GET /healthz`` and "is the process alive" every
    ``interval`` seconds in a thread; every failure is kept with its time and reason."""

    def __init__(self, node: NodeProcess, interval: float = 2.0, timeout: float = 10.0) -> None:
        super().__init__("prober", join_timeout=timeout * 2 + 10)
        self.node = node
        self.interval = interval
        self.timeout = timeout
        self.failures: list[str] = []
        self.probes = 0
        self.exited: int | None = None
        self._started = time.monotonic()

    def probe(self) -> list[str]:
        """One round of probes; returns (and keeps) what failed."""
        at = f"t+{time.monotonic() - self._started:.1f}s"
        failed = []
        code = node_exit_code(self.node)
        if code is not None:
            self.exited = code
            failed.append(f"{at} node process exited with status {code}")
        else:
            reason = echoscu(self.node.dicom_port or 0, timeout=self.timeout)
            if reason:
                failed.append(f"{at} C-ECHO: {reason}")
            try:
                response = httpx.get(f"{self.node.http_url}/healthz", timeout=self.timeout)
                if response.status_code != 200:
                    failed.append(f"{at} /healthz {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                failed.append(f"{at} /healthz: {exc!r}")
        self.probes += 1
        self.failures += failed
        return failed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.probe()


class SlowProxy:
    """A TCP relay to ``target`` that sleeps ``delay`` seconds before forwarding each chunk
    the client sends: delivery to the PACS takes long enough to be killed in the middle."""

    def __init__(self, target: tuple[str, int], delay: float = 0.02, chunk: int = 65536) -> None:
        self.target = target
        self.delay = delay
        self.chunk = chunk
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="slow-proxy", daemon=True)

    def start(self) -> "SlowProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            for src, dst, delay in ((client, upstream, self.delay), (upstream, client, 0.0)):
                threading.Thread(target=self._pump, args=(src, dst, delay), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while True:
                data = src.recv(self.chunk)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
