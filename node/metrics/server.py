"""``GET /metrics`` for a process without the node's HTTP API (``ainode worker``)."""
from __future__ import annotations

from typing import Any

from prometheus_client import start_http_server

from . import Metrics

__all__ = ["MetricsServer"]


class MetricsServer:
    """prometheus-client's own HTTP server, serving ``metrics``'s registry on ``host:port``.

    ``port`` 0 takes any free port (see :attr:`port`).
    """

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._address = (host, port)
        self._server: Any = None
        self._thread: Any = None

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        host, port = self._address
        self._server, self._thread = start_http_server(port, addr=host, registry=self._metrics.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
