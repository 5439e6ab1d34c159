"""Whether the node's listening ports are free, said in one line a newcomer can act on."""
from __future__ import annotations

import errno
import socket

from .config import NodeConfig

__all__ = ["PortInUse", "check_ports", "port_in_use_message"]


class PortInUse(RuntimeError):
    """A port the node must listen on is held by another process."""


def port_in_use_message(kind: str, host: str, port: int) -> str:
    """The line ``ainode serve`` prints when ``kind`` ("DICOM" or "HTTP") ``port`` is taken."""
    key, option, who = (("dicom_port", "--dicom-port", "another ainode or PACS?") if kind == "DICOM"
                        else ("http_port", "--http-port", "another ainode?"))
    return (f"ainode: {kind} port {port} on {host} is in use ({who}) — set [node] {key} or {option}")


def check_ports(node: NodeConfig) -> None:
    """Raise :class:`PortInUse` when the DICOM or the HTTP port cannot be bound.

    Binds each address the way the listeners do (``SO_REUSEADDR``, so a port in
    TIME_WAIT counts as free) and lets it go at once. Port 0 (any free port) is skipped.
    """
    for kind, host, port in (("DICOM", node.dicom_host, node.dicom_port), ("HTTP", node.http_host, node.http_port)):
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(port_in_use_message(kind, host, port)) from None
                raise
