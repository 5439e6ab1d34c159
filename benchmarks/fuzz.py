"""Fuzz inputs for the node: mutated DICOM files, broken series and garbage PDUs.

Everything here is seeded: the same seed gives the same cases, byte for byte (except the
UIDs of the bases, which are fresh per run so that a rerun is not deduplicated). The
sources are the project's own phantoms and real files nobody here wrote
(``pydicom-data``: :func:`pydicom.data.get_testdata_file`), so the cases carry quirks our
generators never make.

- :func:`dataset_cases` yields :class:`FuzzCase`: one instance each, as complete file
  bytes (a valid File Meta Information, then the possibly broken data set). The sender
  takes SOP Class, SOP Instance and Transfer Syntax from the case, never from the broken
  bytes, so every case reaches the node as a C-STORE.
- :func:`series_cases` yields :class:`SeriesCase`: whole series that are wrong as a
  series (one slice, no usable slice, mixed matrix sizes, duplicate positions, one
  broken slice among good ones), routed to the head CT model.
- :func:`garbage_pdus` yields :class:`PduCase`: raw bytes for a plain TCP socket,
  from random noise to a valid association followed by a broken P-DATA-TF.
"""
from __future__ import annotations

import copy
import random
import struct
import warnings
from dataclasses import dataclass
from io import BytesIO
from typing import Callable, Iterator, Sequence

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite, write_file_meta_info
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UID,
    generate_uid,
)

__all__ = [
    "DATASET_MUTATIONS",
    "REAL_FILES",
    "FuzzCase",
    "PduCase",
    "SeriesCase",
    "association_rq",
    "count_families",
    "base_datasets",
    "dataset_cases",
    "file_bytes",
    "garbage_pdus",
    "renew_uids",
    "series_cases",
]

REAL_FILES: tuple[str, ...] = (
    "693_UNCR.dcm",      # real head CT slice, 512x512, explicit VR little endian
    "693_UNCI.dcm",      # the same, another encoding history
    "CT_small.dcm",      # CT 128x128
    "MR_small.dcm",      # MR 64x64
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_truncated.dcm",  # already truncated pixel data
    "emri_small.dcm",    # multi-frame MR (10 frames)
    "emri_small_big_endian.dcm",
    "eCT_Supplemental.dcm",  # enhanced CT, 2 frames of 512x512
    "rtdose.dcm",
    "badVR.dcm",         # an IS value of "1A"
    "test-SR.dcm",
    "reportsi.dcm",
    "SC_rgb.dcm",
    "SC_rgb_expb.dcm",
    "liver.dcm",         # a real SEG
    "ExplVR_BigEnd.dcm",
    "image_dfl.dcm",     # deflated explicit VR little endian
    "waveform_ecg.dcm",
    "RG1_UNCR.dcm",      # real CR chest, 1955x1841, MONOCHROME1
)
"""pydicom-data / pydicom test files used as bases (those in a syntax the node accepts)."""

_ACCEPTED_SYNTAXES = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5",
}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ALL_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD",
            b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
            b"UL", b"UN", b"UR", b"US", b"UT", b"UV", b"\x00\x00", b"ZZ", b"\xff\xfe"]


@dataclass(frozen=True)
class FuzzCase:
    """One instance to C-STORE: ``data`` is a complete DICOM file (meta + data set)."""

    name: str
    family: str
    data: bytes
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    source: str


@dataclass(frozen=True)
class SeriesCase:
    """A series that is wrong as a series; ``cases`` are its instances in sending order."""

    name: str
    series_uid: str
    study_uid: str
    cases: tuple[FuzzCase, ...]


@dataclass(frozen=True)
class PduCase:
    """Bytes for a raw socket. ``associate`` first: send a valid A-ASSOCIATE-RQ and read the reply."""

    name: str
    family: str
    data: bytes
    associate: bool = False


@dataclass
class _Base:
    source: str
    dataset: Dataset
    syntax: str
    template: "_Base | None" = None   # the unchanged base this one was derived from
    uids: dict[int, str] | None = None  # top-level UI elements that differ from the template
    _body: bytes | None = None

    def encoded(self) -> bytes:
        """The data set encoded; from the template's cached bytes when only UIDs differ
        (byte-level mutations do not need pydicom to write the data set again)."""
        if self._body is None:
            if self.template is not None and self.uids is not None and not _syntax_flags(self.syntax)[2]:
                body = self.template.encoded()
                for tag, uid in self.uids.items():
                    value = uid.encode("ascii")
                    body = _with_raw_value(body, self.syntax, tag, value + b"\x00" * (len(value) % 2))
                self._body = body
            else:
                self._body = _encode_body(self.dataset, self.syntax)
        return self._body


# ----------------------------------------------------------------------------- bases


