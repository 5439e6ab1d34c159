"""Reading and checking an instance's header from its encoded bytes.

The header is read (never the pixel data) from the dataset as it was encoded, in
memory or in a file, without holding more of it than the header: elements larger
than 64 KiB are skipped, not read (none of the four UIDs is that long), and a
Deflated dataset is inflated, bounded, into a temporary file that stays in memory
only while it is small. An element that runs past the end of the data makes the
header unreadable even though pydicom would keep the shorter value.
"""
from __future__ import annotations

import io
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, BinaryIO, Iterator, Mapping

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from ..pipeline.index import routing_attributes
from ..dicom.uids import is_valid_uid

__all__ = [
    "Encoded",
    "InstanceHeader",
    "InstanceRefused",
    "Status",
    "read_file_meta",
    "read_header",
]

_PREAMBLE_BYTES = 128
_MAGIC = b"DICM"
_ELEMENT_HEADER_BYTES = 8
_DEFER_BYTES = 1 << 16
_CHUNK = 1 << 20
_INFLATE_IN_MEMORY = 16 << 20
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = 0xE000FFFE  # (FFFE,E000) read as a little-endian group, element pair
_SEQUENCE_DELIMITER = 0xE0DDFFFE  # (FFFE,E0DD)


class Status(IntEnum):
    """The DIMSE statuses a C-STORE is answered with (PS3.4 Annex B.2.3)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class InstanceHeader:
    """The UIDs an instance is filed by, read from its own header, and what routes match on."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    routing: Mapping[str, Any] | None = field(default=None, compare=False)
    """Its routing attributes (:func:`node.pipeline.index.routing_attributes`); ``None`` when they
    could not be read here (the indexer reads them again, and quarantines what fails)."""


class InstanceRefused(Exception):
    """An instance that is answered with a failure status.

    ``reason`` is one of the fixed labels of ``ainode_instances_rejected_total``,
    ``status`` the DIMSE status sent back and ``error`` a short technical detail (an
    exception's type name, never data of the instance).
    """

    def __init__(self, reason: str, status: int, error: str = "") -> None:
        super().__init__(f"{reason} (0x{status:04X})")
        self.reason = reason
        self.status = int(status)
        self.error = error


@dataclass(frozen=True)
class Encoded:
    """An encoded dataset: ``size`` bytes at ``offset`` of a buffer or a seekable binary file.

    Nothing is copied: the bytes are read where they are, in pieces of at most 1 MiB.
    """

    source: memoryview | BinaryIO
    offset: int
    size: int
    transfer_syntax: str

    @classmethod
    def of_bytes(cls, data: bytes | bytearray | memoryview, transfer_syntax: str, offset: int = 0) -> Encoded:
        """The dataset that starts at ``offset`` of ``data`` and runs to its end."""
        view = memoryview(data).cast("B")
        return cls(view, offset, max(0, len(view) - offset), str(transfer_syntax))

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The dataset's bytes, in order, in pieces of at most 1 MiB."""
        for start in range(self.offset, self.offset + self.size, _CHUNK):
            length = min(_CHUNK, self.offset + self.size - start)
            if isinstance(self.source, memoryview):
                yield self.source[start:start + length]
                continue
            self.source.seek(start)
            chunk = self.source.read(length)
            if len(chunk) < length:
                raise OSError(f"the file ended {length - len(chunk)} bytes early")
            yield chunk

    def reader(self) -> _WindowReader:
        """The dataset as a file for pydicom, noticing reads past its end."""
        return _WindowReader(self.source, self.offset, self.size)


