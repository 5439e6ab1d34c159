"""A C-STORE SCU: sends DICOM files to a node or a PACS (``ainode send``).

Each file is sent in its own transfer syntax when the receiver accepts it; for a file
whose pixel data can be decoded here, uncompressed syntaxes are proposed too, and the
file is decompressed when the receiver accepts only those. Nothing one file does stops
the others: a file that is not DICOM, cannot be read, finds no accepted presentation
context or is refused is reported with its reason, and the rest are sent.

Over DICOM TLS (``tls``, a context from :func:`node.dicom.tls.client_context`), the receiver's
certificate and host name are verified, and a client certificate is presented when the
context holds one.
"""
from __future__ import annotations

import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from tqdm import tqdm

from ..ingest.connections import REQUESTOR_HANDLERS
from ..ingest.syntaxes import decodable_transfer_syntaxes, syntax_name

__all__ = ["SendReport", "dicom_files", "send_paths"]

_OK_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})  # success and the storage warnings
_MAX_CONTEXTS = 128  # presentation contexts one association may propose (odd IDs 1..255)
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_PREAMBLE_AND_PREFIX = 132


@dataclass(frozen=True)
class SendReport:
    """What ``ainode send`` did: how many files were stored, which failed and why."""

    sent: int
    failed: list[tuple[str, str]]
    """``(path, reason)`` of each file not stored, in the order given."""


@dataclass(frozen=True)
class _Outgoing:
    """A file to send: its SOP class, its transfer syntax, and whether it can be sent decompressed."""

    path: Path
    sop_class_uid: UID
    transfer_syntax: UID
    decodable: bool


def dicom_files(paths: Iterable[Path]) -> list[Path]:
    """The files to send: each path named (whatever it holds), and under each folder every
    file with the ``DICM`` prefix, sorted."""
    found: list[Path] = []
    for root in paths:
        if not root.is_dir():
            found.append(root)  # a file named on the command line is tried, and fails with its reason
            continue
        found.extend(path for path in sorted(root.rglob("*")) if path.is_file() and _has_dicm_prefix(path))
    return found


def send_paths(
    files: Sequence[Path], host: str, port: int, called_ae: str, calling_ae: str = "AINODE-SCU", *,
    progress: bool | None = None, timeout: float = 30.0, tls: ssl.SSLContext | None = None,
) -> SendReport:
    """Send ``files``: one association per at most 128 presentation contexts.

    Parameters
    ----------
    files
        DICOM files (Part 10); anything else is reported as failed.
    host, port, called_ae, calling_ae
        The receiver and the AE titles.
    progress
        Show a progress bar on stderr: ``None`` when stderr is a terminal.
    timeout
        ACSE, DIMSE and network timeouts in seconds.
    tls
        Send over DICOM TLS with this client context (``None``: plain TCP).
    """
    failed: list[tuple[str, str]] = []
    outgoing: list[_Outgoing] = []
    decodable = set(decodable_transfer_syntaxes())
    for path in files:
        item = _describe(path, decodable)
        if isinstance(item, str):
            failed.append((str(path), item))
        else:
            outgoing.append(item)
    sent = 0
    bar = tqdm(total=len(files), unit="file", disable=None if progress is None else not progress,
               file=sys.stderr, initial=len(failed))
    try:
        for batch in _batches(outgoing):
            batch_sent, batch_failed = _send_batch(batch, host, port, called_ae, calling_ae, timeout, bar.update, tls)
            sent += batch_sent
            failed.extend(batch_failed)
    finally:
        bar.close()
    order = {str(p): i for i, p in enumerate(files)}
    failed.sort(key=lambda f: order.get(f[0], len(order)))
    return SendReport(sent, failed)


