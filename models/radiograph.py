"""Reading a chest radiograph for a model (numpy/scipy only), shared by the CXR packs.

:func:`read_radiograph` returns the image in the MONOCHROME2 sense (dense = high value)
whatever the encoding: Modality LUT (Rescale Slope / Intercept) first, then MONOCHROME1
values are negated. :func:`to_model` pads the image to a square (edge values), blurs it
against aliasing and resamples it to ``size`` x ``size`` (pixel-area aligned), then maps
the 1st..99th percentile to 0..1. :class:`Geometry` maps model pixels back to source
pixels, so that detections and heatmaps are reported on the acquired matrix.

A JPEG 2000 radiograph much larger than the model's input is decoded at a lower
resolution level (:mod:`node.dicom.reduced_decode`, at least :data:`REDUCED_MARGIN` times the
input size) and resampled from there onto the same model grid: a third of the decode
time for a 2,000-pixel CR going to a 512 input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut
from scipy import ndimage

from node.dicom.reduced_decode import decode_reduced

__all__ = [
    "REDUCED_MARGIN", "Geometry", "normalise", "patient_side", "pixel_spacing_mm", "read_radiograph", "resample",
    "resample_reduced", "to_model",
]

_ASSUMED_FIELD_MM = 430.0

REDUCED_MARGIN = 1.5
"""A JPEG 2000 radiograph is decoded at the coarsest level whose larger side is still this
many times the model's input size (so that the resampling still averages pixels)."""


@dataclass(frozen=True)
class Geometry:
    """How a source image of ``rows`` x ``cols`` maps to the ``size`` x ``size`` model grid.

    The source is padded to a square of ``side`` pixels (``pad_top``/``pad_left`` before it)
    and scaled by ``size / side``; model pixel ``m`` covers padded source pixels
    ``[m / scale, (m + 1) / scale)``.
    """

    rows: int
    cols: int
    size: int
    pad_top: int
    pad_left: int
    side: int

    @property
    def scale(self) -> float:
        """Model pixels per source pixel."""
        return self.size / self.side

    def to_source(self, row: float, col: float) -> tuple[float, float]:
        """Source pixel coordinates (row, col) of a model pixel position."""
        return (
            (row + 0.5) / self.scale - 0.5 - self.pad_top,
            (col + 0.5) / self.scale - 0.5 - self.pad_left,
        )

    def to_model(self, row: float, col: float) -> tuple[float, float]:
        """Model pixel coordinates of a source pixel position."""
        return (
            (row + self.pad_top + 0.5) * self.scale - 0.5,
            (col + self.pad_left + 0.5) * self.scale - 0.5,
        )

    def map_to_source(self, values: np.ndarray) -> np.ndarray:
        """Nearest-neighbour map of a ``(size, size)`` array onto the source matrix."""
        r, c = self._model_indices()
        return values[np.ix_(r, c)]

    def mask_to_source(self, mask: np.ndarray) -> np.ndarray:
        """:meth:`map_to_source` of a boolean mask, computed over its bounding box only.

        A large radiograph (2,000 x 2,000) with a few dozen candidates would otherwise be
        indexed whole once per candidate.
        """
        out = np.zeros((self.rows, self.cols), dtype=bool)
        rows_any, cols_any = mask.any(axis=1), mask.any(axis=0)
        if not rows_any.any():
            return out
        m_r, m_c = np.flatnonzero(rows_any), np.flatnonzero(cols_any)
        r, c = self._model_indices()
        r0, r1 = np.searchsorted(r, m_r[0], "left"), np.searchsorted(r, m_r[-1], "right")
        c0, c1 = np.searchsorted(c, m_c[0], "left"), np.searchsorted(c, m_c[-1], "right")
        out[r0:r1, c0:c1] = mask[np.ix_(r[r0:r1], c[c0:c1])]
        return out

    def _model_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """For each source row and column, the model pixel it falls in (non-decreasing)."""
        r = np.clip(((np.arange(self.rows) + self.pad_top) * self.scale).astype(int), 0, self.size - 1)
        c = np.clip(((np.arange(self.cols) + self.pad_left) * self.scale).astype(int), 0, self.size - 1)
        return r, c

    def smooth_to_source(self, values: np.ndarray) -> np.ndarray:
        """Bilinear map of a ``(size, size)`` float array onto the source matrix."""
        r = (np.arange(self.rows) + self.pad_top + 0.5) * self.scale - 0.5
        c = (np.arange(self.cols) + self.pad_left + 0.5) * self.scale - 0.5
        rr, cc = np.meshgrid(r, c, indexing="ij")
        return ndimage.map_coordinates(values.astype(np.float32), [rr, cc], order=1, mode="nearest")


