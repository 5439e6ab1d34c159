"""Connections to the DICOM port: socket tuning, and the gate on pending connections and associations.

A connection that has not asked for an association is *pending*; at most
``max_pending`` are kept (the oldest is dropped for a new one, so idle connections
never lock a modality out). At most ``max_associations`` associations run at once.
Only associations count against that limit, not connections that never asked for one.
"""
from __future__ import annotations

import socket
import threading
from collections import OrderedDict

from pynetdicom import evt
from pynetdicom.association import Association

__all__ = [
    "ConnectionGate", "REQUESTOR_HANDLERS", "ack_replies_at_once", "drop_pending", "raw_socket", "remote_address",
    "tune_connection",
]


def tune_connection(event: evt.Event, network_timeout: float | None = None) -> None:
    """Per new connection (accepted or requested): no Nagle delay on small PDUs.

    With ``network_timeout`` (accepted connections), a socket read waits at most that
    long: pynetdicom reads the rest of a PDU with a blocking ``recv``, which without a
    timeout waits forever on a peer that sent part of a PDU, keeping its threads and its
    association slot. Larger socket reads than pynetdicom's 4 KiB and a fixed receive
    buffer were tried and measured slower here (``ainode bench ingest``), so the
    kernel's autotuning stays.
    """
    raw = raw_socket(event.assoc)
    if raw is None:
        return
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if network_timeout is not None:
        raw.settimeout(network_timeout)


_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def ack_replies_at_once(event: evt.Event) -> None:
    """After each PDU the node sends as a requestor: acknowledge the peer's next segment at once.

    A peer that writes its reply in small pieces with Nagle's algorithm on (Orthanc's
    C-STORE response: PDU header, PDV header, then the message, three writes) holds back
    the last piece until its first is acknowledged, and Linux delays that acknowledgement
    by up to 40 ms. Quick-ack mode is not permanent (the kernel leaves it as the
    connection turns interactive), so it is armed again after every PDU sent: the reply
    to the request's last PDU then finds it on. Measured against Orthanc 1.10 on loopback:
    61-117 ms per stored object with TCP_NODELAY alone, 18-24 ms with both.
    """
    if _TCP_QUICKACK is None:
        return
    raw = raw_socket(event.assoc)
    if raw is not None:
        try:
            raw.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:  # closing under us: nothing left to acknowledge
            pass


REQUESTOR_HANDLERS = [(evt.EVT_CONN_OPEN, tune_connection), (evt.EVT_PDU_SENT, ack_replies_at_once)]
"""Event handlers of every association the node requests (delivery, C-MOVE/C-GET, ``ainode send``)."""


def raw_socket(assoc: Association) -> socket.socket | None:
    """The association's TCP socket, if it still has one."""
    assoc_socket = assoc.dul.socket
    return getattr(assoc_socket, "socket", None) if assoc_socket is not None else None


def drop_pending(assoc: Association) -> None:
    """Close a connection that never asked for an association, and stop its reader thread."""
    raw = raw_socket(assoc)
    if raw is not None:
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    assoc.dul.kill_dul()


def remote_address(assoc: Association) -> str:
    """``host:port`` of the peer, for logs."""
    info = assoc.requestor.address_info
    return f"{info.address}:{info.port}" if info is not None else "?"


def _started_and_ended(assoc: Association) -> bool:
    return assoc.ident is not None and not assoc.is_alive()


class ConnectionGate:
    """Accepted connections: those waiting to ask for an association, and admitted associations.

    Both sets prune threads that have ended, so a missed event can never leak a slot.
    """

    def __init__(self, max_associations: int, max_pending: int) -> None:
        self._max_associations = max_associations
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: OrderedDict[Association, None] = OrderedDict()
        self._admitted: set[Association] = set()

    def opened(self, assoc: Association) -> list[Association]:
        """Register a new connection; returns the oldest pending ones it displaces."""
        with self._lock:
            self._prune()
            self._pending[assoc] = None
            displaced = []
            while len(self._pending) > self._max_pending:
                oldest, _ = self._pending.popitem(last=False)
                displaced.append(oldest)
            return displaced

    def admit(self, assoc: Association) -> bool:
        """Whether a requested association fits under the limit (it then counts)."""
        with self._lock:
            self._prune()
            self._pending.pop(assoc, None)
            if len(self._admitted) >= self._max_associations:
                return False
            self._admitted.add(assoc)
            return True

    def admitted(self) -> int:
        """How many admitted associations are still running."""
        with self._lock:
            self._prune()
            return len(self._admitted)

    def closed(self, assoc: Association) -> None:
        """Forget a connection (closed, or its association refused)."""
        with self._lock:
            self._pending.pop(assoc, None)
            self._admitted.discard(assoc)

    def _prune(self) -> None:
        for assoc in [a for a in self._pending if _started_and_ended(a) or a.requestor.primitive is not None]:
            del self._pending[assoc]
        self._admitted = {a for a in self._admitted if not _started_and_ended(a)}
