"""DICOM ingest: C-ECHO and C-STORE SCP.

A C-STORE is answered Success only once the raw bytes are durable on disk and the
instance is recorded in the job store. Nothing is decoded on the association thread:
the indexer (:mod:`node.index`) reads the header afterwards.
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Callable

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from .logs import log
from .metrics import Metrics
from .spool import Spool, write_durable
from .store import JobStore

__all__ = ["IngestServer", "ACCEPTED_TRANSFER_SYNTAXES", "tune_connection"]

_logger = logging.getLogger("ainode.ingest")

ACCEPTED_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
]
"""What the node accepts: the syntaxes it can also decode without extra plugins."""

_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC000




def tune_connection(event: evt.Event) -> None:
    """Per new connection (accepted or requested): no Nagle delay on small PDUs.

    Larger socket reads than pynetdicom's 4 KiB and a fixed receive buffer were tried and
    measured slower here (``ainode bench ingest``), so the kernel's autotuning stays.
    """
    assoc_socket = event.assoc.dul.socket
    raw = getattr(assoc_socket, "socket", None)
    if assoc_socket is None or raw is None:
        return
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class IngestServer:
    """The node's DICOM listener."""

    def __init__(
        self, ae_title: str, host: str, port: int, store: JobStore, spool: Spool, metrics: Metrics,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self._address = (host, port)
        self._store = store
        self._spool = spool
        self._metrics = metrics
        self._on_stored = on_stored
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = 0
        self._ae.maximum_associations = 32
        self._ae.network_timeout = 60
        self._ae.dimse_timeout = 60
        self._ae.add_supported_context(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        for context in AllStoragePresentationContexts:
            self._ae.add_supported_context(context.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
        self._server: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None
        return int(self._server.server_address[1])  # type: ignore[attr-defined]

    def start(self) -> None:
        """Listen in background threads."""
        handlers = [
            (evt.EVT_CONN_OPEN, tune_connection),
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, lambda event: _SUCCESS),
        ]
        self._server = self._ae.start_server(self._address, block=False, evt_handlers=handlers)
        log(_logger, logging.INFO, "dicom listener started", ae_title=self._ae.ae_title, port=self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server = None

    def _handle_store(self, event: evt.Event) -> int:
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        sop_class = str(event.request.AffectedSOPClassUID)
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        try:
            path = self._spool.instance_path(sop_uid)
        except ValueError as exc:
            self._metrics.instances_received.labels("error").inc()
            log(_logger, logging.WARNING, "instance rejected", reason=str(exc), calling_ae=calling_ae)
            return _CANNOT_UNDERSTAND
        try:
            if self._store.has_instance(sop_uid):
                self._metrics.instances_received.labels("duplicate").inc()
                return _SUCCESS
            write_durable(path, event.encoded_dataset())
            self._store.add_instance(sop_uid, sop_class, str(path), calling_ae)
        except Exception as exc:  # a full disk, a broken store: tell the sender to retry later
            self._metrics.instances_received.labels("error").inc()
            log(_logger, logging.ERROR, "instance not stored", sop_instance_uid=sop_uid, reason=repr(exc))
            return _OUT_OF_RESOURCES
        self._metrics.instances_received.labels("stored").inc()
        self._on_stored()
        return _SUCCESS