def renew_uids(datasets: Sequence[Dataset], *, study_uid: str | None = None,
               series_uid: str | None = None) -> list[Dataset]:
    """Deep copies of ``datasets`` with fresh SOP Instance UIDs and one fresh study / series /
    frame of reference (or the ones given), the file meta kept consistent."""
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    out = []
    for ds in datasets:
        new = copy.deepcopy(ds)
        new.SOPInstanceUID = generate_uid()
        new.StudyInstanceUID = study_uid
        new.SeriesInstanceUID = series_uid
        if "FrameOfReferenceUID" in new:
            new.FrameOfReferenceUID = frame_uid
        if getattr(new, "file_meta", None) is not None:
            new.file_meta.MediaStorageSOPInstanceUID = new.SOPInstanceUID
            syntax = new.file_meta.get("TransferSyntaxUID")
            if syntax is not None and not UID(syntax).is_compressed:  # in-memory flags agree with the meta
                new.set_original_encoding(UID(syntax).is_implicit_VR, UID(syntax).is_little_endian,
                                          new.get("SpecificCharacterSet", "ISO_IR 6"))
        out.append(new)
    return out


def base_datasets(seed: int = 0, *, real: bool = True) -> list[tuple[str, Dataset]]:
    """``(source name, dataset)`` pairs to mutate: small phantoms of every kind, and real files.

    Phantom bases are small (64-128 px) so that thousands of cases stay cheap; the head CT
    ones keep Modality CT / Body Part HEAD, so series made of them reach the head CT route.
    """
    from models.phantoms.brain_mr import generate_brain_mr
    from models.phantoms.cxr import generate_cxr
    from models.phantoms.head_ct import generate_head_ct

    bases: list[tuple[str, Dataset]] = []
    head = generate_head_ct(seed=seed, slices=3, hematoma=True, size=64)
    bases += [(f"phantom:head-ct-64[{i}]", ds) for i, ds in enumerate(head.datasets)]
    bases.append(("phantom:cxr-128", generate_cxr(seed=seed, size=128).dataset))
    brain = generate_brain_mr(seed=seed, slices=4, size=64)
    bases += [(f"phantom:brain-mr-64[{i}]", ds) for i, ds in enumerate(next(iter(brain.series.values()))[:2])]
    if real:
        bases += [(f"pydicom-data:{name}", ds) for name, ds in _real_datasets()]
    return bases


def _real_datasets() -> list[tuple[str, Dataset]]:
    import pydicom
    from pydicom.data import get_testdata_file

    found = []
    for name in REAL_FILES:
        path = get_testdata_file(name)  # one name at a time: never lists (and so never downloads) the rest
        if path is None:
            continue
        try:
            ds = pydicom.dcmread(path, force=True)
            ds.PixelData if "PixelData" in ds else None  # noqa: B018 - read it now
        except Exception:
            continue
        meta = getattr(ds, "file_meta", None)
        syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        if syntax not in _ACCEPTED_SYNTAXES or "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            continue
        found.append((name, ds))
    if not found:
        raise RuntimeError("pydicom-data is not installed: `pip install pydicom-data` (the dev extra)")
    return found


# ----------------------------------------------------------------------------- encoding


def _syntax_flags(syntax: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated)."""
    uid = UID(syntax)
    return uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated


def _encode_body(ds: Dataset, syntax: str) -> bytes:
    """The data set (no meta) encoded in ``syntax``; deflated syntaxes are written deflated."""
    implicit, little, deflated = _syntax_flags(syntax)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    work = copy.copy(ds)
    work.file_meta = meta
    buffer = BytesIO()
    dcmwrite(buffer, work, enforce_file_format=True)
    raw = buffer.getvalue()
    body = raw[_meta_end(raw):]
    if not deflated:
        for tag, value in getattr(ds, "_fuzz_raw_values", {}).items():
            body = _with_raw_value(body, syntax, tag, value)
    return body


def _meta_end(raw: bytes) -> int:
    """Offset of the first byte after the File Meta Information group of a Part 10 file."""
    pos = 132
    while pos + 8 <= len(raw):
        group = struct.unpack_from("<H", raw, pos)[0]
        if group != 0x0002:
            return pos
        vr = raw[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", raw, pos + 8)[0]
            pos += 12 + length
        else:
            length = struct.unpack_from("<H", raw, pos + 6)[0]
            pos += 8 + length
    return pos


def file_bytes(sop_class_uid: str, sop_instance_uid: str, syntax: str, body: bytes) -> bytes:
    """A Part 10 file: preamble, a valid File Meta Information, then ``body`` as it is."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    meta.ImplementationVersionName = "AINODE_FUZZ"
    buffer = BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    if body[:2] == b"\x02\x00":  # would be read as more File Meta by the sender; keep it data set
        body = b"\x08\x00" + body[2:]
    return buffer.getvalue() + body


