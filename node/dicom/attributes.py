"""Input attributes checked where they are read: a small declarative check per attribute.

A model pack declares the attributes it needs (``required_attributes``, a tuple of
:class:`Attribute`); the worker checks every image of a series against them when the
series is loaded, before any pixel is decoded for the model. What is wrong is an
:class:`InputError` whose text is the operator's sentence, naming the attribute by its
name and tag and saying what is wrong with it::

    Pixel Spacing (0028,0030) is 0
    Rows (0028,0010) missing
    Rescale Slope (0028,1053) is not a number

It never quotes the value itself beyond numbers that the check compares (no free text,
no patient data), so it can be shown as it is.

Like highdicom's checks of its inputs, each attribute's rule is data (required, number
of values, number, integer, positive, finite, enumerated values, same in every slice of
the series); :func:`check_file` adds the checks of the pixel data itself (present, as long
as Rows × Columns × Samples × Bits × Frames say, for uncompressed transfer syntaxes).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from pydicom import Dataset
from pydicom.datadict import dictionary_description, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import Tag
from pydicom.uid import UID

__all__ = [
    "Attribute", "IMAGE", "InputError", "RADIOGRAPH", "VOLUME", "check_file", "check_image", "check_series",
    "input_error_from", "tag_text",
]


def tag_text(tag: int) -> str:
    """``(gggg,eeee)`` of ``tag``."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class InputError(ValueError):
    """An input attribute the job cannot use: ``str()`` is ``"<Name> (gggg,eeee) <defect>"``.

    ``keyword`` is the DICOM keyword (``PixelSpacing``), ``tag`` the tag as an int,
    ``defect`` what is wrong (``"is 0"``, ``"missing"``), ``where`` optionally which
    image (a SOP Instance UID, frame or file).
    """

    def __init__(self, keyword: str, tag: int, defect: str, where: str = "") -> None:
        self.keyword = keyword
        self.tag = int(tag)
        self.defect = defect
        self.where = where
        super().__init__(self.sentence())

    @property
    def name(self) -> str:
        """The attribute's name in the DICOM dictionary (``"Pixel Spacing"``), else its keyword."""
        try:
            return str(dictionary_description(self.tag)) or self.keyword
        except KeyError:
            return self.keyword or "attribute"

    def sentence(self) -> str:
        text = f"{self.name} {tag_text(self.tag)} {self.defect}"
        return f"{text} (in {self.where})" if self.where else text

    def at(self, where: str) -> "InputError":
        """The same error, saying which image it is in."""
        return InputError(self.keyword, self.tag, self.defect, where)

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries intact
        return (InputError, (self.keyword, self.tag, self.defect, self.where))


Rule = Callable[[list[float]], "str | None"]
"""An extra rule on an attribute's numeric values: the defect, or ``None`` when they are fine."""