def _has_dicm_prefix(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(_PREAMBLE_AND_PREFIX)
    except OSError:
        return True  # unreadable: tried, so that it is reported
    return len(head) == _PREAMBLE_AND_PREFIX and head[128:] == b"DICM"


def _describe(path: Path, decodable: set[UID]) -> _Outgoing | str:
    """What is needed to send ``path``, or why it cannot be sent (never raises)."""
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
        sop_class = meta.get("MediaStorageSOPClassUID")
        syntax = meta.get("TransferSyntaxUID")
        if not sop_class or not syntax:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            sop_class = sop_class or ds.get("SOPClassUID")
            syntax = syntax or (ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "a directory"
    except PermissionError:
        return "cannot be read: permission denied"
    except InvalidDicomError:
        return "not a DICOM file"
    except Exception as exc:  # pydicom raises many kinds on a broken file
        return f"unreadable: {type(exc).__name__}: {str(exc)[:200]}"
    if not sop_class or not syntax:
        return "unreadable: no SOP Class UID or Transfer Syntax UID in its file meta"
    syntax = UID(str(syntax))
    # decodable: compressed pixel data that can be sent decompressed (big endian is not converted)
    return _Outgoing(path, UID(str(sop_class)), syntax, syntax.is_compressed and syntax in decodable)


def _contexts(files: Sequence[_Outgoing]) -> list[tuple[UID, tuple[UID, ...]]]:
    """The presentation contexts for ``files``: each file's own syntax alone (a receiver picks
    the syntax in its own order, so a context offering several may not get the file's), and
    the little-endian uncompressed ones for a class with little-endian or decodable files."""
    contexts: dict[tuple[UID, tuple[UID, ...]], None] = {}
    for f in files:
        if f.transfer_syntax not in _UNCOMPRESSED:
            contexts[(f.sop_class_uid, (f.transfer_syntax,))] = None
        if f.transfer_syntax in _UNCOMPRESSED or f.decodable:
            contexts[(f.sop_class_uid, _UNCOMPRESSED)] = None
    return list(contexts)


def _batches(files: Sequence[_Outgoing]) -> list[list[_Outgoing]]:
    """``files`` in groups whose presentation contexts fit in one association (whole SOP classes)."""
    by_class: dict[UID, list[_Outgoing]] = {}
    for f in files:
        by_class.setdefault(f.sop_class_uid, []).append(f)
    batches: list[list[_Outgoing]] = []
    current: list[_Outgoing] = []
    for group in by_class.values():
        if current and len(_contexts(current + group)) > _MAX_CONTEXTS:
            batches.append(current)
            current = []
        current = current + group
    if current:
        batches.append(current)
    return batches


def _send_batch(
    files: Sequence[_Outgoing], host: str, port: int, called_ae: str, calling_ae: str, timeout: float,
    advance: Callable[[int], object], tls: ssl.SSLContext | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Send ``files`` over one association; returns how many were stored and the failures."""
    ae = AE(ae_title=calling_ae)
    ae.maximum_pdu_size = 0
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    contexts = _contexts(files)
    if len(contexts) > _MAX_CONTEXTS:  # one SOP class alone in more syntaxes than fit
        advance(len(files))
        return 0, [(str(f.path), "too many transfer syntaxes for one SOP class") for f in files]
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, list(syntaxes))
    try:
        assoc = ae.associate(host, port, ae_title=called_ae, tls_args=None if tls is None else (tls, host),
                             evt_handlers=REQUESTOR_HANDLERS)
    except Exception as exc:
        advance(len(files))
        return 0, [(str(f.path), f"association failed: {type(exc).__name__}") for f in files]
    if not assoc.is_established:
        reason = "association rejected" if assoc.is_rejected else "association not established"
        advance(len(files))
        return 0, [(str(f.path), f"{reason} by {host}:{port}") for f in files]
    sent, failed = 0, []
    try:
        for f in files:
            reason = _send_one(assoc, f)
            advance(1)
            if reason is None:
                sent += 1
            else:
                failed.append((str(f.path), reason))
    finally:
        if assoc.is_established:
            assoc.release()
    return sent, failed


def _send_one(assoc: Association, f: _Outgoing) -> str | None:
    """Send one file; ``None`` when stored, else the reason (never raises)."""
    if not assoc.is_established:
        return "association lost"
    accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    as_is = (f.sop_class_uid, f.transfer_syntax) in accepted or (  # pynetdicom converts implicit <-> explicit
        f.transfer_syntax in _UNCOMPRESSED and any((f.sop_class_uid, ts) in accepted for ts in _UNCOMPRESSED))
    uncompressed = any((f.sop_class_uid, ts) in accepted for ts in _UNCOMPRESSED)
    if not as_is and not (f.decodable and uncompressed):
        return (f"the receiver accepted no presentation context for {syntax_name(f.sop_class_uid)}"
                f" in {syntax_name(f.transfer_syntax)}")
    try:
        if as_is:
            status = assoc.send_c_store(f.path)
        else:
            ds = pydicom.dcmread(f.path)
            ds.decompress()
            status = assoc.send_c_store(ds)
    except Exception as exc:  # a file pydicom cannot decode or encode, a lost connection
        return f"send failed: {type(exc).__name__}: {str(exc)[:200]}"
    code = getattr(status, "Status", None)
    if code is None:
        return "no response"
    return None if int(code) in _OK_STATUSES else f"status 0x{int(code):04X}"