def read_radiograph(ds: Dataset) -> np.ndarray:
    """The radiograph as float32, dense = high (MONOCHROME1 negated).

    Raises
    ------
    ValueError
        When the image is not a single-frame greyscale image.
    """
    _check_radiograph(ds)
    return _dense_high(ds.pixel_array, ds)


def _check_radiograph(ds: Dataset) -> None:
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"a chest radiograph must be MONOCHROME1/2, not {photometric!r}")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise ValueError("a chest radiograph must be a single frame")


def _dense_high(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values of ``ds`` (at any resolution) as float32, Modality LUT applied, dense = high."""
    values = apply_modality_lut(stored, ds).astype(np.float32)
    return -values if str(ds.PhotometricInterpretation) == "MONOCHROME1" else values


def pixel_spacing_mm(ds: Dataset) -> float:
    """Mean pixel spacing in mm: Pixel Spacing, else Imager Pixel Spacing.

    Without either, a 430 mm detector field is assumed.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            return float((float(value[0]) + float(value[1])) / 2)
    return _ASSUMED_FIELD_MM / max(int(ds.Rows), int(ds.Columns))


def normalise(image: np.ndarray) -> np.ndarray:
    """Map the 1st..99th percentile to 0..1 (clipped), float32."""
    low, high = np.percentile(image, (1.0, 99.0))
    return np.clip((image - low) / max(float(high - low), 1e-6), 0.0, 1.0).astype(np.float32)


def resample(image: np.ndarray, size: int) -> tuple[np.ndarray, Geometry]:
    """Pad ``image`` to a square and resample it to ``size`` x ``size`` (not normalised)."""
    rows, cols = image.shape
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    square = np.pad(image, ((top, side - rows - top), (left, side - cols - left)), mode="edge")
    scale = size / side
    if scale < 1.0:
        square = ndimage.gaussian_filter(square, 0.5 / scale)
    out = _zoom_area(square, size)
    return out.astype(np.float32), Geometry(rows, cols, size, top, left, side)


def resample_reduced(image: np.ndarray, factor: int, shape: tuple[int, int], size: int) -> tuple[np.ndarray, Geometry]:
    """:func:`resample` of a source of ``shape`` given as ``image`` decoded at ``1 / factor``
    of its resolution (sample ``k`` centred on source sample ``k * factor``).

    The model pixels' centres are those of :func:`resample` on the full image; the
    anti-alias blur is the same width in source pixels (on top of the wavelet's own
    low-pass); beyond the image, edge values, as the full path pads.
    """
    rows, cols = shape
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    scale = size / side
    image = np.asarray(image, dtype=np.float32)
    if scale * factor < 1.0:
        image = ndimage.gaussian_filter(image, 0.5 / (scale * factor), mode="nearest")
    centres = (np.arange(size) + 0.5) / scale - 0.5
    rr, cc = np.meshgrid((centres - top) / factor, (centres - left) / factor, indexing="ij")
    out = ndimage.map_coordinates(image, [rr, cc], order=1, mode="nearest")
    return out.astype(np.float32), Geometry(rows, cols, size, top, left, side)


def to_model(ds: Dataset, size: int, *, reduced_decode: bool = True) -> tuple[np.ndarray, Geometry]:
    """A radiograph as the ``(size, size)`` model input in [0, 1], with its geometry.

    ``reduced_decode=False`` decodes the whole image (kept as ``ds.pixel_array``): for a
    caller that will need the full matrix anyway, one full decode is cheaper than both.
    """
    _check_radiograph(ds)
    reduced = decode_reduced(ds, int(np.ceil(REDUCED_MARGIN * size))) if reduced_decode else None
    if reduced is None:
        image, geometry = resample(_dense_high(ds.pixel_array, ds), size)
    else:
        image, geometry = resample_reduced(_dense_high(reduced.pixels, ds), reduced.factor,
                                           (int(ds.Rows), int(ds.Columns)), size)
    return normalise(image), geometry


def _zoom_area(square: np.ndarray, size: int) -> np.ndarray:
    """Bilinear sampling at the centres of the ``size`` x ``size`` model pixels."""
    side = square.shape[0]
    centres = (np.arange(size) + 0.5) * side / size - 0.5
    rr, cc = np.meshgrid(centres, centres, indexing="ij")
    return ndimage.map_coordinates(square, [rr, cc], order=1, mode="nearest")


def patient_side(ds: Dataset, col: float) -> str:
    """``"right"`` or ``"left"``: the patient's side of a column of the image.

    Uses the first Patient Orientation value (the direction of increasing column); a
    radiograph without one is taken as displayed PA (``L``: column 0 is the patient's right).
    """
    orientation = ds.get("PatientOrientation")
    towards = str(orientation[0])[:1] if orientation is not None and len(orientation) == 2 else "L"
    left_half = col < int(ds.Columns) / 2.0
    if towards == "R":
        return "left" if left_half else "right"
    return "right" if left_half else "left"
