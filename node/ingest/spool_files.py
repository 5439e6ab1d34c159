"""The instance files ingest writes into the spool: the node's own preamble and File Meta
Information before the dataset as received, written durably; and the check whether a held
file already holds a dataset."""
from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Iterator

from pynetdicom.dsutils import create_file_meta, encode_file_meta

from ..store.spool import write_durable
from .header import Encoded, InstanceHeader, InstanceRefused, Status, read_file_meta

__all__ = ["DISK_FULL_ERRNOS", "META_BYTES", "same_content", "write_instance"]

_PREAMBLE = b"\x00" * 128 + b"DICM"

META_BYTES = 512
"""At least the preamble and File Meta Information the node writes (to reserve disk space)."""

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
"""The ``errno`` values of a write that failed for lack of space (refused as ``disk_full``)."""


def write_instance(path: Path, header: InstanceHeader, dataset: Encoded) -> None:
    """Write ``dataset`` durably to ``path``, after the node's own preamble and File Meta Information.

    A failed write raises :class:`InstanceRefused` (``disk_full`` or ``out_of_resources``).
    """
    try:
        write_durable(path, _prefixed(_part10_prefix(header, dataset.transfer_syntax), dataset))  # type: ignore[arg-type]
    except OSError as exc:
        reason = "disk_full" if exc.errno in DISK_FULL_ERRNOS else "out_of_resources"
        raise InstanceRefused(reason, Status.OUT_OF_RESOURCES, errno.errorcode.get(exc.errno or 0, "OSError")) from exc


def same_content(path: Path, dataset: Encoded) -> bool:
    """Whether the stored file at ``path`` holds ``dataset``: same transfer syntax, same bytes.

    Read in pieces, never whole; a missing or unreadable file is not the same.
    """
    try:
        with open(path, "rb") as fp:
            size = fp.seek(0, io.SEEK_END)
            meta, offset = read_file_meta(fp, size)
            if str(meta.TransferSyntaxUID) != dataset.transfer_syntax or size - offset != dataset.size:
                return False
            fp.seek(offset)
            return all(fp.read(len(chunk)) == chunk for chunk in dataset.chunks())
    except (OSError, InstanceRefused):
        return False


def _part10_prefix(header: InstanceHeader, transfer_syntax: str) -> bytes:
    """The preamble and File Meta Information the node writes before a dataset."""
    return _PREAMBLE + encode_file_meta(create_file_meta(
        sop_class_uid=header.sop_class_uid, sop_instance_uid=header.sop_instance_uid,  # type: ignore[arg-type]
        transfer_syntax=transfer_syntax,  # type: ignore[arg-type]
    ))


def _prefixed(prefix: bytes, dataset: Encoded) -> Iterator[bytes | memoryview]:
    yield prefix
    yield from dataset.chunks()
