"""Taking in one encoded instance, whatever carried it: check, store once, record, answer.

:class:`InstanceAcceptor` does everything between receipt and the answer for one
instance: it checks the header, applies the duplicate policy (one writer per SOP
Instance UID), keeps the disk's free-space floor, writes the file durably, records
the instance in the job store (with its series and study), counts and logs. Its
:class:`Receipt` carries the DIMSE status to answer and the outcome, so a C-STORE
SCP and a STOW-RS endpoint give the same guarantee: accepted only once durable and
recorded.
"""
from __future__ import annotations

import errno
import io
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Sequence

from .disk import DiskGuard
from ..logs import log
from ..metrics import Metrics
from ..store.spool import Spool, move_durable
from ..states import NO_WAKEUPS, InstanceState, SeriesState, Wakeups
from ..store import JobStore
from ..dicom.uids import is_valid_uid
from .claim import Claim, Movable, check_claim, claimed_uids
from .header import Encoded, InstanceHeader, InstanceRefused, Status, read_file_meta, read_header
from .locks import KeyedLocks
from .receipt import DuplicateAction, OnDuplicate, Outcome, Receipt
from .spool_files import DISK_FULL_ERRNOS, META_BYTES, same_content, write_instance
from .syntaxes import decodable_transfer_syntaxes
from .transfers import Transfer, Transfers

__all__ = [
    "ACCEPTED_TRANSFER_SYNTAXES",
    "DEFAULT_MAX_DATASET_BYTES",
    "DuplicateAction",
    "InstanceAcceptor",
    "OnDuplicate",
    "Outcome",
    "Receipt",
]

_logger = logging.getLogger("ainode.ingest")

ACCEPTED_TRANSFER_SYNTAXES = decodable_transfer_syntaxes()
"""What the node accepts: every syntax whose pixel data pydicom's decoders can decode here
(asked once, at import; installed decoder plugins widen it, see :mod:`.syntaxes`)."""

DEFAULT_MAX_DATASET_BYTES = 1 << 30
"""The largest dataset (as received, and once inflated) the node accepts: 1 GiB."""


