"""DICOM ingest: C-ECHO and C-STORE SCP.

A C-STORE is answered Success only once its header was understood, the raw bytes are
durable on disk and the instance is recorded in the job store. The handler reads the
header (never the pixels) from the received bytes: the four UIDs the node files an
instance by must be there, valid (PS3.5 §9.1) and agree with the command. What it
cannot understand is refused with a failure status and leaves nothing on disk:

========================  ========  ==========================================
reason                    status    when
========================  ========  ==========================================
``unreadable``            0xC000    the header does not parse, ends inside an element,
                                    or its deflate stream is broken
``invalid_uid``           0xC000    a Study, Series, SOP Instance or SOP Class UID
                                    is missing or not a valid UID
``uid_mismatch``          0xA900    the dataset's SOP Class or SOP Instance UID is not
                                    the command's (as dcmtk's storescp answers)
``too_large``             0xA700    the dataset, or its deflated content once
                                    inflated, exceeds ``max_dataset_bytes``
``disk_full``             0xA700    the spool is below its free-space floor, or the
                                    write failed for lack of space
``out_of_resources``      0xA700    any other failure to write or record
========================  ========  ==========================================

``too_large`` is answered 0xA700 (Refused: Out of Resources), not 0xC000: the dataset
may be perfectly understandable, it is the node's configured resource limit that it
exceeds, and that is what the operator of either side must read from the status.

Connections are bounded too: a socket read that waits longer than ``network_timeout``
for the rest of a PDU ends the connection; a connection that has not asked for an
association within ``acse_timeout`` is closed; at most ``max_pending_connections``
such connections are kept (the oldest is dropped for a new one, so idle connections
never lock a modality out); and at most ``max_associations`` associations run at once,
the next request being rejected transiently (A-ASSOCIATE-RJ rejected-transient,
local-limit-exceeded, as pynetdicom's own limit answers) so that the sender retries.
Only associations count against that limit, not connections that never asked for one.
"""
from __future__ import annotations

import copy
import errno
import io
import logging
import socket
import threading
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from .disk import DiskGuard
from .logs import log
from .metrics import Metrics
from .spool import Spool, write_durable
from .store import JobStore
from .uids import is_valid_uid

__all__ = [
    "ACCEPTED_TRANSFER_SYNTAXES",
    "DEFAULT_MAX_DATASET_BYTES",
    "IngestServer",
    "InstanceHeader",
    "InstanceRefused",
    "read_header",
    "tune_connection",
]

_logger = logging.getLogger("ainode.ingest")

ACCEPTED_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
]
"""What the node accepts: the syntaxes it can also decode without extra plugins."""

DEFAULT_MAX_DATASET_BYTES = 1 << 30
"""The largest dataset (as received, and once inflated) the node accepts: 1 GiB."""

_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
_CANNOT_UNDERSTAND = 0xC000

_REJECTED_TRANSIENT = 0x02
_SOURCE_PRESENTATION = 0x03
_LOCAL_LIMIT_EXCEEDED = 0x02

_PREAMBLE = b"\x00" * 128 + b"DICM"
_INFLATE_CHUNK = 1 << 20
_ELEMENT_HEADER_BYTES = 8
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_PYNETDICOM_NO_LIMIT = 1 << 20