@dataclass(frozen=True)
class Attribute:
    """What one attribute must be.

    ``required``: present with a value (else ``"missing"`` / ``"is empty"``); an optional
    attribute is checked only when it has a value. ``count``: the number of values (VM).
    ``number``: every value a number; ``integer``, ``finite``, ``positive`` (> 0),
    ``non_negative`` (>= 0), ``nonzero`` and ``minimum``/``maximum`` refine it.
    ``enumerated``: the allowed values (text or numbers). ``same_in_series``: every image of
    the series has the same value. ``rule``: one more check on the numbers.
    """

    keyword: str
    required: bool = True
    count: int | None = None
    number: bool = False
    integer: bool = False
    finite: bool = True
    positive: bool = False
    non_negative: bool = False
    nonzero: bool = False
    minimum: float | None = None
    maximum: float | None = None
    enumerated: tuple[Any, ...] | None = None
    same_in_series: bool = False
    rule: Rule | None = field(default=None, compare=False)
    text_rule: Callable[[list[str]], "str | None"] | None = field(default=None, compare=False)

    @property
    def tag(self) -> int:
        tag = tag_for_keyword(self.keyword)
        if tag is None:
            raise KeyError(f"unknown DICOM keyword {self.keyword!r}")
        return int(tag)

    def optional(self) -> "Attribute":
        """The same check, made only when the attribute is present."""
        return replace(self, required=False)

    def error(self, defect: str) -> InputError:
        return InputError(self.keyword, self.tag, defect)

    def check(self, ds: Dataset) -> InputError | None:
        """What is wrong with this attribute in ``ds``; ``None`` when nothing."""
        tag = self.tag
        try:
            element = ds.get(tag)  # a raw element is converted here: a broken value raises
            if element is None:
                return self.error("missing") if self.required else None
            value = element.value
        except Exception as exc:  # pydicom raises many kinds for a value it cannot parse
            return self.error(_unreadable(exc, _vr(tag)))
        expected_vr = _vr(tag)
        if element.VR not in (expected_vr, "UN") and not _vr_compatible(element.VR, expected_vr):
            return self.error(f"has VR {element.VR}, expected {expected_vr}")
        values = _values(value)
        if not values or all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            return self.error("is empty") if self.required else None
        if isinstance(value, (bytes, bytearray)) and expected_vr not in ("OB", "OW", "UN"):
            return self.error(f"is undecoded bytes, expected VR {expected_vr}")
        if self.count is not None and len(values) != self.count:
            return self.error(f"has {len(values)} value{'s' if len(values) != 1 else ''}, expected {self.count}")
        if self.enumerated is not None and not (self.number or self.integer):
            texts = [str(v).strip() for v in values]
            if any(t not in self.enumerated for t in texts):
                return self.error(f"is not one of {', '.join(map(str, self.enumerated))}")
            return None
        if not (self.number or self.integer):
            defect = self.text_rule([str(v).strip() for v in values]) if self.text_rule is not None else None
            return self.error(defect) if defect else None
        numbers: list[float] = []
        for v in values:
            try:
                numbers.append(float(str(v).strip()) if not isinstance(v, (int, float)) else float(v))
            except (TypeError, ValueError, OverflowError):
                return self.error("is not a number")
        return self._numbers(numbers)

    def _numbers(self, numbers: list[float]) -> InputError | None:
        shown = "\\".join(_number_text(n) for n in numbers)
        if any(math.isnan(n) for n in numbers):
            return self.error("is not a number (NaN)")
        if self.finite and any(math.isinf(n) for n in numbers):
            return self.error("is not finite")
        if self.integer and any(not n.is_integer() for n in numbers):
            return self.error(f"is {shown}, not an integer")
        if self.enumerated is not None and any(n not in self.enumerated for n in numbers):
            return self.error(f"is {shown}, not one of {', '.join(map(str, self.enumerated))}")
        if self.positive and any(n <= 0 for n in numbers):
            return self.error(f"is {shown}" if any(n == 0 for n in numbers) or len(numbers) == 1
                              else f"is {shown}, not positive")
        if self.non_negative and any(n < 0 for n in numbers):
            return self.error(f"is {shown}, negative")
        if self.nonzero and any(n == 0 for n in numbers):
            return self.error(f"is {shown}")
        if self.minimum is not None and any(n < self.minimum for n in numbers):
            return self.error(f"is {shown}, less than {_number_text(self.minimum)}")
        if self.maximum is not None and any(n > self.maximum for n in numbers):
            return self.error(f"is {shown}, more than {_number_text(self.maximum)}")
        if self.rule is not None:
            defect = self.rule(numbers)
            if defect:
                return self.error(defect)
        return None


def _number_text(n: float) -> str:
    if math.isfinite(n) and n.is_integer() and abs(n) < 1e15:
        return str(int(n))
    return f"{n:g}"


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _vr_compatible(vr: str, expected: str) -> bool:
    """``vr`` is one of the choices of an ambiguous dictionary VR (``US or SS``)."""
    return vr in [part.strip() for part in expected.split(" or ")]


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, bytearray)):
        return [value] if value else []
    try:
        return list(value)
    except TypeError:
        return [value]


