"""Pre- and post-processing of the brain MR model (numpy/scipy only, no torch).

Preprocessing turns a sorted MR series into the ONNX input ``image`` ``(N, C, H', W')``
float32: the stored pixel values (Rescale Slope/Intercept applied when present) divided
by the 99th percentile of the whole series, clipped to [0, 3], and zero-padded at the
bottom/right to multiples of :data:`MULTIPLE` (the network pools three times). With
``context`` k > 0 (2.5D input, ``C = 2k + 1``) each slice carries its k neighbours on
either side as extra channels, in slice order (the first and last slices repeat at the
ends of the series); ``context`` 0 is the plain 2D input, ``C = 1``.

Postprocessing takes ``logits`` ``(N, classes, H', W')``, crops the padding, takes the
per-pixel argmax and drops tumour components smaller than ``min_tumor_ml``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut
from scipy import ndimage

from models.brain_mr.classes import CLASS_NAMES, TUMOR

__all__ = [
    "INPUT_NAME",
    "MULTIPLE",
    "OUTPUT_NAME",
    "labels_from_logits",
    "normalise",
    "pad_to_multiple",
    "preprocess",
    "series_geometry",
    "series_volume",
    "stack_context",
]

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MULTIPLE = 8


def series_volume(series: Sequence[Dataset]) -> np.ndarray:
    """Pixel values of a sorted single-frame series as ``(n, rows, cols)`` float32.

    Raises
    ------
    ValueError
        If the series is empty, a slice is multi-frame, or the slices differ in size.
    """
    if len(series) == 0:
        raise ValueError("empty series")
    shape = (int(series[0].Rows), int(series[0].Columns))
    slices = []
    for ds in series:
        if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
            raise ValueError(f"brain-mr needs one frame per image; {ds.SOPInstanceUID} has several")
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise ValueError(f"slices differ in size: {shape} and {(int(ds.Rows), int(ds.Columns))}")
        slices.append(apply_modality_lut(ds.pixel_array, ds).astype(np.float32, copy=False))
    return np.stack(slices)


def normalise(volume: np.ndarray) -> np.ndarray:
    """Divide by the volume's 99th percentile and clip to [0, 3] (float32)."""
    volume = np.asarray(volume, dtype=np.float32)
    scale = float(np.percentile(volume, 99.0))
    if scale <= 0:
        scale = float(volume.max()) or 1.0
    return np.clip(volume / scale, 0.0, 3.0).astype(np.float32)


def pad_to_multiple(x: np.ndarray, multiple: int = MULTIPLE) -> np.ndarray:
    """Zero-pad the last two axes of ``x`` up to multiples of ``multiple``."""
    rows, cols = x.shape[-2:]
    pad_r, pad_c = (-rows) % multiple, (-cols) % multiple
    if not pad_r and not pad_c:
        return x
    widths = [(0, 0)] * (x.ndim - 2) + [(0, pad_r), (0, pad_c)]
    return np.pad(x, widths)


def stack_context(volume: np.ndarray, context: int = 0) -> np.ndarray:
    """``(n, H, W)`` → ``(n, 2·context + 1, H, W)``: each slice with its ``context``
    neighbours on either side as channels (slice order; edge slices repeated)."""
    volume = np.asarray(volume)
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    n = len(volume)
    index = np.arange(n)
    return np.stack([volume[np.clip(index + d, 0, n - 1)] for d in range(-context, context + 1)], axis=1)


def preprocess(series: Sequence[Dataset], context: int = 0) -> dict[str, np.ndarray]:
    """Turn a sorted brain MR series into ``{"image": (N, 2·context + 1, H', W') float32}``.

    The series' geometry is checked first (:func:`series_geometry`), so that a series
    whose volumes cannot be measured fails here, before inference.
    """
    series_geometry(series)
    image = normalise(series_volume(series))
    return {INPUT_NAME: pad_to_multiple(stack_context(image, context))}


def series_geometry(series: Sequence[Dataset]) -> tuple[float, float, float]:
    """``(row spacing, column spacing, slice spacing)`` in mm of a sorted series.

    The slice spacing is the median distance between consecutive Image Positions along
    the slice normal (Spacing Between Slices, then Slice Thickness, for one slice).

    Raises
    ------
    ValueError
        When the series lacks the geometry volumes are measured with (Pixel Spacing,
        slice positions or thickness), e.g. a multi-frame MR without its functional groups.
    """
    first = series[0]
    try:
        row_mm, col_mm = (float(v) for v in first.PixelSpacing)
        if len(series) > 1:
            iop = np.asarray(first.ImageOrientationPatient, dtype=float)
            normal = np.cross(iop[:3], iop[3:])
            z = np.array([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float))) for ds in series])
            slice_mm = float(np.median(np.abs(np.diff(z))))
        else:
            slice_mm = float(getattr(first, "SpacingBetweenSlices", None) or first.SliceThickness)
    except (AttributeError, TypeError, ValueError) as exc:
        missing = str(exc).rsplit(" ", 1)[-1].strip("'") if isinstance(exc, AttributeError) else type(exc).__name__
        raise ValueError(f"brain-mr measures volumes and needs Pixel Spacing and slice positions; the series lacks"
                         f" them ({missing})") from None
    if not all(np.isfinite(v) and v > 0 for v in (row_mm, col_mm, slice_mm)):
        raise ValueError("brain-mr measures volumes and needs positive pixel and slice spacings")
    return row_mm, col_mm, slice_mm


def labels_from_logits(
    logits: np.ndarray,
    shape: tuple[int, int],
    *,
    voxel_ml: float,
    min_tumor_ml: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Argmax labels and tumour probability, padding cropped, small tumour blobs dropped.

    Parameters
    ----------
    logits:
        ``(n, classes, H', W')``.
    shape:
        ``(rows, cols)`` of the series (before padding).
    voxel_ml:
        Volume of one voxel in mL.
    min_tumor_ml:
        Tumour components (26-connected) smaller than this are relabelled with the
        second most probable class.

    Returns
    -------
    tuple
        ``(labels (n, rows, cols) uint8, tumour probability (n, rows, cols) float32)``.
    """
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 4 or logits.shape[1] != len(CLASS_NAMES):
        raise ValueError(f"logits must be (N, {len(CLASS_NAMES)}, H, W), got {logits.shape}")
    rows, cols = shape
    logits = logits[:, :, :rows, :cols]
    shifted = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(shifted)
    prob /= prob.sum(axis=1, keepdims=True)
    labels = prob.argmax(axis=1).astype(np.uint8)
    tumor = labels == TUMOR
    if tumor.any():
        components, count = ndimage.label(tumor, structure=np.ones((3, 3, 3)))
        sizes = np.bincount(components.ravel())
        small = np.flatnonzero(sizes * voxel_ml < min_tumor_ml)
        small = small[small > 0]
        if small.size:
            drop = np.isin(components, small)
            second = np.argsort(prob, axis=1)[:, -2].astype(np.uint8)
            labels[drop] = second[drop]
    return labels, prob[:, TUMOR].astype(np.float32)