class _WindowReader:
    """A window of a buffer or a file, read as a file; notices reads cut short by its end.

    pydicom silently keeps the shorter value of an element longer than what is left (a
    truncated UID still looks like a UID), and skips a deferred value by seeking past
    it. A read that finds nothing at all is the clean end of the dataset only for the
    next element's 8-byte tag and length; a seek beyond the end never is.
    """

    def __init__(self, source: memoryview | BinaryIO, offset: int, size: int) -> None:
        self._source = source
        self._offset = offset
        self._size = size
        self._position = 0
        self.truncated = False

    def read(self, size: int | None = -1, /) -> bytes:
        left = max(0, self._size - self._position)
        wanted = left if size is None or size < 0 else min(size, left)
        start = self._offset + self._position
        if isinstance(self._source, memoryview):
            data = bytes(self._source[start:start + wanted])
        else:
            self._source.seek(start)
            data = self._source.read(wanted)
        self._position += len(data)
        if size is not None and 0 < size and len(data) < size and (data or size != _ELEMENT_HEADER_BYTES):
            self.truncated = True
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        if self._position > self._size:
            self.truncated = True
        return self._position

    def tell(self) -> int:
        return self._position

    @property
    def size(self) -> int:
        return self._size


def read_file_meta(part10: memoryview | BinaryIO, size: int) -> tuple[FileMetaDataset, int]:
    """The File Meta Information of a DICOM file of ``size`` bytes, and where its dataset starts.

    Raises
    ------
    InstanceRefused
        ``unreadable`` without the ``DICM`` prefix, when the meta group does not parse or
        lacks a valid Transfer Syntax UID.
    """
    reader = _WindowReader(part10, 0, size)
    reader.seek(_PREAMBLE_BYTES)
    if reader.read(len(_MAGIC)) != _MAGIC:
        raise InstanceRefused("unreadable", Status.CANNOT_UNDERSTAND, "no DICM prefix")
    try:
        meta = FileMetaDataset(read_dataset(
            reader, is_implicit_VR=False, is_little_endian=True, defer_size=_DEFER_BYTES,
            stop_when=lambda tag, vr, length: tag.group != 0x0002,
        ))
        syntax = str(meta.get("TransferSyntaxUID", ""))
    except Exception as exc:  # pydicom raises many kinds on a broken meta group
        raise InstanceRefused("unreadable", Status.CANNOT_UNDERSTAND, type(exc).__name__) from exc
    if reader.truncated or not is_valid_uid(syntax):
        raise InstanceRefused("unreadable", Status.CANNOT_UNDERSTAND, "no file meta information")
    return meta, reader.tell()


def read_header(encoded: Encoded, max_dataset_bytes: int) -> InstanceHeader:
    """Parse the header (not the pixel data) of an encoded dataset.

    Parameters
    ----------
    encoded
        The dataset as received, and its transfer syntax.
    max_dataset_bytes
        For Deflated Explicit VR Little Endian, the most bytes the dataset may inflate
        to; inflation stops as soon as it is exceeded.

    Raises
    ------
    InstanceRefused
        ``too_large`` past the inflation bound, ``unreadable`` when the header does not
        parse, ends inside an element or its deflate stream is broken, ``invalid_uid``
        when one of the four UIDs is missing or not valid.
    """
    if encoded.transfer_syntax == DeflatedExplicitVRLittleEndian:
        with _inflated(encoded, max_dataset_bytes) as inflated:
            size = inflated.seek(0, io.SEEK_END)
            header = _parse_uids(_WindowReader(inflated, 0, size), implicit=False, little_endian=True)
    else:
        header = _parse_uids(encoded.reader(), implicit=encoded.transfer_syntax == ImplicitVRLittleEndian,
                             little_endian=encoded.transfer_syntax != ExplicitVRBigEndian)
    for uid in (header.sop_instance_uid, header.sop_class_uid, header.study_instance_uid,
                header.series_instance_uid):
        if not is_valid_uid(uid):
            raise InstanceRefused("invalid_uid", Status.CANNOT_UNDERSTAND)
    return header