@dataclass
class _Element:
    offset: int
    header: int       # header length
    length_at: int    # offset of the length field
    length_size: int  # 2 or 4
    length: int
    tag: int
    vr_at: int | None


def _read_element(body: bytes, pos: int, implicit: bool, end: str) -> _Element | None:
    if pos + 8 > len(body):
        return None
    group, elem = struct.unpack_from(end + "HH", body, pos)
    tag = (group << 16) | elem
    if implicit or group == 0xFFFE:
        length = struct.unpack_from(end + "I", body, pos + 4)[0]
        return _Element(pos, 8, pos + 4, 4, length, tag, None)
    vr = body[pos + 4:pos + 6]
    if vr in _LONG_VRS:
        if pos + 12 > len(body):
            return None
        length = struct.unpack_from(end + "I", body, pos + 8)[0]
        return _Element(pos, 12, pos + 8, 4, length, tag, pos + 4)
    length = struct.unpack_from(end + "H", body, pos + 6)[0]
    return _Element(pos, 8, pos + 6, 2, length, tag, pos + 4)


def _skip_undefined(body: bytes, pos: int, implicit: bool, end: str, depth: int = 0) -> int:
    """Offset after the delimiter that closes the undefined-length value starting at ``pos``
    (items of a sequence or fragments of encapsulated pixel data); -1 when it never closes."""
    while depth < 16:
        item = _read_element(body, pos, True, end)
        if item is None:
            return -1
        pos += 8
        if item.tag == 0xFFFEE0DD:  # sequence delimitation
            return pos
        if item.tag != 0xFFFEE000:
            return -1
        if item.length != 0xFFFFFFFF:
            pos += item.length
            continue
        while True:  # an item of undefined length: elements up to the item delimitation
            element = _read_element(body, pos, implicit, end)
            if element is None:
                return -1
            if element.tag == 0xFFFEE00D:
                pos += 8
                break
            pos += element.header
            if element.length == 0xFFFFFFFF:
                pos = _skip_undefined(body, pos, implicit, end, depth + 1)
                if pos < 0:
                    return -1
            else:
                pos += element.length
    return -1


def _walk(body: bytes, syntax: str, limit: int = 400) -> list[_Element]:
    """Top-level elements of an uncompressed (not deflated) body, sequences stepped over."""
    implicit, little, deflated = _syntax_flags(syntax)
    if deflated:
        return []
    end = "<" if little else ">"
    out: list[_Element] = []
    pos = 0
    while len(out) < limit:
        element = _read_element(body, pos, implicit, end)
        if element is None:
            break
        out.append(element)
        pos += element.header
        if element.length == 0xFFFFFFFF:
            pos = _skip_undefined(body, pos, implicit, end)
            if pos < 0:
                break
            element.length = pos - element.offset - element.header  # the span, delimiters included
        else:
            pos += element.length
    return out


def _with_raw_value(body: bytes, syntax: str, tag: int, raw: bytes) -> bytes:
    """``body`` with the value of its top-level element ``tag`` replaced by ``raw`` as it is
    (used for values pydicom refuses to hold, such as a DS of "abc")."""
    little = _syntax_flags(syntax)[1]
    for element in _walk(body, syntax):
        if element.tag != tag:
            continue
        if element.length_size == 2 and len(raw) > 0xFFFF:
            raw = raw[:0xFFFE]
        header = bytearray(body[element.offset:element.offset + element.header])
        fmt = ("<" if little else ">") + ("H" if element.length_size == 2 else "I")
        struct.pack_into(fmt, header, element.length_at - element.offset, len(raw))
        return body[:element.offset] + bytes(header) + raw + body[element.offset + element.header + element.length:]
    return body


# ----------------------------------------------------------------------------- mutations

_Mutation = Callable[[_Base, random.Random], "tuple[str, bytes] | None"]
DATASET_MUTATIONS: dict[str, _Mutation] = {}


def _mutation(family: str) -> Callable[[_Mutation], _Mutation]:
    def register(fn: _Mutation) -> _Mutation:
        DATASET_MUTATIONS[family] = fn
        return fn
    return register


