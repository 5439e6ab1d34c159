"""Decode a JPEG 2000 image at a lower resolution level, for a model that needs fewer pixels.

A JPEG 2000 codestream holds its image as a wavelet pyramid: each resolution level
halves the image, and OpenJPEG can stop decoding at any of them (Pillow's ``reduce``).
A chest radiograph of about 2,000 x 2,000 pixels that a model resamples to 512 x 512 does
not need the full image: here (2 CPU cores) the real CR ``RG1_J2KR`` (1955 x 1841, JPEG
2000 lossless) decodes in 0.26 s at half resolution against 0.9-1.1 s in full, most of the
time from the release of a radiograph to its first result.

Level ``r`` gives ``ceil(n / 2**r)`` samples along an axis of ``n``; sample ``k`` is the
low-pass of the source around sample ``k * 2**r`` (the 5/3 and 9/7 filters have unit gain
at zero frequency, so values keep the source's scale). The values are those pydicom's own
Pillow decoder gives: shifted back from Pillow's 16 bits to the codestream's precision.
Only what that decoder handles the same way is taken (one frame, one sample, unsigned,
up to 16 bits); anything else, or a codestream Pillow cannot read, gets ``None`` and the
caller decodes in full as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import get_j2k_parameters
from pydicom.uid import JPEG2000, JPEG2000Lossless

__all__ = ["ReducedImage", "decode_reduced"]

_J2K_SYNTAXES = frozenset({JPEG2000, JPEG2000Lossless})
_GREY_MODES = frozenset({"L", "I;16"})
"""Pillow's modes of a one-component codestream of up to 8 and of 9-16 bits."""


@dataclass(frozen=True)
class ReducedImage:
    """Stored values of an image decoded at ``1 / factor`` of its resolution along each axis."""

    pixels: np.ndarray
    factor: int


def decode_reduced(ds: Dataset, min_side: int) -> ReducedImage | None:
    """``ds``'s pixels at the coarsest resolution level whose larger side is still at least
    ``min_side`` pixels; ``None`` when no level below the full image qualifies, when the
    image is not a single-frame, single-sample, unsigned JPEG 2000 image whose pixels are
    still encoded, or when the codestream cannot be decoded that way (the caller then
    decodes the full image, which reports what is wrong with it).
    """
    try:
        if str(ds.file_meta.TransferSyntaxUID) not in _J2K_SYNTAXES or "PixelData" not in ds:
            return None
        if int(ds.get("NumberOfFrames", 1) or 1) != 1 or int(ds.SamplesPerPixel) != 1:
            return None
        if int(ds.PixelRepresentation) != 0 or getattr(ds, "_pixel_array", None) is not None:
            return None
        rows, cols = int(ds.Rows), int(ds.Columns)
        level = _level(rows, cols, min_side)
        if level == 0:
            return None
        codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
        parameters = get_j2k_parameters(codestream)
        precision = int(parameters.get("precision", 0))
        if not 0 < precision <= 16 or parameters.get("is_signed"):
            return None
        image = Image.open(BytesIO(codestream), formats=("JPEG2000",))
        if image.size != (cols, rows) or image.mode not in _GREY_MODES:
            return None
        image.reduce = level
        image.load()
        pixels = np.asarray(image)
        factor = 1 << level
        if pixels.shape != (-(-rows // factor), -(-cols // factor)):
            return None
        bits = 8 if pixels.dtype == np.uint8 else 16
        if precision > bits:
            return None
        pixels = np.right_shift(pixels, bits - precision) if precision < bits else np.array(pixels)
        return ReducedImage(pixels, factor)
    except Exception:  # any failure here only loses the shortcut: the full decode reports what is wrong
        return None


def _level(rows: int, cols: int, min_side: int) -> int:
    """The highest level ``r`` whose image keeps ``max(rows, cols) / 2**r >= min_side`` and
    whose size Pillow computes correctly.

    Pillow sizes a reduced image by rounding (``(n + 2**(r-1)) // 2**r``) where OpenJPEG
    takes the ceiling, and refuses the decode where the two differ (e.g. 1841 at ``r = 2``).
    """
    level = 0
    while max(rows, cols) >= min_side << (level + 1):
        candidate = level + 1
        power = 1 << candidate
        if any((n + (power >> 1)) // power != -(-n // power) for n in (rows, cols)):
            break
        level = candidate
    return level