class InstanceAcceptor:
    """Checks, stores once and records encoded instances; transport-independent and thread-safe.

    Parameters
    ----------
    store, spool, metrics
        The job store, the spool and the metrics the instances go to.
    wakeups
        Told what each newly stored instance produced: ``instance received`` (the indexer
        still has to file it) or ``series received`` (filed under its series at once, its
        header read here, see :meth:`JobStore.add_filed_instance`); and the series a
        transfer released (:meth:`close_transfer`).
    max_dataset_bytes
        Largest dataset accepted, as received and (deflated) once inflated.
    disk_guard
        Free-space floor checked before every write; ``None``: a guard without floor
        (it only refuses what would not fit at all, and feeds the disk gauges).
    on_duplicate
        What a new copy of a held instance with different content does.
    transfer_syntaxes
        The syntaxes accepted; ``None``: :data:`ACCEPTED_TRANSFER_SYNTAXES`.
    """

    def __init__(
        self, store: JobStore, spool: Spool, metrics: Metrics, *,
        wakeups: Wakeups = NO_WAKEUPS,
        max_dataset_bytes: int = DEFAULT_MAX_DATASET_BYTES,
        disk_guard: DiskGuard | None = None,
        on_duplicate: OnDuplicate | str = OnDuplicate.KEEP_FIRST,
        transfer_syntaxes: Sequence[str] | None = None,
    ) -> None:
        if max_dataset_bytes < 1:
            raise ValueError(f"max_dataset_bytes must be >= 1, not {max_dataset_bytes}")
        self._store = store
        self._spool = spool
        self._metrics = metrics
        self._wakeups = wakeups
        self.max_dataset_bytes = int(max_dataset_bytes)
        self._disk = disk_guard if disk_guard is not None else DiskGuard(spool.instances, 0, 0)
        self._uid_locks = KeyedLocks()
        self.on_duplicate = OnDuplicate(on_duplicate)
        self._transfers = Transfers()
        self.transfer_syntaxes = frozenset(
            str(uid) for uid in (ACCEPTED_TRANSFER_SYNTAXES if transfer_syntaxes is None else transfer_syntaxes))
        metrics.disk_free_bytes.set_function(_unless_oserror(self._disk.free_bytes))
        metrics.disk_below_watermark.set_function(_unless_oserror(self._disk.below_watermark))

    def accept(
        self, dataset: bytes | bytearray | memoryview, transfer_syntax: str, source: str, *,
        sop_class_uid: str | None = None, sop_instance_uid: str | None = None, transfer: Transfer | None = None,
    ) -> Receipt:
        """Take in one encoded dataset (no file meta), as a C-STORE carries it.

        Parameters
        ----------
        dataset
            The dataset's bytes as received, encoded in ``transfer_syntax``; not copied.
        transfer_syntax
            Its transfer syntax UID.
        source
            Who sent it (the validated calling AE title; for HTTP, the client): recorded
            with the instance and logged.
        sop_class_uid, sop_instance_uid
            The UIDs the sender claims (a C-STORE's Affected SOP Class and Instance);
            the header must agree. ``None``: the transport claims none.
        transfer
            The association or request that brought it (:meth:`open_transfer`), if any.
        """
        return self._accept(lambda: Claim(Encoded.of_bytes(dataset, transfer_syntax), sop_class_uid,
                                           sop_instance_uid), source, transfer)

    def accept_part10(
        self, data: bytes | bytearray | memoryview, source: str, *, transfer: Transfer | None = None,
    ) -> Receipt:
        """Take in one instance in the DICOM File Format (a STOW-RS part, a file).

        Its File Meta Information gives the transfer syntax, and the SOP Class and
        Instance UIDs it claims; the stored file gets the node's own preamble and meta.
        A file without a readable meta is refused as ``unreadable``.
        """
        view = memoryview(data).cast("B")

        def claim() -> Claim:
            meta, offset = read_file_meta(view, len(view))
            return Claim(Encoded.of_bytes(view, str(meta.TransferSyntaxUID), offset), *claimed_uids(meta))

        return self._accept(claim, source, transfer)

    def accept_file(
        self, path: Path | str, source: str, *,
        sop_class_uid: str | None = None, sop_instance_uid: str | None = None, transfer: Transfer | None = None,
        take: bool = False,
    ) -> Receipt:
        """Take in one instance from a DICOM file on disk, never holding it whole in memory.

        For a dataset received into a file (pynetdicom's ``STORE_RECV_CHUNKED_DATASET``)
        or an HTTP body spooled to disk. The file is read and copied in pieces, and left
        where it is; with ``take`` (a file nobody else needs) it is moved into the spool
        instead, when its file meta already names the instance's SOP Class and Instance
        UIDs and its transfer syntax, and it lies on the spool's file system (no copy: it
        is fsync'd and renamed). ``sop_class_uid`` and ``sop_instance_uid`` are the UIDs
        the sender claims; ``None``: those of the file meta.
        """
        with ExitStack() as files:

            def claim() -> Claim:
                fp = files.enter_context(open(path, "rb"))
                size = fp.seek(0, io.SEEK_END)
                meta, offset = read_file_meta(fp, size)
                meta_class, meta_instance = claimed_uids(meta)
                syntax = str(meta.TransferSyntaxUID)
                return Claim(Encoded(fp, offset, size - offset, syntax),
                              meta_class if sop_class_uid is None else sop_class_uid,
                              meta_instance if sop_instance_uid is None else sop_instance_uid,
                              Movable(Path(path), meta_class, meta_instance, syntax) if take else None)

            return self._accept(claim, source, transfer)

    def open_transfer(self) -> Transfer:
        """A transfer (an association, a STOW-RS request) to pass to the ``accept`` methods."""
        return self._transfers.open()

    def close_transfer(self, transfer: Transfer, *, released: bool) -> list[str]:
        """End a transfer: normally (``released``: an A-RELEASE, a finished request) or not.

        The series it released (see :mod:`.transfers`) go to ``wakeups.released`` and are returned.
        """
        series = self._transfers.close(transfer, released=released)
        if series:
            self._wakeups.released(series)
        return series

    # the one path every entry point takes

    def _accept(self, read: Callable[[], Claim], source: str, transfer: Transfer | None = None) -> Receipt:
        """Check, store and record what ``read`` returns (it may refuse already)."""
        claim: Claim | None = None
        header: InstanceHeader | None = None
        try:
            try:
                claim = read()
                header = self._read_header(claim)
                check_claim(claim, header)
                outcome, filed = self._store_instance(header, claim, source)
            except InstanceRefused:
                raise
            except Exception as exc:  # a bug must not reach the transport: the sender may retry later
                raise InstanceRefused("out_of_resources", Status.OUT_OF_RESOURCES, type(exc).__name__) from exc
        except InstanceRefused as refusal:
            self._metrics.instances_received.labels("error").inc()
            self._metrics.instances_rejected.labels(refusal.reason).inc()
            uid = claim.sop_instance_uid if claim is not None and claim.sop_instance_uid is not None \
                else header.sop_instance_uid if header is not None else None
            log(_logger, logging.WARNING, "instance refused", reason=refusal.reason,
                status=f"0x{refusal.status:04X}", error=refusal.error or None,
                sop_instance_uid=uid if uid is None or is_valid_uid(uid) else "<invalid>", source=source)
            return Receipt(Outcome.REFUSED, refusal.status, refusal.reason, header)
        self._metrics.instances_received.labels(outcome.value).inc()
        if claim is not None:  # always, once accepted
            self._metrics.received_bytes.inc(claim.dataset.size)
        if transfer is not None:
            self._transfers.carried(transfer, header.series_instance_uid)
        if filed:
            self._wakeups.produced(SeriesState.RECEIVED)
        elif outcome in (Outcome.STORED, Outcome.REPLACED):
            self._wakeups.produced(InstanceState.RECEIVED)
        return Receipt(outcome, Status.SUCCESS.value, None, header)

    def _read_header(self, claim: Claim) -> InstanceHeader:
        """The header of a claimed dataset, or :class:`InstanceRefused` (size first, before reading)."""
        for claimed in (claim.sop_class_uid, claim.sop_instance_uid):
            if claimed is not None and not is_valid_uid(claimed):
                raise InstanceRefused("invalid_uid", Status.CANNOT_UNDERSTAND)
        if claim.dataset.transfer_syntax not in self.transfer_syntaxes:
            raise InstanceRefused("unsupported_syntax", Status.CANNOT_UNDERSTAND)
        if claim.dataset.size > self.max_dataset_bytes:
            raise InstanceRefused("too_large", Status.OUT_OF_RESOURCES)
        return read_header(claim.dataset, self.max_dataset_bytes)

    def _store_instance(self, header: InstanceHeader, claim: Claim, source: str) -> tuple[Outcome, bool]:
        """Write and record one instance (once per UID); also says whether it was filed at once."""
        sop_uid = header.sop_instance_uid
        dataset = claim.dataset
        path = self._spool.instance_path(sop_uid)
        movable = claim.movable.path if claim.movable is not None and claim.movable.holds(header, dataset) else None
        with self._uid_locks.hold(sop_uid):
            held = self._held_state(sop_uid)
            action = None if held is None else self._duplicate_action(held, path, dataset)
            if action is not None:
                self._metrics.instances_duplicate.labels(action.value).inc()
                if action is DuplicateAction.KEPT_FIRST:
                    log(_logger, logging.WARNING, "instance received again with different content: first kept",
                        sop_instance_uid=sop_uid, series_instance_uid=header.series_instance_uid, source=source)
                if action in (DuplicateAction.IDENTICAL, DuplicateAction.KEPT_FIRST):
                    return Outcome.DUPLICATE, False
            if not self._disk.reserve(dataset.offset + dataset.size if movable else META_BYTES + dataset.size):
                raise InstanceRefused("disk_full", Status.OUT_OF_RESOURCES, "below the free-space floor")
            if movable is None or not _move(movable, path):
                write_instance(path, header, dataset)
            try:
                state = self._record(header, str(path), source, action)
            except Exception as exc:  # a broken store: nothing of a new instance may stay
                if action is None:
                    path.unlink(missing_ok=True)
                raise InstanceRefused("out_of_resources", Status.OUT_OF_RESOURCES, type(exc).__name__) from exc
        if action is not None:
            log(_logger, logging.WARNING, "instance replaced by a new copy", sop_instance_uid=sop_uid,
                series_instance_uid=header.series_instance_uid, source=source, action=action.value)
            return (Outcome.REPLACED if action is DuplicateAction.REPLACED else Outcome.STORED), False
        log(_logger, logging.DEBUG, "instance stored", sop_instance_uid=sop_uid,
            series_instance_uid=header.series_instance_uid, source=source)
        if state is None:
            return Outcome.DUPLICATE, False
        return Outcome.STORED, state is InstanceState.INDEXED

    def _record(self, header: InstanceHeader, path: str, source: str,
                action: DuplicateAction | None) -> InstanceState | None:
        """Record a written instance in the store: filed at once when its routing attributes were
        read, else left to the indexer. Returns its state; ``None`` when another writer recorded it."""
        sop_uid = header.sop_instance_uid
        uids = {"series_uid": header.series_instance_uid, "study_uid": header.study_instance_uid}
        if action is not None:
            self._store.replace_instance(sop_uid, header.sop_class_uid, path, source, **uids)
            return InstanceState.RECEIVED
        if header.routing is not None:
            return self._store.add_filed_instance(sop_uid, header.sop_class_uid, path, source,
                                                  attrs=header.routing, **uids)
        added = self._store.add_instance(sop_uid, header.sop_class_uid, path, source, **uids)
        return InstanceState.RECEIVED if added else None

    def _held_state(self, sop_uid: str) -> InstanceState | None:
        try:
            return self._store.instance_state(sop_uid)
        except Exception as exc:
            raise InstanceRefused("out_of_resources", Status.OUT_OF_RESOURCES, type(exc).__name__) from exc

    def _duplicate_action(self, held: InstanceState, path: Path, dataset: Encoded) -> DuplicateAction:
        """What to do with a new copy of a held instance (``path``: the held copy's file)."""
        if same_content(path, dataset):
            return DuplicateAction.IDENTICAL
        if held is InstanceState.QUARANTINED:
            return DuplicateAction.REPLACED_QUARANTINED
        return DuplicateAction.KEPT_FIRST if self.on_duplicate is OnDuplicate.KEEP_FIRST else DuplicateAction.REPLACED


def _move(source: Path, path: Path) -> bool:
    """Move a received file into the spool; False (nothing moved) when it cannot be (another
    file system): the caller copies it then."""
    try:
        move_durable(source, path)
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            raise InstanceRefused("disk_full", Status.OUT_OF_RESOURCES, errno.errorcode[exc.errno]) from exc
        return False
    return True


def _unless_oserror(read: Callable[[], float]) -> Callable[[], float]:
    """``read`` as a gauge's function: NaN when the file system cannot be asked (a scrape never fails)."""
    def value() -> float:
        try:
            return float(read())
        except OSError:
            return float("nan")
    return value