def _derived(ds: Dataset, **changes: object) -> Dataset:
    """A new data set sharing ``ds``'s untouched elements (no deep copy: bases can be
    megabytes), with ``changes`` applied as fresh elements (``None`` removes one). A value
    pydicom refuses for the element's VR is written as raw bytes with VR UN."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    new = Dataset(dict(ds._dict))  # noqa: SLF001 - a shallow copy of the element map
    raw_values: dict[int, bytes] = dict(getattr(ds, "_fuzz_raw_values", {}))
    for keyword, value in changes.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        if value is None:
            new._dict.pop(tag, None)  # noqa: SLF001
            continue
        vr = ds[tag].VR if tag in ds else dictionary_VR(tag)
        try:
            new[tag] = DataElement(tag, vr, value)
        except Exception:  # a value pydicom will not hold: a placeholder now, the raw bytes at encoding
            raw = value if isinstance(value, str) else "\\".join(map(str, value))  # type: ignore[arg-type]
            new[tag] = DataElement(tag, vr, "0" if vr in ("DS", "IS") else "")
            raw_values[tag] = raw.encode("utf-8", "surrogateescape")
    if raw_values:
        new._fuzz_raw_values = raw_values  # read by _encode_body
    return new


def _with(base: _Base, **changes: object) -> Dataset:
    return _derived(base.dataset, **changes)


@_mutation("intact")
def _intact(base: _Base, rng: random.Random) -> tuple[str, bytes]:
    return "as received", base.encoded()


@_mutation("truncated")
def _truncated(base: _Base, rng: random.Random) -> tuple[str, bytes]:
    body = base.encoded()
    cut = rng.choice([0, 1, 4, 7, 8, 11, 12, rng.randrange(max(1, len(body))), len(body) - 1,
                      len(body) // 2, len(body) - rng.randrange(1, 64)])
    cut = max(0, min(cut, len(body) - 1))
    return f"cut at {cut} of {len(body)}", body[:cut]


@_mutation("wrong-vr")
def _wrong_vr(base: _Base, rng: random.Random) -> tuple[str, bytes] | None:
    body = bytearray(base.encoded())
    elements = [e for e in _walk(bytes(body), base.syntax) if e.vr_at is not None]
    if not elements:
        return None
    changed = []
    for _ in range(rng.choice([1, 1, 1, 2, 5])):
        element = rng.choice(elements)
        vr = rng.choice(_ALL_VRS)
        body[element.vr_at:element.vr_at + 2] = vr
        changed.append(f"({element.tag >> 16:04X},{element.tag & 0xFFFF:04X})->{vr!r}")
    return "VR " + " ".join(changed), bytes(body)


@_mutation("absurd-length")
def _absurd_length(base: _Base, rng: random.Random) -> tuple[str, bytes] | None:
    body = bytearray(base.encoded())
    elements = _walk(bytes(body), base.syntax)
    if not elements:
        return None
    element = rng.choice(elements)
    little = _syntax_flags(base.syntax)[1]
    if element.length_size == 4:
        value = rng.choice([0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, 0x80000000, len(body) * 3 + 1,
                            element.length + 1, element.length + rng.randrange(2, 4096)])
        fmt = "<I" if little else ">I"
    else:
        value = rng.choice([0xFFFF, 0xFFFE, element.length + 1, element.length + rng.randrange(2, 512), 1])
        fmt = "<H" if little else ">H"
    struct.pack_into(fmt, body, element.length_at, value)
    return f"({element.tag >> 16:04X},{element.tag & 0xFFFF:04X}) length {element.length}->{value}", bytes(body)


@_mutation("pixel-size-mismatch")
def _pixel_mismatch(base: _Base, rng: random.Random) -> tuple[str, bytes] | None:
    if "PixelData" not in base.dataset:
        return None
    data = bytes(base.dataset.PixelData)
    frames: object = base.dataset.get("NumberOfFrames")
    how = rng.choice(["short", "long", "empty", "odd", "half", "frames"])
    if how == "short":
        data = data[: max(2, (rng.randrange(max(2, len(data))) // 2) * 2)]
    elif how == "long":
        data = data + bytes(rng.randrange(2, 4096) * 2)
    elif how == "empty":
        data = b""
    elif how == "odd":
        data = data[:-1] if len(data) > 1 else data + b"\x00"
    elif how == "half":
        data = data[: len(data) // 2]
    else:
        frames = rng.choice([0, 2, 7, 99999])
    ds = _derived(base.dataset, PixelData=data, NumberOfFrames=frames)
    return f"PixelData {how} ({len(data)} bytes, frames {frames})", _encode_body(ds, base.syntax)


@_mutation("missing-attributes")
def _missing(base: _Base, rng: random.Random) -> tuple[str, bytes]:
    choices = [("Rows",), ("Columns",), ("Rows", "Columns"), ("PixelData",), ("BitsAllocated",),
               ("PhotometricInterpretation",), ("SamplesPerPixel",), ("PixelRepresentation",),
               ("SeriesInstanceUID",), ("StudyInstanceUID",), ("SOPClassUID",), ("SOPInstanceUID",),
               ("ImagePositionPatient",), ("ImageOrientationPatient",), ("Modality",),
               ("ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber"),
               ("RescaleSlope", "RescaleIntercept"), ("PixelSpacing",)]
    dropped = rng.choice(choices)
    ds = _with(base, **{k: None for k in dropped})
    return "without " + ", ".join(dropped), _encode_body(ds, base.syntax)


@_mutation("absurd-values")
def _absurd_values(base: _Base, rng: random.Random) -> tuple[str, bytes]:
    choices: list[dict[str, object]] = [
        {"Rows": 0}, {"Columns": 0}, {"Rows": 65535, "Columns": 65535}, {"Rows": 1},
        {"BitsAllocated": rng.choice([0, 1, 7, 12, 32, 64])}, {"BitsStored": 40},
        {"HighBit": 31}, {"SamplesPerPixel": rng.choice([0, 3, 4])},
        {"PhotometricInterpretation": rng.choice(["RGB", "PALETTE COLOR", "YBR_FULL", "BOGUS"])},
        {"PixelRepresentation": 7}, {"NumberOfFrames": rng.choice(["0", "-1", "99999", "abc"])},
        {"ImagePositionPatient": rng.choice([["abc", "1", "2"], ["1", "2"], ["nan", "inf", "-inf"],
                                             ["1e308", "-1e308", "0"]])},
        {"ImageOrientationPatient": rng.choice([[0, 0, 0, 0, 0, 0], ["nan"] * 6, [1, 0, 0, 1, 0, 0], [1, 0]])},
        {"RescaleSlope": rng.choice(["0", "nan", "inf", "-1e300"])}, {"RescaleIntercept": "1e400"},
        {"PixelSpacing": rng.choice([["0", "0"], ["-1", "-1"], ["1e300", "1e300"]])},
        {"SliceThickness": rng.choice(["-5", "0", "nan"])},
        {"ImagesInAcquisition": rng.choice(["0", "-3", "999999", "x"])},
        {"SpecificCharacterSet": rng.choice(["ISO_IR 999", "\\\\\\", "ISO 2022 IR 87"])},
        {"SeriesInstanceUID": rng.choice(["not a uid", "1." * 150, "", "1.2.3\x00"])},
        {"StudyInstanceUID": rng.choice(["../../etc", "1.2.840.10008.1.2.1" + "9" * 60])},
        {"Modality": rng.choice(["CT\\MR", "", "C" * 64])},
        {"BodyPartExamined": rng.choice(["HEAD\\HEAD", "H" * 200, "\x00"])},
        {"SeriesDescription": rng.choice(["x" * 70000, "re:(", "\u202e\u0000"])},
        {"InstanceNumber": rng.choice(["-2147483649", "abc", "1e9"])},
        {"WindowCenter": "nan", "WindowWidth": "0"},
    ]
    changes = rng.choice(choices)
    ds = _derived(base.dataset, **changes)
    notes = [f"{keyword}={str(value)[:40]!r}" for keyword, value in changes.items()]
    try:
        body = _encode_body(ds, base.syntax)
    except Exception:
        body = _encode_body(base.dataset, base.syntax)
        notes.append("(not encodable; sent intact)")
    return " ".join(notes), body


@_mutation("bit-flips")
def _bit_flips(base: _Base, rng: random.Random) -> tuple[str, bytes]:
    body = bytearray(base.encoded())
    if not body:
        return "empty", b""
    head = min(len(body), rng.choice([256, 2048, len(body)]))
    flips = rng.choice([1, 2, 8, 64])
    for _ in range(flips):
        i = rng.randrange(head)
        body[i] ^= 1 << rng.randrange(8)
    return f"{flips} bit flips in the first {head} bytes", bytes(body)


@_mutation("garbage-body")
def _garbage(base: _Base, rng: random.Random) -> tuple[str, bytes]:
    how = rng.choice(["empty", "random", "zeros", "ff", "append"])
    if how == "empty":
        return "empty data set", b""
    n = rng.choice([1, 3, 8, 127, 4096, 65537])
    if how == "random":
        return f"{n} random bytes", rng.randbytes(n)
    if how == "zeros":
        return f"{n} zero bytes", bytes(n)
    if how == "ff":
        return f"{n} 0xFF bytes", b"\xff" * n
    return f"{n} random bytes appended", base.encoded() + rng.randbytes(n)


@_mutation("duplicate-element")
def _duplicate(base: _Base, rng: random.Random) -> tuple[str, bytes] | None:
    body = base.encoded()
    elements = [e for e in _walk(body, base.syntax) if e.length != 0xFFFFFFFF and e.length < 1 << 16]
    if len(elements) < 2:
        return None
    a = rng.choice(elements)
    raw = body[a.offset:a.offset + a.header + a.length]
    how = rng.choice(["repeat", "swap"])
    if how == "repeat":
        return f"({a.tag >> 16:04X},{a.tag & 0xFFFF:04X}) twice", body[:a.offset] + raw + body[a.offset:]
    b = rng.choice(elements)
    if b.offset == a.offset:
        return None
    first, second = sorted((a, b), key=lambda e: e.offset)
    r1 = body[first.offset:first.offset + first.header + first.length]
    r2 = body[second.offset:second.offset + second.header + second.length]
    swapped = (body[:first.offset] + r2 + body[first.offset + len(r1):second.offset] + r1
               + body[second.offset + len(r2):])
    return "two elements out of order", swapped


@_mutation("broken-sequence")
def _broken_sequence(base: _Base, rng: random.Random) -> tuple[str, bytes] | None:
    implicit, little, deflated = _syntax_flags(base.syntax)
    if deflated:
        return None
    end = "<" if little else ">"
    # (0008,1140) Referenced Image Sequence, undefined length, an item that never ends
    tag = struct.pack(end + "HH", 0x0008, 0x1140)
    undefined = struct.pack(end + "I", 0xFFFFFFFF)
    header = tag + (undefined if implicit else b"SQ\x00\x00" + undefined)
    item = struct.pack(end + "HHI", 0xFFFE, 0xE000, rng.choice([0xFFFFFFFF, 0x7FFFFFF0, 16]))
    body = base.encoded()
    elements = _walk(body, base.syntax)
    at = next((e.offset for e in elements if e.tag > 0x00081140), len(body))
    return "sequence without delimiters", body[:at] + header + item + rng.randbytes(rng.choice([0, 5, 64])) + body[at:]


@_mutation("syntax-mismatch")
def _syntax_mismatch(base: _Base, rng: random.Random) -> tuple[str, bytes]:
    other = rng.choice([s for s in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)
                        if s != base.syntax])
    try:
        return f"encoded {UID(other).name}, declared {UID(base.syntax).name}", _encode_body(base.dataset, other)
    except Exception:
        return "random bytes (no re-encoding)", rng.randbytes(512)


def _case_from(base: _Base, family: str, rng: random.Random, index: int,
               series_uid: str | None, study_uid: str | None) -> FuzzCase:
    sop_uid = generate_uid()
    uids = {"SOPInstanceUID": sop_uid}
    if series_uid:
        uids["SeriesInstanceUID"] = series_uid
    if study_uid:
        uids["StudyInstanceUID"] = study_uid
    from pydicom.datadict import tag_for_keyword

    work = _Base(base.source, _derived(base.dataset, **uids), base.syntax, template=base,
                 uids={int(tag_for_keyword(k)): v for k, v in uids.items()})  # type: ignore[arg-type]
    made = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = DATASET_MUTATIONS[family](work, rng)
    except Exception as exc:  # a mutation that pydicom cannot even write: send it as written so far
        made = (f"mutation failed ({type(exc).__name__}); random bytes", rng.randbytes(256))
    if made is None:
        family = "bit-flips"
        made = _bit_flips(work, rng)
    note, body = made
    sop_class = str(base.dataset.SOPClassUID)
    return FuzzCase(
        name=f"{index:05d} {family}: {note} [{base.source}]"[:300], family=family,
        data=file_bytes(sop_class, sop_uid, base.syntax, body),
        sop_class_uid=sop_class, sop_instance_uid=sop_uid, transfer_syntax=base.syntax, source=base.source,
    )


def dataset_cases(count: int, seed: int = 0, *, series_size: int = 25, real: bool = True,
                  bases: Sequence[tuple[str, Dataset]] | None = None) -> Iterator[FuzzCase]:
    """``count`` mutated instances, round-robin over mutation families, bases drawn at random.

    Consecutive cases share a series UID (``series_size`` per series and base kind), so the
    broken instances end up in series that complete, get routed and run, as a modality's
    broken series would; one case in ten keeps its own new series.
    """
    rng = random.Random(seed)
    pool = [_Base(name, ds, str(ds.file_meta.TransferSyntaxUID)) for name, ds in
            (bases if bases is not None else base_datasets(seed, real=real))]
    # Large bases (a 7 MB radiograph, a 1 MB enhanced CT) are drawn less often: same
    # coverage, a fraction of the bytes to write.
    weights = [min(1.0, 150_000 / max(1, len(getattr(b.dataset, "PixelData", b"") or b""))) for b in pool]
    families = sorted(DATASET_MUTATIONS)
    series: dict[str, tuple[str, str, int]] = {}
    for index in range(count):
        base = rng.choices(pool, weights)[0]
        family = families[index % len(families)]
        kind = base.source.split("[")[0]
        series_uid, study_uid, used = series.get(kind, ("", "", series_size))
        if used >= series_size:
            series_uid, study_uid, used = generate_uid(), generate_uid(), 0
        if rng.random() < 0.1:
            yield _case_from(base, family, rng, index, generate_uid(), generate_uid())
            continue
        series[kind] = (series_uid, study_uid, used + 1)
        yield _case_from(base, family, rng, index, series_uid, study_uid)


# ----------------------------------------------------------------------------- series


def _as_case(ds: Dataset, name: str, family: str, body: bytes | None = None) -> FuzzCase:
    syntax = str(ds.file_meta.TransferSyntaxUID) if getattr(ds, "file_meta", None) else ExplicitVRLittleEndian
    body = _encode_body(ds, syntax) if body is None else body
    data = file_bytes(str(ds.SOPClassUID), str(ds.SOPInstanceUID), syntax, body)
    return FuzzCase(name=name, family=family, data=data,
                    sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
                    transfer_syntax=syntax, source="phantom:head-ct-512")


def series_cases(head_ct: Sequence[Dataset], seed: int = 0, *, real: bool = True) -> list[SeriesCase]:
    """Broken series built from ``head_ct`` (a 512x512 head CT phantom of >= 3 slices), each
    with fresh UIDs, all matching the head CT route (Modality CT, Body Part HEAD)."""
    rng = random.Random(seed)
    out: list[SeriesCase] = []

    def series(name: str, datasets: list[Dataset], bodies: dict[int, bytes] | None = None) -> None:
        cases = tuple(_as_case(ds, f"{name}[{i}]", f"series:{name}", (bodies or {}).get(i))
                      for i, ds in enumerate(datasets))
        out.append(SeriesCase(name, str(datasets[0].SeriesInstanceUID), str(datasets[0].StudyInstanceUID), cases))

    def fresh(n: int | None = None) -> list[Dataset]:
        datasets = renew_uids(head_ct[: n or len(head_ct)])
        for ds in datasets:
            ds.ImagesInAcquisition = len(datasets)
        return datasets

    series("one-slice", fresh(1))
    zero = fresh(1)
    del zero[0].PixelData
    zero[0].NumberOfFrames = 0
    series("no-usable-slice", zero)
    mixed = fresh()
    small = mixed[-1]
    arr = small.pixel_array[::2, ::2].copy()
    small.Rows, small.Columns = 256, 256
    small.PixelData = arr.tobytes()
    series("mixed-sizes", mixed)
    duplicate = fresh()
    duplicate[1].ImagePositionPatient = list(duplicate[0].ImagePositionPatient)
    series("duplicate-position", duplicate)
    same_all = fresh()
    for ds in same_all:
        ds.ImagePositionPatient = list(same_all[0].ImagePositionPatient)
    series("all-at-one-position", same_all)
    mismatch = fresh()
    mismatch[1].PixelData = bytes(mismatch[1].PixelData)[: len(mismatch[1].PixelData) // 2]
    series("one-slice-short-pixels", mismatch)
    no_rows = fresh()
    del no_rows[1].Rows
    series("one-slice-without-rows", no_rows)
    truncated = fresh()
    body = _encode_body(truncated[-1], str(truncated[-1].file_meta.TransferSyntaxUID))
    series("one-slice-truncated", truncated, {len(truncated) - 1: body[: len(body) // 3]})
    no_geometry = fresh()
    for ds in no_geometry:
        del ds.ImagePositionPatient
        del ds.ImageOrientationPatient
    series("no-geometry", no_geometry)
    tilted = fresh()
    tilted[1].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    series("one-slice-sagittal", tilted)
    garbled = fresh()
    garbled[0] = _derived(garbled[0], ImagePositionPatient=["abc", "nan", "1"])
    garbled[0].file_meta = garbled[1].file_meta
    series("garbled-position", garbled)
    overcount = fresh()
    for ds in overcount:
        ds.ImagesInAcquisition = 400
    series("expects-more-than-sent", overcount)
    frames = fresh(1)
    frames[0].NumberOfFrames = rng.choice([2, 3])
    series("single-frame-claims-frames", frames)
    if real:
        from pydicom import dcmread
        from pydicom.data import get_testdata_file

        path = get_testdata_file("693_UNCR.dcm")
        if path:
            real_ct = dcmread(path)
            real_ct.BodyPartExamined = "HEAD"
            twice = renew_uids([real_ct, real_ct])
            for i, ds in enumerate(twice):
                ds.InstanceNumber = i + 1
                ds.ImagesInAcquisition = 2
                ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [float(i) * 5.0]
            series("real-ct-693", twice)
    return out


# ----------------------------------------------------------------------------- PDUs


def association_rq(called: str = "AINODE", calling: str = "FUZZ", *,
                   abstract: str = "1.2.840.10008.1.1", syntax: str = ExplicitVRLittleEndian,
                   max_pdu: int = 16384) -> bytes:
    """A valid A-ASSOCIATE-RQ proposing one presentation context (ID 1)."""
    def item(kind: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", kind, 0, len(payload)) + payload

    app = item(0x10, b"1.2.840.10008.3.1.1.1")
    context = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, abstract.encode()) + item(0x40, syntax.encode()))
    user = item(0x50, item(0x51, struct.pack(">I", max_pdu)) + item(0x52, b"1.2.826.0.1.3680043.8.498.1"))
    body = (struct.pack(">HH", 1, 0) + called.ljust(16).encode()[:16] + calling.ljust(16).encode()[:16]
            + bytes(32) + app + context + user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _pdata(pdvs: Sequence[tuple[int, int, bytes]], declared: int | None = None) -> bytes:
    body = b"".join(struct.pack(">IBB", len(data) + 2, ctx, header) + data for ctx, header, data in pdvs)
    return struct.pack(">BBI", 0x04, 0, len(body) if declared is None else declared) + body


def garbage_pdus(count: int, seed: int = 0, *, called: str = "AINODE") -> Iterator[PduCase]:
    """``count`` raw byte streams, round-robin over families, for plain sockets."""
    rng = random.Random(seed)
    rq = association_rq(called)

    def random_noise() -> PduCase:
        return PduCase("random bytes", "noise", rng.randbytes(rng.choice([1, 5, 6, 64, 1000, 70000])))

    def bad_type() -> PduCase:
        kind = rng.choice([0x00, 0x08, 0x09, 0x7F, 0xFF])
        return PduCase(f"unknown PDU type 0x{kind:02X}", "bad-type",
                       struct.pack(">BBI", kind, 0, 16) + rng.randbytes(16))

    def absurd_length() -> PduCase:
        kind = rng.choice([0x01, 0x04, 0x05, 0x07])
        length = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x10000000])
        return PduCase(f"PDU 0x{kind:02X} of length {length:#x}, then {64} bytes", "absurd-length",
                       struct.pack(">BBI", kind, 0, length) + rng.randbytes(64))

    def truncated_rq() -> PduCase:
        cut = rng.randrange(1, len(rq))
        return PduCase(f"A-ASSOCIATE-RQ cut at {cut}", "truncated-rq", rq[:cut])

    def corrupt_rq() -> PduCase:
        data = bytearray(rq)
        how = rng.choice(["item-length", "flip", "version", "aet"])
        if how == "item-length":
            at = 6 + 68 + 2  # the first item's length field
            struct.pack_into(">H", data, at, rng.choice([0, 0xFFFF, 1000]))
        elif how == "flip":
            for _ in range(8):
                i = rng.randrange(6, len(data))
                data[i] ^= 1 << rng.randrange(8)
        elif how == "version":
            struct.pack_into(">H", data, 6, 0)
        else:
            data[10:26] = rng.randbytes(16)
        return PduCase(f"A-ASSOCIATE-RQ with bad {how}", "corrupt-rq", bytes(data))

    def out_of_order() -> PduCase:
        kind = rng.choice([0x02, 0x03, 0x04, 0x05, 0x06, 0x07])
        payload = bytes(4) if kind in (0x05, 0x06, 0x07) else rng.randbytes(32)
        return PduCase(f"PDU 0x{kind:02X} before any association", "out-of-order",
                       struct.pack(">BBI", kind, 0, len(payload)) + payload)

    def bad_pdata() -> PduCase:
        how = rng.choice(["context", "header", "length", "command", "dataset-first", "huge"])
        if how == "context":
            data = _pdata([(rng.choice([0, 3, 255]), 0x03, rng.randbytes(40))])
        elif how == "header":
            data = _pdata([(1, rng.choice([0x04, 0xFF, 0x80]), rng.randbytes(40))])
        elif how == "length":
            body = struct.pack(">IBB", 0xFFFFFF00, 1, 0x03) + rng.randbytes(32)
            data = struct.pack(">BBI", 0x04, 0, len(body)) + body
        elif how == "command":
            garbage_command = struct.pack("<HHI", 0x0000, 0x0100, 2) + b"\xff\xff" + rng.randbytes(30)
            data = _pdata([(1, 0x03, garbage_command)])
        elif how == "dataset-first":
            data = _pdata([(1, 0x02, rng.randbytes(128))])
        else:
            data = _pdata([(1, 0x03, rng.randbytes(16))], declared=0x7FFFFFF0)
        return PduCase(f"association, then P-DATA-TF with bad {how}", "bad-pdata", data, associate=True)

    def slow_release() -> PduCase:
        return PduCase("association, then A-RELEASE-RQ cut short", "cut-release",
                       struct.pack(">BBI", 0x05, 0, 4) + b"\x00", associate=True)

    families = [random_noise, bad_type, absurd_length, truncated_rq, corrupt_rq, out_of_order, bad_pdata,
                slow_release]
    for index in range(count):
        case = families[index % len(families)]()
        yield PduCase(f"{index:05d} {case.family}: {case.name}", case.family, case.data, case.associate)


def count_families(cases: Sequence[FuzzCase | PduCase]) -> dict[str, int]:
    """How many cases of each family (for reports)."""
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.family] = counts.get(case.family, 0) + 1
    return counts

