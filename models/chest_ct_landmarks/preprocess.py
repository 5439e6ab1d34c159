"""Pre- and post-processing of the chest CT landmark model (numpy and scipy only).

Preprocessing turns a sorted chest CT series into the ONNX input ``image``
``(N, 3, 128, 128)`` float32 in [0, 1], one row per slice:

1. HU from Rescale Slope / Intercept (``apply_modality_lut``);
2. a square crop around the body, the same for every slice of the series: the largest
   connected region above -500 HU in the series' mean image (the patient, without the
   table), its bounding box enlarged by 8 %; this makes the input independent of the
   field of view, the matrix size and where the patient lies;
3. the crop resampled to 128x128 (Gaussian anti-aliasing, linear interpolation; outside
   the image counts as air);
4. one lung/mediastinum window, HU -1000..200 -> 0..1, clipped;
5. channels: the slice about 4 mm below (:data:`CONTEXT_MM`), the slice itself, the
   slice about 4 mm above. At 4 mm these are the neighbouring slices; thinner series
   use the slices nearest 4 mm away, so the context is the same anatomy. The first and
   last slices repeat themselves as their missing neighbour.

Postprocessing applies a sigmoid to the three logits ``apex``, ``carina``,
``diaphragm`` and picks, per landmark, the highest-scoring slice.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut
from scipy import ndimage

from models.chest_ct_landmarks.findings import (
    DEFAULT_FRACTIONS,
    LANDMARKS,
    LandmarkFindings,
    representative_slices,
)

__all__ = [
    "CONTEXT_MM",
    "INPUT_NAME",
    "MATRIX",
    "WINDOW_HU",
    "context_offset",
    "crop_box",
    "postprocess",
    "prepare_volume",
    "preprocess",
    "series_hu",
    "slice_spacing",
    "stack_context",
]

INPUT_NAME = "image"
MATRIX = 128
WINDOW_HU: tuple[float, float] = (-1000.0, 200.0)
CONTEXT_MM = 4.0
_BODY_HU = -500.0
_MARGIN = 1.08


def series_hu(series: Sequence[Dataset]) -> np.ndarray:
    """``(n, rows, cols)`` float32 HU of a sorted single-frame series.

    Raises
    ------
    ValueError
        If the series is empty, multi-frame, or its slices differ in size.
    """
    if len(series) == 0:
        raise ValueError("empty series")
    shape = (int(series[0].Rows), int(series[0].Columns))
    out = np.empty((len(series), *shape), dtype=np.float32)
    for i, ds in enumerate(series):
        if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
            raise ValueError(f"chest-ct-landmarks needs single-frame slices; {ds.SOPInstanceUID} has several frames")
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise ValueError(f"slice {i} is {ds.Rows}x{ds.Columns}, slice 0 is {shape[0]}x{shape[1]}")
        out[i] = apply_modality_lut(ds.pixel_array, ds)
    return out


def slice_spacing(series: Sequence[Dataset]) -> float:
    """Median distance (mm) between neighbouring slice centres; Slice Thickness as fallback."""
    try:
        iop = np.asarray(series[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        z = np.array([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float))) for ds in series])
        if len(z) > 1:
            d = float(np.median(np.abs(np.diff(z))))
            if d > 0:
                return d
    except (AttributeError, ValueError, TypeError):
        pass
    return float(getattr(series[0], "SliceThickness", CONTEXT_MM) or CONTEXT_MM)


def crop_box(hu: np.ndarray) -> tuple[float, float, float]:
    """``(row0, col0, side)`` of the square crop around the body (see module docs)."""
    mean = hu.mean(axis=0)
    mask = ndimage.binary_opening(mean > _BODY_HU, iterations=2)
    labels, count = ndimage.label(mask)
    rows, cols = hu.shape[1:]
    if count == 0:
        return 0.0, 0.0, float(max(rows, cols))
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    body = labels == (int(np.argmax(sizes)) + 1)
    r = np.flatnonzero(body.any(axis=1))
    c = np.flatnonzero(body.any(axis=0))
    side = max(r[-1] - r[0] + 1, c[-1] - c[0] + 1) * _MARGIN
    centre_r, centre_c = (r[0] + r[-1]) / 2.0, (c[0] + c[-1]) / 2.0
    return float(centre_r - (side - 1) / 2.0), float(centre_c - (side - 1) / 2.0), float(side)


def prepare_volume(hu: np.ndarray, matrix: int = MATRIX) -> np.ndarray:
    """Crop, resample and window an HU volume: ``(n, matrix, matrix)`` float32 in [0, 1]."""
    hu = np.asarray(hu, dtype=np.float32)
    if hu.ndim != 3:
        raise ValueError(f"volume must be (n, rows, cols), got {hu.shape}")
    row0, col0, side = crop_box(hu)
    scale = side / matrix
    if scale > 1.0:
        hu = ndimage.gaussian_filter(hu, sigma=(0.0, 0.45 * scale, 0.45 * scale), truncate=2.5)
    out = ndimage.affine_transform(
        hu,
        matrix=np.array([1.0, scale, scale]),
        offset=(0.0, row0 + (scale - 1) / 2.0, col0 + (scale - 1) / 2.0),
        output_shape=(hu.shape[0], matrix, matrix),
        order=1,
        mode="constant",
        cval=-1024.0,
    )
    low, high = WINDOW_HU
    return np.clip((out - low) / (high - low), 0.0, 1.0).astype(np.float32)


def context_offset(spacing_mm: float) -> int:
    """How many slices away the context channels lie (at least 1)."""
    return max(1, int(round(CONTEXT_MM / max(float(spacing_mm), 1e-3))))


def stack_context(volume: np.ndarray, offset: int, indices: Sequence[int] | None = None) -> np.ndarray:
    """``(len(indices), 3, H, W)``: each slice between the slices ``offset`` below and above."""
    n = volume.shape[0]
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=int)
    below = np.clip(idx - offset, 0, n - 1)
    above = np.clip(idx + offset, 0, n - 1)
    return np.stack([volume[below], volume[idx], volume[above]], axis=1).astype(np.float32, copy=False)


def preprocess(series: Sequence[Dataset]) -> dict[str, np.ndarray]:
    """Turn a sorted chest CT series into ``{"image": (N, 3, 128, 128) float32}``."""
    volume = prepare_volume(series_hu(series))
    return {INPUT_NAME: stack_context(volume, context_offset(slice_spacing(series)))}


def postprocess(
    outputs: Mapping[str, np.ndarray],
    fractions: tuple[tuple[str, float], ...] = DEFAULT_FRACTIONS,
) -> LandmarkFindings:
    """Turn ``{"apex", "carina", "diaphragm": (N, 1) logits}`` into :class:`LandmarkFindings`."""
    columns = []
    for name in LANDMARKS:
        if name not in outputs:
            raise ValueError(f"model output {name!r} missing (got {sorted(outputs)})")
        columns.append(np.asarray(outputs[name], dtype=np.float64).reshape(-1))
    if len({c.size for c in columns}) != 1 or columns[0].size == 0:
        raise ValueError("the three landmark outputs must have the same non-zero length")
    logits = np.stack(columns, axis=1)
    scores = (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)
    picks = {name: int(np.argmax(logits[:, k])) for k, name in enumerate(LANDMARKS)}
    rep = representative_slices(picks["apex"], picks["diaphragm"], scores.shape[0], fractions)
    return LandmarkFindings(scores=scores, picks=picks, representative=rep)
