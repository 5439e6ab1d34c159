"""Pre- and post-processing of the head CT hematoma model (numpy only, no torch).

Preprocessing turns a sorted series into the ONNX input ``image`` ``(N, 2, 512, 512)``
float32 in [0, 1]:

* channel 0: the brain window of the research, HU 0..80 -> 0..1, clipped;
* channel 1: a wide window, HU -1000..2000 -> 0..1, clipped, so that bone (saturated at
  1 in channel 0) stays distinguishable from hematoma, and air from fat.

HU come from pydicom's ``apply_modality_lut`` (Rescale Slope / Intercept). A slice of
another matrix than 512x512 is resampled (bilinear) to 512x512; the 32x32 patch grid is
then mapped back onto the acquired matrix by :func:`patches_to_pixels`, so the SEG and
SC results lie on the source's pixels whatever its size.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut
from scipy import ndimage

from models.head_ct_hematoma.findings import HEMATOMA, HematomaFindings, SeriesCount

__all__ = [
    "INPUT_NAME", "MATRIX", "OUTPUT_NAME", "PATCH_SIZE", "patches_to_pixels", "postprocess", "preprocess", "resample",
    "window",
]

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MATRIX = 512
PATCH_SIZE = 16
_WINDOWS = ((0.0, 80.0), (-1000.0, 2000.0))


def window(hu: np.ndarray) -> np.ndarray:
    """Map HU ``(N, H, W)`` to the network input ``(N, 2, H, W)`` float32 in [0, 1]."""
    hu = np.asarray(hu, dtype=np.float32)
    channels = [np.clip((hu - lo) / (hi - lo), 0.0, 1.0) for lo, hi in _WINDOWS]
    return np.stack(channels, axis=1).astype(np.float32, copy=False)


def resample(image: np.ndarray, matrix: int = MATRIX) -> np.ndarray:
    """Resample one ``(rows, cols)`` slice to ``(matrix, matrix)`` (bilinear, pixel-area aligned)."""
    rows, cols = image.shape
    if (rows, cols) == (matrix, matrix):
        return image
    r = (np.arange(matrix) + 0.5) * rows / matrix - 0.5
    c = (np.arange(matrix) + 0.5) * cols / matrix - 0.5
    rr, cc = np.meshgrid(r, c, indexing="ij")
    return ndimage.map_coordinates(image, [rr, cc], order=1, mode="nearest").astype(np.float32, copy=False)


def patches_to_pixels(patches: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``(..., grid, grid)`` patch values → ``(..., rows, cols)``: each pixel takes its patch's value."""
    grid_r, grid_c = patches.shape[-2:]
    r = np.minimum((np.arange(rows) * grid_r) // rows, grid_r - 1)
    c = np.minimum((np.arange(cols) * grid_c) // cols, grid_c - 1)
    return patches[..., r[:, None], c[None, :]]


def preprocess(series: Sequence[Dataset]) -> dict[str, np.ndarray]:
    """Turn a sorted head CT series into ``{"image": (N, 2, 512, 512) float32}``.

    Raises
    ------
    ValueError
        If the series is empty or a slice is not a greyscale image.
    """
    if len(series) == 0:
        raise ValueError("empty series")
    slices = []
    for ds in series:
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise ValueError(f"head-ct-hematoma needs greyscale slices; SOP Instance {ds.SOPInstanceUID} has colour")
        hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float32, copy=False)
        if hu.ndim != 2:
            raise ValueError(f"head-ct-hematoma needs one frame per slice; SOP Instance {ds.SOPInstanceUID} is {hu.shape}")
        slices.append(resample(hu))
    return {INPUT_NAME: window(np.stack(slices))}


def postprocess(
    outputs: Mapping[str, np.ndarray], min_patches: int, min_probability: float = 0.0,
    series_count: SeriesCount = SeriesCount.TOTAL,
) -> HematomaFindings:
    """Turn ``{"logits": (N, 4, 32, 32)}`` into :class:`HematomaFindings`.

    Softmax over the class axis, argmax per patch; the series is positive when at least
    ``min_patches`` patches (all, or in the largest cluster: ``series_count``) are hematoma
    with a hematoma probability of at least ``min_probability``.
    """
    logits = np.asarray(outputs[OUTPUT_NAME], dtype=np.float32)
    if logits.ndim != 4:
        raise ValueError(f"logits must be (N, classes, grid, grid), got {logits.shape}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(shifted)
    prob /= prob.sum(axis=1, keepdims=True)
    return HematomaFindings(
        patch_classes=prob.argmax(axis=1).astype(np.uint8),
        hematoma_probability=prob[:, HEMATOMA].astype(np.float32),
        patch_size=PATCH_SIZE,
        min_patches=int(min_patches),
        min_probability=float(min_probability),
        series_count=SeriesCount(series_count),
    )