@dataclass(frozen=True)
class InstanceHeader:
    """The UIDs an instance is filed by, read from its own header."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str


class InstanceRefused(Exception):
    """A C-STORE that is answered with a failure status.

    ``reason`` is one of the fixed labels of ``ainode_instances_rejected_total`` and
    ``status`` the DIMSE status sent back.
    """

    def __init__(self, reason: str, status: int, error: str = "") -> None:
        super().__init__(f"{reason} (0x{status:04X})")
        self.reason = reason
        self.status = status
        self.error = error


class _TruncationTracker(io.BytesIO):
    """Notices a read cut short by the end of the data: an element longer than what is left.

    pydicom silently keeps the shorter value (a truncated UID still looks like a UID). A
    read that finds nothing at all is the clean end of the dataset only for the next
    element's 8-byte tag and length.
    """

    truncated = False

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if size is not None and 0 < size and len(data) < size and (data or size != _ELEMENT_HEADER_BYTES):
            self.truncated = True
        return data


def read_header(
    part10: bytes, dataset_offset: int, file_meta: FileMetaDataset, max_dataset_bytes: int,
) -> InstanceHeader:
    """Parse the header (not the pixel data) of a received instance.

    Parameters
    ----------
    part10
        The instance in the DICOM File Format: preamble, file meta, encoded dataset.
    dataset_offset
        Where the encoded dataset starts in ``part10``.
    file_meta
        The File Meta Information of ``part10`` (its Transfer Syntax UID is the
        dataset's).
    max_dataset_bytes
        For Deflated Explicit VR Little Endian, the most bytes the dataset may inflate
        to; inflation stops as soon as it is exceeded.

    Raises
    ------
    InstanceRefused
        ``too_large`` past the inflation bound, ``unreadable`` when the header does not
        parse, ``invalid_uid`` when one of the four UIDs is missing or not valid.
    """
    if file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        buffer = _inflated_part10(file_meta, memoryview(part10)[dataset_offset:], max_dataset_bytes)
    else:
        buffer = _TruncationTracker(part10)
    header = _parse_uids(buffer)
    for uid in (header.sop_instance_uid, header.sop_class_uid, header.study_instance_uid,
                header.series_instance_uid):
        if not is_valid_uid(uid):
            raise InstanceRefused("invalid_uid", _CANNOT_UNDERSTAND)
    return header


def _inflated_part10(file_meta: FileMetaDataset, deflated: memoryview, limit: int) -> _TruncationTracker:
    """The File Format of the inflated dataset, as Explicit VR Little Endian, bounded by ``limit``."""
    meta = copy.deepcopy(file_meta)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = _TruncationTracker()
    out.write(_PREAMBLE + encode_file_meta(meta))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending: bytes | memoryview = deflated
    total = 0
    try:
        while True:
            chunk = inflater.decompress(pending, _INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            total += len(chunk)
            if total > limit:
                raise InstanceRefused("too_large", _OUT_OF_RESOURCES)
            out.write(chunk)
            if inflater.eof or (not chunk and not pending):
                break
    except zlib.error as exc:
        raise InstanceRefused("unreadable", _CANNOT_UNDERSTAND, type(exc).__name__) from exc
    if not inflater.eof:
        raise InstanceRefused("unreadable", _CANNOT_UNDERSTAND, "truncated deflate stream")
    out.seek(0)
    return out


def _parse_uids(buffer: _TruncationTracker) -> InstanceHeader:
    """Read the header and touch the four UIDs inside one ``try``: pydicom raises lazily."""
    try:
        ds = dcmread(buffer, stop_before_pixels=True, force=False)
        uids = [ds.get(keyword) for keyword in
                ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")]
        values = ["" if uid is None else str(uid) for uid in uids]
    except Exception as exc:  # pydicom raises many kinds on a broken header
        raise InstanceRefused("unreadable", _CANNOT_UNDERSTAND, type(exc).__name__) from exc
    if buffer.truncated:
        raise InstanceRefused("unreadable", _CANNOT_UNDERSTAND, "truncated dataset")
    return InstanceHeader(*values)


def tune_connection(event: evt.Event, network_timeout: float | None = None) -> None:
    """Per new connection (accepted or requested): no Nagle delay on small PDUs.

    With ``network_timeout`` (accepted connections), a socket read waits at most that
    long: pynetdicom reads the rest of a PDU with a blocking ``recv``, which without a
    timeout waits forever on a peer that sent part of a PDU, keeping its threads and its
    association slot. Larger socket reads than pynetdicom's 4 KiB and a fixed receive
    buffer were tried and measured slower here (``ainode bench ingest``), so the
    kernel's autotuning stays.
    """
    raw = _raw_socket(event.assoc)
    if raw is None:
        return
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if network_timeout is not None:
        raw.settimeout(network_timeout)


def _raw_socket(assoc: Association) -> socket.socket | None:
    assoc_socket = assoc.dul.socket
    return getattr(assoc_socket, "socket", None) if assoc_socket is not None else None


def _started_and_ended(assoc: Association) -> bool:
    return assoc.ident is not None and not assoc.is_alive()


class _Connections:
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

    def closed(self, assoc: Association) -> None:
        with self._lock:
            self._pending.pop(assoc, None)
            self._admitted.discard(assoc)

    def _prune(self) -> None:
        for assoc in [a for a in self._pending if _started_and_ended(a) or a.requestor.primitive is not None]:
            del self._pending[assoc]
        self._admitted = {a for a in self._admitted if not _started_and_ended(a)}


class _KeyedLocks:
    """One lock per key (a SOP Instance UID), held only while someone needs it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[key]


class IngestServer:
    """The node's DICOM listener.

    Parameters
    ----------
    ae_title, host, port
        Where to listen (``port`` 0: any free port, see :attr:`port`).
    store, spool, metrics
        The job store, the spool and the metrics the instances go to.
    on_stored
        Called after each newly stored instance.
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
    max_dataset_bytes
        Largest dataset accepted, as received and (deflated) once inflated.
    disk_guard
        Free-space floor checked before every write; ``None``: a guard without floor
        (it only refuses what would not fit at all, and feeds the disk gauges).
    """

    def __init__(
        self, ae_title: str, host: str, port: int, store: JobStore, spool: Spool, metrics: Metrics,
        on_stored: Callable[[], None] = lambda: None, *,
        max_associations: int = 32,
        network_timeout: float = 30.0,
        acse_timeout: float | None = None,
        dimse_timeout: float | None = None,
        max_pending_connections: int | None = None,
        max_dataset_bytes: int = DEFAULT_MAX_DATASET_BYTES,
        disk_guard: DiskGuard | None = None,
    ) -> None:
        if max_associations < 1:
            raise ValueError(f"max_associations must be >= 1, not {max_associations}")
        if network_timeout <= 0:
            raise ValueError(f"network_timeout must be > 0, not {network_timeout}")
        if max_dataset_bytes < 1:
            raise ValueError(f"max_dataset_bytes must be >= 1, not {max_dataset_bytes}")
        self._address = (host, port)
        self._store = store
        self._spool = spool
        self._metrics = metrics
        self._on_stored = on_stored
        self._network_timeout = float(network_timeout)
        self._max_dataset_bytes = int(max_dataset_bytes)
        self._disk = disk_guard if disk_guard is not None else DiskGuard(spool.instances, 0, 0)
        pending = max_associations if max_pending_connections is None else max_pending_connections
        self._connections = _Connections(max_associations, max(1, pending))
        self._uid_locks = _KeyedLocks()
        self._ae = _make_ae(ae_title, self._network_timeout,
                            self._network_timeout if acse_timeout is None else acse_timeout,
                            self._network_timeout if dimse_timeout is None else dimse_timeout)
        metrics.disk_free_bytes.set_function(_unless_oserror(self._disk.free_bytes))
        metrics.disk_below_watermark.set_function(_unless_oserror(self._disk.below_watermark))
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Listen in background threads."""
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_connection),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_CONN_CLOSE, self._on_closed),
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, lambda event: _SUCCESS),
        ]
        server = self._ae.start_server(self._address, block=False, evt_handlers=handlers)
        assert server is not None
        # socketserver listens with a backlog of 5: a burst of connections overflows it and
        # every later SYN (a modality's too) waits a second or more for its retransmission.
        server.socket.listen(socket.SOMAXCONN)
        self._server = server
        log(_logger, logging.INFO, "dicom listener started", ae_title=self._ae.ae_title, port=self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # connections and associations

    def _on_connection(self, event: evt.Event) -> None:
        tune_connection(event, self._network_timeout)
        for displaced in self._connections.opened(event.assoc):
            _drop_pending(displaced)
            log(_logger, logging.WARNING, "idle connection dropped for a new one",
                remote=_remote(displaced))

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        if self._connections.admit(assoc):
            return
        log(_logger, logging.WARNING, "association rejected: limit reached",
            calling_ae=str(assoc.requestor.ae_title).strip(), remote=_remote(assoc))
        assoc.acse.send_reject(_REJECTED_TRANSIENT, _SOURCE_PRESENTATION, _LOCAL_LIMIT_EXCEEDED)
        assoc.kill()

    def _on_closed(self, event: evt.Event) -> None:
        self._connections.closed(event.assoc)

    # C-STORE

    def _handle_store(self, event: evt.Event) -> int:
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        try:
            try:
                header, part10 = self._check(event)
                outcome = self._store_instance(header, part10, calling_ae)
            except InstanceRefused:
                raise
            except Exception as exc:  # a bug must not reach pynetdicom: the sender may retry later
                raise InstanceRefused("out_of_resources", _OUT_OF_RESOURCES, type(exc).__name__) from exc
        except InstanceRefused as refusal:
            self._metrics.instances_received.labels("error").inc()
            self._metrics.instances_rejected.labels(refusal.reason).inc()
            log(_logger, logging.WARNING, "instance refused", reason=refusal.reason,
                status=f"0x{refusal.status:04X}", error=refusal.error or None,
                sop_instance_uid=sop_uid if is_valid_uid(sop_uid) else "<invalid>", calling_ae=calling_ae)
            return refusal.status
        self._metrics.instances_received.labels(outcome).inc()
        if outcome == "stored":
            self._on_stored()
        return _SUCCESS

    def _check(self, event: evt.Event) -> tuple[InstanceHeader, bytes]:
        """The header of a C-STORE request and its File Format bytes, or :class:`InstanceRefused`."""
        command_uid = str(event.request.AffectedSOPInstanceUID)
        command_class = str(event.request.AffectedSOPClassUID)
        if not is_valid_uid(command_uid) or not is_valid_uid(command_class):
            raise InstanceRefused("invalid_uid", _CANNOT_UNDERSTAND)
        size = _encoded_size(event)
        if size > self._max_dataset_bytes:
            raise InstanceRefused("too_large", _OUT_OF_RESOURCES)
        part10 = event.encoded_dataset()
        header = read_header(part10, len(part10) - size, event.file_meta, self._max_dataset_bytes)
        if header.sop_instance_uid != command_uid or header.sop_class_uid != command_class:
            raise InstanceRefused("uid_mismatch", _DATASET_DOES_NOT_MATCH_SOP_CLASS)
        return header, part10

    def _store_instance(self, header: InstanceHeader, part10: bytes, calling_ae: str) -> str:
        """Write and record one instance (once per UID); returns ``stored`` or ``duplicate``."""
        sop_uid = header.sop_instance_uid
        path = self._spool.instance_path(sop_uid)
        with self._uid_locks.hold(sop_uid):
            if self._has_instance(sop_uid):
                return "duplicate"
            if not self._disk.reserve(len(part10)):
                raise InstanceRefused("disk_full", _OUT_OF_RESOURCES, "below the free-space floor")
            self._write(path, part10)
            try:
                added = self._store.add_instance(sop_uid, header.sop_class_uid, str(path), calling_ae,
                                                 series_uid=header.series_instance_uid,
                                                 study_uid=header.study_instance_uid)
            except Exception as exc:  # a broken store: nothing of the instance may stay
                path.unlink(missing_ok=True)
                raise InstanceRefused("out_of_resources", _OUT_OF_RESOURCES, type(exc).__name__) from exc
        log(_logger, logging.DEBUG, "instance stored", sop_instance_uid=sop_uid,
            series_instance_uid=header.series_instance_uid, calling_ae=calling_ae)
        return "stored" if added else "duplicate"

    def _has_instance(self, sop_uid: str) -> bool:
        try:
            return self._store.has_instance(sop_uid)
        except Exception as exc:
            raise InstanceRefused("out_of_resources", _OUT_OF_RESOURCES, type(exc).__name__) from exc

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        try:
            write_durable(path, data)
        except OSError as exc:
            reason = "disk_full" if exc.errno in _DISK_FULL_ERRNOS else "out_of_resources"
            raise InstanceRefused(reason, _OUT_OF_RESOURCES, errno.errorcode.get(exc.errno or 0, "OSError")) from exc


def _make_ae(ae_title: str, network_timeout: float, acse_timeout: float, dimse_timeout: float) -> AE:
    """The AE, with every storage class and Verification.

    pynetdicom's own association limit counts every connection thread, also those that
    never asked for an association or were dropped and wait out ``acse_timeout``; the
    node counts associations and pending connections itself (:class:`_Connections`), so
    pynetdicom's limit is lifted out of the way.
    """
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = 0
    ae.maximum_associations = _PYNETDICOM_NO_LIMIT
    ae.network_timeout = network_timeout
    ae.acse_timeout = acse_timeout
    ae.dimse_timeout = dimse_timeout
    ae.add_supported_context(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
    return ae


def _unless_oserror(read: Callable[[], float]) -> Callable[[], float]:
    """``read`` as a gauge's function: NaN when the file system cannot be asked (a scrape never fails)."""
    def value() -> float:
        try:
            return float(read())
        except OSError:
            return float("nan")
    return value


def _encoded_size(event: evt.Event) -> int:
    """Bytes of the encoded dataset as received, without copying them."""
    with event.request.DataSet.getbuffer() as view:
        return view.nbytes


def _drop_pending(assoc: Association) -> None:
    """Close a connection that never asked for an association, and stop its reader thread."""
    raw = _raw_socket(assoc)
    if raw is not None:
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    assoc.dul.kill_dul()


def _remote(assoc: Association) -> str:
    info = assoc.requestor.address_info
    return f"{info.address}:{info.port}" if info is not None else "?"