def _unreadable(exc: BaseException, expected_vr: str = "") -> str:
    """The defect of a value pydicom could not parse, without the value."""
    text = str(exc)
    if expected_vr in ("DS", "IS", "FD", "FL", "US", "SS", "UL", "SL") and isinstance(exc, (ValueError, TypeError)) \
            and "bytes per value" not in text:
        return "is not a number"
    vr = re.search(r"VR '(\w\w)'", text)
    if "bytes per value" in text or "even multiple" in text:
        return f"cannot be read (length does not fit VR {vr.group(1)})" if vr else "cannot be read (wrong length)"
    if vr:
        return f"cannot be read as VR {vr.group(1)}"
    return "cannot be read"


def _orientation(numbers: list[float]) -> str | None:
    row, col = numbers[:3], numbers[3:]
    norms = [math.sqrt(sum(x * x for x in v)) for v in (row, col)]
    if any(abs(n - 1.0) > 0.01 for n in norms):
        return "is not two unit vectors"
    if abs(sum(a * b for a, b in zip(row, col))) > 0.01:
        return "has row and column directions that are not perpendicular"
    return None


def _character_sets(values: list[str]) -> str | None:
    if len(values) == 1 and values[0].startswith("ISO 2022"):
        return "is a code extension without a default character set before it (one value, expected two or more)"
    return None


IMAGE: tuple[Attribute, ...] = (
    Attribute("StudyInstanceUID", count=1),  # the results reference the source study, series and image
    Attribute("SeriesInstanceUID", count=1),
    Attribute("SOPInstanceUID", count=1),
    Attribute("SOPClassUID", count=1),
    Attribute("Modality", count=1),  # copied into the result objects
    Attribute("SpecificCharacterSet", required=False, text_rule=_character_sets),
    Attribute("Rows", integer=True, count=1, positive=True, same_in_series=False),
    Attribute("Columns", integer=True, count=1, positive=True),
    Attribute("SamplesPerPixel", integer=True, count=1, enumerated=(1,)),
    Attribute("PhotometricInterpretation", count=1, enumerated=("MONOCHROME1", "MONOCHROME2")),
    Attribute("BitsAllocated", integer=True, count=1, enumerated=(1, 8, 16, 32, 64)),
    Attribute("BitsStored", integer=True, count=1, minimum=1, maximum=64),
    Attribute("PixelRepresentation", integer=True, count=1, enumerated=(0, 1)),
    Attribute("RescaleSlope", required=False, number=True, count=1, nonzero=True),
    Attribute("RescaleIntercept", required=False, number=True, count=1),
)
"""What every greyscale image pack reads: the pixel module, and the modality rescale when there is one."""

VOLUME: tuple[Attribute, ...] = tuple(
    replace(a, same_in_series=True) if a.keyword in ("Rows", "Columns") else a for a in IMAGE
) + (
    Attribute("PixelSpacing", number=True, count=2, positive=True),
    Attribute("ImageOrientationPatient", number=True, count=6, same_in_series=True, rule=_orientation),
    Attribute("ImagePositionPatient", number=True, count=3),
    Attribute("SliceThickness", required=False, number=True, count=1, non_negative=True),
)
"""A cross-sectional series measured in mm (CT, MR): pixel spacing and plane geometry required,
one matrix and one orientation for the whole series."""

RADIOGRAPH: tuple[Attribute, ...] = IMAGE + (
    # CR often has Pixel Spacing 0\0 (unknown) and only Imager Pixel Spacing, or neither: allowed
    Attribute("PixelSpacing", required=False, number=True, count=2, non_negative=True),
    Attribute("ImagerPixelSpacing", required=False, number=True, count=2, non_negative=True),
)
"""A projection radiograph: spacing optional (``0\\0`` means unknown), no plane geometry."""

_BITS_STORED = Attribute("BitsStored", required=False, integer=True, count=1, minimum=1, maximum=64)
_PIXEL_DATA = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_FILE = (
    Attribute("Rows", integer=True, count=1, positive=True),
    Attribute("Columns", integer=True, count=1, positive=True),
    Attribute("BitsAllocated", integer=True, count=1, enumerated=(1, 8, 16, 32, 64)),
    Attribute("SamplesPerPixel", integer=True, count=1, minimum=1, maximum=4),
    Attribute("PixelRepresentation", integer=True, count=1, enumerated=(0, 1)),
    Attribute("PhotometricInterpretation", count=1),
    Attribute("NumberOfFrames", required=False, integer=True, count=1, positive=True),
)
"""What decoding a file's pixels needs, whatever the pack (checked before frames are expanded)."""


