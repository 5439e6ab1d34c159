"""The node's DICOM listener: a pynetdicom AE whose handlers hand instances to an :class:`InstanceAcceptor`.

Received datasets are written to a file as they arrive (pynetdicom's
``STORE_RECV_CHUNKED_DATASET``), and the node advertises a maximum PDU of 1 MiB, so a
large instance never sits whole in memory: the acceptor reads its header from the
file and moves the file into the spool (the temporary files are on the spool's disk). pynetdicom's flag is process-wide: any other
storage SCP in the same process then also receives into files (``event.dataset`` and
``event.dataset_path`` work there, ``event.encoded_dataset()`` does not).
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Callable

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer

from .disk import DiskGuard
from ..logs import log
from ..metrics import Metrics
from ..states import NO_WAKEUPS, Wakeups
from ..store.spool import Spool
from ..store import JobStore
from ..dicom.tls import HANDSHAKE_TIMEOUT, TlsHandshakes
from .accept import ACCEPTED_TRANSFER_SYNTAXES, DEFAULT_MAX_DATASET_BYTES, InstanceAcceptor, OnDuplicate
from .scp import MAX_PDU_BYTES, SharedContexts, make_ae, start_shared_server
from .connections import ConnectionGate, drop_pending, remote_address, tune_connection
from .header import Status
from .audit import AssociationAudit
from .peers import PeerPolicy
from .syntaxes import syntax_name
from .titles import TitleScreen
from .transfers import Transfer

__all__ = ["IngestServer", "MAX_PDU_BYTES"]

_logger = logging.getLogger("ainode.ingest")


_REJECTED_PERMANENT = 0x01
_REJECTED_TRANSIENT = 0x02
_SERVICE_USER = 0x01
_SERVICE_PROVIDER_PRESENTATION = 0x03
_LOCAL_LIMIT_EXCEEDED = 0x02
_ABSTRACT_SYNTAX_NOT_SUPPORTED = 0x03
_TRANSFER_SYNTAXES_NOT_SUPPORTED = 0x04


class IngestServer:
    """The node's DICOM listener: C-ECHO, and C-STORE of every storage SOP class.

    Parameters
    ----------
    ae_title, host, port
        The node's AE title (the called AE title every request must carry), and where
        to listen (``port`` 0: any free port, see :attr:`port`).
    store, spool, metrics
        The job store, the spool and the metrics the instances go to.
    wakeups
        Told what each newly stored instance produced (``instance received``, or ``series
        received`` when it was filed under its series at once), and the Series Instance
        UIDs an association brought once it is released (A-RELEASE; not on an abort) and
        no other open association is still bringing them.
    max_associations
        Associations running at once; one more is rejected transiently.
    network_timeout
        Seconds a connection may be idle, or wait for the rest of a PDU, before it is
        closed (pynetdicom's network timeout and the accepted sockets' timeout).
    acse_timeout
        Seconds to wait for an A-ASSOCIATE-RQ after a connection opens, or for an
        association's reply (ARTIM); ``None``: ``network_timeout``.
    dimse_timeout
        Seconds to wait for a DIMSE message; ``None``: ``network_timeout``.
    max_pending_connections
        Connections kept that have not asked for an association yet (each costs a
        pynetdicom reader thread polling every millisecond); beyond it the oldest is
        closed. ``None``: ``max_associations``.
    handshake_timeout
        Seconds a new connection has to become an association request: to finish its TLS
        handshake, and then (TLS or not) to send its A-ASSOCIATE-RQ; ``None``: 5 s (or
        ``network_timeout`` when that is shorter). A connection that does not is closed and
        audited as ``no_association`` with the reason.
    max_pending_handshakes
        TLS handshakes in progress at once (they cost no thread: one thread drives them
        all, :class:`~node.dicom.tls.TlsHandshakes`); beyond it new connections wait in the
        kernel's backlog until one ends, or until one has been idle for a second and is
        closed for them. ``None``: 64, or ``max_pending_connections`` when that is larger.
    max_dataset_bytes, disk_guard
        The size limit and free-space floor of the acceptor (:class:`InstanceAcceptor`).
    peers
        Who may associate from where (:mod:`.peers`); ``None``: any well-formed calling title.
    tls_context, tls_port
        DICOM TLS: with ``tls_port``, a second listener speaking TLS on that port; without
        it, ``port`` itself speaks TLS (no plain listener).
    on_duplicate
        What a new copy of a held instance with different content does (:class:`OnDuplicate`).
    reuse_port
        Bind with ``SO_REUSEPORT``: other processes of the node listen on the same ports
        and the kernel spreads the connections over them (``[node] listeners``).

    Presentation contexts are accepted for every storage class in every transfer syntax
    whose pixel data can be decoded here (:data:`ACCEPTED_TRANSFER_SYNTAXES`; a context
    offering several gets the first of that list: uncompressed, then lossless, then lossy);
    a context none of whose syntaxes can be decoded is refused (counted in
    ``ainode_presentation_contexts_rejected_total``).
    """

    def __init__(
        self, ae_title: str, host: str, port: int, store: JobStore, spool: Spool, metrics: Metrics,
        wakeups: Wakeups = NO_WAKEUPS, *,
        max_associations: int = 32,
        network_timeout: float = 30.0,
        acse_timeout: float | None = None,
        dimse_timeout: float | None = None,
        max_pending_connections: int | None = None,
        handshake_timeout: float | None = None,
        max_pending_handshakes: int | None = None,
        max_dataset_bytes: int = DEFAULT_MAX_DATASET_BYTES,
        disk_guard: DiskGuard | None = None,
        peers: PeerPolicy | None = None,
        tls_context: ssl.SSLContext | None = None,
        tls_port: int | None = None,
        on_duplicate: OnDuplicate | str = OnDuplicate.KEEP_FIRST,
        reuse_port: bool = False,
    ) -> None:
        if max_associations < 1:
            raise ValueError(f"max_associations must be >= 1, not {max_associations}")
        if network_timeout <= 0:
            raise ValueError(f"network_timeout must be > 0, not {network_timeout}")
        self._address = (host, port)
        self._reuse_port = reuse_port
        self._metrics = metrics
        self._network_timeout = float(network_timeout)
        self._handshake_timeout = float(min(HANDSHAKE_TIMEOUT, self._network_timeout)
                                        if handshake_timeout is None else handshake_timeout)
        if self._handshake_timeout <= 0:
            raise ValueError(f"handshake_timeout must be > 0, not {handshake_timeout}")
        self._acceptor = InstanceAcceptor(store, spool, metrics, wakeups=wakeups,
                                          max_dataset_bytes=max_dataset_bytes, disk_guard=disk_guard,
                                          on_duplicate=on_duplicate)
        self._transfers: dict[Association, Transfer] = {}
        self._transfers_lock = threading.Lock()
        pending = max_associations if max_pending_connections is None else max_pending_connections
        self._connections = ConnectionGate(max_associations, max(1, pending))
        self._max_pending_handshakes = max(64, pending) if max_pending_handshakes is None else max_pending_handshakes
        self._handshakes: list[TlsHandshakes] = []
        metrics.associations_open.set_function(self._connections.admitted)
        self._acse_timeout = self._network_timeout if acse_timeout is None else acse_timeout
        self._ae = make_ae(ae_title, self._network_timeout, self._acse_timeout,
                            self._network_timeout if dimse_timeout is None else dimse_timeout)
        self._titles = TitleScreen(self._ae.ae_title, peers)
        self._audit = AssociationAudit(request_timeout=min(self._handshake_timeout, self._acse_timeout))
        self._tls_context = tls_context
        self._tls_address = (host, tls_port) if tls_context is not None and tls_port is not None else None
        self._server: ThreadedAssociationServer | None = None
        self._tls_server: ThreadedAssociationServer | None = None

    @property
    def acceptor(self) -> InstanceAcceptor:
        """The acceptor the listener hands instances to (share it with other transports)."""
        return self._acceptor

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def tls_port(self) -> int | None:
        """The bound port of the DICOM TLS listener (the main port when it is the one speaking TLS)."""
        if self._tls_server is not None:
            return int(self._tls_server.server_address[1])
        return self.port if self._tls_context is not None else None

    def open_associations(self) -> int:
        """Associations open now (admitted, not yet closed)."""
        return self._connections.admitted()

    def start(self) -> None:
        """Listen in background threads (and have pynetdicom receive datasets into files)."""
        _config.STORE_RECV_CHUNKED_DATASET = True
        tls_only = self._tls_context is not None and self._tls_address is None
        self._server = self._listen(self._address, self._tls_context if tls_only else None)
        if self._tls_address is not None:
            self._tls_server = self._listen(self._tls_address, self._tls_context)
        log(_logger, logging.INFO, "dicom listener started", ae_title=self._ae.ae_title,
            port=None if tls_only else self.port, tls_port=self.tls_port)

    def _listen(self, address: tuple[str, int], context: ssl.SSLContext | None) -> ThreadedAssociationServer:
        tls = context is not None
        handlers = [
            (evt.EVT_CONN_OPEN, lambda event: self._on_connection(event, tls)),
            (evt.EVT_REQUESTED, lambda event: self._on_requested(event, tls)),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_CONN_CLOSE, self._on_closed),
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, lambda event: Status.SUCCESS.value),
        ]
        if self._reuse_port:
            server = start_shared_server(self._ae, address, handlers, context)
        else:
            server = self._ae.start_server(address, block=False, evt_handlers=handlers, ssl_context=context)
        assert server is not None
        server.contexts = SharedContexts(server.contexts)
        if context is not None:
            self._handshakes.append(self._handshake_first(server, context))
        # socketserver listens with a backlog of 5: a burst of connections overflows it and
        # every later SYN (a modality's too) waits a second or more for its retransmission.
        server.socket.listen(socket.SOMAXCONN)
        return server

    def _handshake_first(self, server: ThreadedAssociationServer, context: ssl.SSLContext) -> TlsHandshakes:
        """Have ``server`` hand each accepted connection to pynetdicom only once its TLS handshake succeeded.

        pynetdicom would wrap the socket in its accept loop, handshake included (one
        silent client stops the listener), and give every connection its threads first
        (a failed handshake then holds them for the network timeout, and logs an ERROR with
        a traceback). Here the accept loop only accepts; :class:`TlsHandshakes` runs the
        handshakes in one thread, and each failure is one WARNING line and one audit record.
        """
        serve = server.process_request  # socketserver's: a thread per connection
        handshakes = TlsHandshakes(context, self._handshake_timeout, self._max_pending_handshakes,
                                   ready=lambda sock, address: self._serve_tls(serve, sock, address),
                                   failed=self._on_handshake_failed,
                                   name=f"TlsHandshakes-{server.server_address[1]}")
        server.get_request = server.socket.accept  # type: ignore[method-assign]
        server.process_request = handshakes.add  # type: ignore[method-assign]
        return handshakes

    def _serve_tls(self, serve: Callable[[ssl.SSLSocket, Any], None], sock: ssl.SSLSocket, address: Any) -> None:
        sock.settimeout(self._network_timeout)
        serve(sock, address)

    def _on_handshake_failed(self, address: Any, reason: str, client_cert: str | None, seconds: float) -> None:
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)
        self._audit.no_association(peer, f"tls: {reason}", tls=True, client_cert=client_cert, seconds=seconds)
        log(_logger, logging.WARNING, "TLS handshake failed", reason=reason, remote=peer, client_cert=client_cert)

    def stop(self) -> None:
        for handshakes in self._handshakes:
            handshakes.close()
        self._handshakes = []
        for server in (self._server, self._tls_server):
            if server is not None:
                server.shutdown()
        self._server = self._tls_server = None

    # connections and associations

    def _on_connection(self, event: evt.Event, tls: bool = False) -> None:
        tune_connection(event, self._network_timeout)
        # until its A-ASSOCIATE-RQ arrives, a connection waits handshake_timeout, not acse_timeout
        event.assoc.acse_timeout = min(self._handshake_timeout, self._acse_timeout)
        self._audit.opened(event.assoc, tls=tls)
        self._titles.watch(event.assoc)
        for displaced in self._connections.opened(event.assoc):
            self._audit.dropped(displaced, "dropped: pending connection limit")
            drop_pending(displaced)
            log(_logger, logging.WARNING, "idle connection dropped for a new one",
                remote=remote_address(displaced))

    def _on_requested(self, event: evt.Event, tls: bool = False) -> None:
        assoc = event.assoc
        assoc.acse_timeout = self._acse_timeout
        rejection = self._titles.rejection(assoc, tls=tls)
        if rejection is not None:
            self._audit.requested(assoc, f"{rejection.reason}: {rejection.problem}",
                                  called_ae=rejection.called, calling_ae=rejection.calling)
            self._connections.closed(assoc)
            log(_logger, logging.WARNING, "association rejected: AE title not recognised", reason=rejection.reason,
                problem=rejection.problem, called_ae=rejection.called, calling_ae=rejection.calling,
                remote=remote_address(assoc))
            self._reject(assoc, rejection.reason, _REJECTED_PERMANENT, _SERVICE_USER, rejection.diagnostic)
        elif not self._connections.admit(assoc):
            self._audit.requested(assoc, "association_limit")
            log(_logger, logging.WARNING, "association rejected: limit reached",
                calling_ae=str(assoc.requestor.ae_title).strip(), remote=remote_address(assoc))
            self._reject(assoc, "association_limit", _REJECTED_TRANSIENT, _SERVICE_PROVIDER_PRESENTATION,
                         _LOCAL_LIMIT_EXCEEDED)
        else:
            self._audit.requested(assoc)

    def _reject(self, assoc: Association, reason: str, result: int, source: int, diagnostic: int) -> None:
        self._metrics.associations_rejected.labels(reason).inc()
        assoc.acse.send_reject(result, source, diagnostic)
        assoc.kill()

    def _on_accepted(self, event: evt.Event) -> None:
        """Count (and log, by UID) the presentation contexts refused in an accepted association."""
        refused = [cx for cx in event.assoc.rejected_contexts
                   if cx.result in (_ABSTRACT_SYNTAX_NOT_SUPPORTED, _TRANSFER_SYNTAXES_NOT_SUPPORTED)]
        for cx in refused:
            syntax_refused = cx.result == _TRANSFER_SYNTAXES_NOT_SUPPORTED
            self._metrics.contexts_rejected.labels("transfer_syntax" if syntax_refused else "abstract_syntax").inc()
        undecodable = sorted({syntax_name(ts) for cx in refused if cx.result == _TRANSFER_SYNTAXES_NOT_SUPPORTED
                              for ts in cx.transfer_syntax})
        if undecodable:
            log(_logger, logging.WARNING, "presentation contexts refused: no decoder for their transfer syntaxes",
                calling_ae=str(event.assoc.requestor.ae_title).strip(), transfer_syntaxes=undecodable)

    def _on_released(self, event: evt.Event) -> None:
        self._end_transfer(event.assoc, released=True)

    def _end_transfer(self, assoc: Association, *, released: bool) -> None:
        with self._transfers_lock:
            transfer = self._transfers.pop(assoc, None)
        if transfer is not None:
            self._acceptor.close_transfer(transfer, released=released)

    def _transfer(self, assoc: Association) -> Transfer:
        """The transfer of an association: the series it brings, released with it."""
        with self._transfers_lock:
            transfer = self._transfers.get(assoc)
            if transfer is None:
                transfer = self._transfers[assoc] = self._acceptor.open_transfer()
            return transfer

    def _on_closed(self, event: evt.Event) -> None:
        self._end_transfer(event.assoc, released=False)  # after a release it has ended already
        self._connections.closed(event.assoc)
        self._titles.forget(event.assoc)
        self._audit.closed(event.assoc)
        _discard_partial_dataset(event.assoc)

    # C-STORE

    def _handle_store(self, event: evt.Event) -> int:
        request = event.request
        # only associations whose calling AE title passed the title screen get here
        source = str(event.assoc.requestor.ae_title).strip()
        sop_class_uid = str(request.AffectedSOPClassUID or "")
        sop_instance_uid = str(request.AffectedSOPInstanceUID or "")
        path = event.dataset_path
        transfer = self._transfer(event.assoc)
        if path is not None:
            size = _file_size(path)
            receipt = self._acceptor.accept_file(path, source, sop_class_uid=sop_class_uid,
                                                 sop_instance_uid=sop_instance_uid, transfer=transfer, take=True)
        else:  # pynetdicom held the dataset in memory (its flag was turned off again)
            with request.DataSet.getbuffer() as view:
                size = view.nbytes
                receipt = self._acceptor.accept(view, event.context.transfer_syntax, source,
                                                sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid,
                                                transfer=transfer)
        self._audit.stored(event.assoc, size, receipt.accepted)
        return receipt.status


def _file_size(path: str | Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _discard_partial_dataset(assoc: Association) -> None:
    """Remove the file of a dataset cut off mid-transfer (abort, lost connection).

    pynetdicom creates it with ``delete=False`` and removes it only after the C-STORE
    handler ran, so a transfer that never completes would leave it in the temporary
    directory. Called from the association's reader thread, the one that writes it.
    """
    message = getattr(assoc.dimse, "message", None)
    partial = getattr(message, "_data_set_file", None)
    if partial is None:
        return
    try:
        partial.close()
    finally:
        Path(partial.name).unlink(missing_ok=True)