def _inflated(encoded: Encoded, limit: int) -> tempfile.SpooledTemporaryFile[bytes]:
    """The inflated dataset (Explicit VR Little Endian) in a temporary file, bounded by ``limit``."""
    out: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(max_size=_INFLATE_IN_MEMORY)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        for chunk in encoded.chunks():
            pending: bytes | memoryview = chunk
            while pending and not inflater.eof:
                inflated = inflater.decompress(pending, _CHUNK)
                pending = inflater.unconsumed_tail
                total += len(inflated)
                if total > limit:
                    raise InstanceRefused("too_large", Status.OUT_OF_RESOURCES)
                out.write(inflated)
            if inflater.eof:
                break
    except zlib.error as exc:
        out.close()
        raise InstanceRefused("unreadable", Status.CANNOT_UNDERSTAND, type(exc).__name__) from exc
    except BaseException:
        out.close()
        raise
    if not inflater.eof:
        out.close()
        raise InstanceRefused("unreadable", Status.CANNOT_UNDERSTAND, "truncated deflate stream")
    return out


def _parse_uids(reader: _WindowReader, *, implicit: bool, little_endian: bool) -> InstanceHeader:
    """Read the header and touch the four UIDs inside one ``try``: pydicom raises lazily."""
    try:
        ds: Dataset = read_dataset(reader, implicit, little_endian, defer_size=_DEFER_BYTES,
                                   stop_when=_at_pixel_data)
        uids = [ds.get(keyword) for keyword in
                ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")]
        values = ["" if uid is None else str(uid) for uid in uids]
    except Exception as exc:  # pydicom raises many kinds on a broken header
        raise InstanceRefused("unreadable", Status.CANNOT_UNDERSTAND, type(exc).__name__) from exc
    if reader.truncated or not _pixel_data_fits(reader, implicit=implicit, little_endian=little_endian):
        raise InstanceRefused("unreadable", Status.CANNOT_UNDERSTAND, "truncated dataset")
    try:
        routing: dict[str, Any] | None = routing_attributes(ds)
    except Exception:  # an odd value of one attribute: the indexer decides (and says why)
        routing = None
    return InstanceHeader(*values, routing=routing)


def _pixel_data_fits(reader: _WindowReader, *, implicit: bool, little_endian: bool) -> bool:
    """Whether the pixel data element the header stopped at (if any) ends within the data.

    Its value is never read; only its length is compared with what is left. Encapsulated
    pixel data (undefined length) is followed item by item, reading only each item's
    8-byte header, up to its sequence delimiter: a compressed image cut off midway is
    refused here, not later when a model pack cannot decode it.
    """
    start = reader.tell()
    head = reader.read(_ELEMENT_HEADER_BYTES)
    if len(head) < _ELEMENT_HEADER_BYTES:
        return True  # no pixel data: the dataset ended cleanly
    order = "<" if little_endian else ">"
    if implicit:
        (length,) = struct.unpack(order + "L", head[4:])
        value_at = start + _ELEMENT_HEADER_BYTES
    elif head[4:6] in _LONG_LENGTH_VRS:
        extra = reader.read(4)
        if len(extra) < 4:
            return False
        (length,) = struct.unpack(order + "L", extra)
        value_at = start + _ELEMENT_HEADER_BYTES + 4
    else:
        (length,) = struct.unpack(order + "H", head[6:])
        value_at = start + _ELEMENT_HEADER_BYTES
    if length == _UNDEFINED_LENGTH:
        return _fragments_fit(reader, value_at)
    return value_at + length <= reader.size


def _fragments_fit(reader: _WindowReader, at: int) -> bool:
    """Whether the items of encapsulated pixel data starting at ``at`` all end within the data,
    and the sequence delimiter follows them (PS3.5 A.4; always little endian)."""
    while at + _ELEMENT_HEADER_BYTES <= reader.size:
        reader.seek(at)
        tag, length = struct.unpack("<LL", reader.read(_ELEMENT_HEADER_BYTES))
        if tag == _SEQUENCE_DELIMITER:
            return True
        if tag != _ITEM or length == _UNDEFINED_LENGTH:
            return False
        at += _ELEMENT_HEADER_BYTES + length
    return False


def _at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) in _PIXEL_DATA_TAGS