def check_file(ds: Dataset) -> None:
    """Raise :class:`InputError` when ``ds``'s pixels cannot be decoded as its attributes describe."""
    for attribute in _FILE:
        error = attribute.check(ds)
        if error is not None:
            raise error
    stored = next((k for k in _PIXEL_DATA if k in ds), None)
    if stored is None:
        raise InputError("PixelData", 0x7FE00010, "missing")
    bits = int(ds.BitsAllocated)
    error = _BITS_STORED.check(ds)
    if error is not None:
        raise error
    stored_bits = ds.get("BitsStored")
    if stored_bits is not None and int(stored_bits) > bits:
        raise InputError("BitsStored", 0x00280101, f"is {int(stored_bits)}, more than Bits Allocated (0028,0100) {bits}")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    tag = int(Tag(tag_for_keyword(stored)))
    try:
        element = ds[tag]
        data = element.value
    except Exception as exc:
        raise InputError(stored, tag, _unreadable(exc)) from None
    if not data:
        raise InputError(stored, tag, "is empty")
    if (syntax is not None and UID(str(syntax)).is_compressed) or getattr(element, "is_undefined_length", False):
        return  # encapsulated: the decoder says whether the fragments hold the frames
    frames = int(ds.get("NumberOfFrames") or 1)
    rows, columns, samples = int(ds.Rows), int(ds.Columns), int(ds.SamplesPerPixel)
    expected = rows * columns * samples * frames
    expected = (expected + 7) // 8 if bits == 1 else expected * (bits // 8)
    if stored == "PixelData" and str(ds.PhotometricInterpretation).strip() == "YBR_FULL_422":
        expected = expected // 3 * 2
    if len(data) < expected:
        described = f"{rows}x{columns}" + (f"x{samples} samples" if samples > 1 else "") + f", {bits} bits"
        if frames > 1:
            described += f", Number of Frames (0028,0008) {frames}"
        raise InputError(stored, tag, f"has {len(data)} bytes, {expected} expected ({described})")


def check_image(ds: Dataset, attributes: Iterable[Attribute]) -> None:
    """Raise the first :class:`InputError` of ``ds`` against ``attributes``."""
    for attribute in attributes:
        error = attribute.check(ds)
        if error is not None:
            raise error


def check_series(images: Sequence[Dataset], attributes: Iterable[Attribute]) -> None:
    """Raise :class:`InputError` when an attribute marked ``same_in_series`` differs between ``images``."""
    for attribute in attributes:
        if not attribute.same_in_series or len(images) < 2:
            continue
        seen: list[tuple[float, ...] | str] = []
        for ds in images:
            value = _comparable(ds.get(attribute.tag))
            if value is None:
                continue
            if not any(_same(value, other) for other in seen):
                seen.append(value)
        if len(seen) > 1:
            shown = ", ".join(_shown(v) for v in seen[:4])
            raise attribute.error(f"differs between the slices of the series ({shown})")


def _comparable(element: Any) -> tuple[float, ...] | str | None:
    if element is None:
        return None
    values = _values(element.value)
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return "\\".join(map(str, values))


def _same(a: tuple[float, ...] | str, b: tuple[float, ...] | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return len(a) == len(b) and all(abs(x - y) <= 1e-3 for x, y in zip(a, b))


def _shown(value: tuple[float, ...] | str) -> str:
    if isinstance(value, str):
        return "text"
    return "\\".join(f"{v:g}" for v in value)


_TAG_IN_TEXT = re.compile(r"\(([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})\)")


def input_error_from(exc: BaseException) -> InputError | None:
    """An :class:`InputError` for an exception pydicom raised while parsing, when it names a tag."""
    if isinstance(exc, InputError):
        return exc
    match = _TAG_IN_TEXT.search(str(exc))
    if match is None:
        return None
    tag = (int(match.group(1), 16) << 16) | int(match.group(2), 16)
    keyword = keyword_for_tag(tag) or f"{tag_text(tag)}"
    return InputError(keyword, tag, _unreadable(exc))
