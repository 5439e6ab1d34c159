"""Pre- and post-processing of the head CT hematoma model (numpy only, no torch).

Preprocessing turns a sorted series into the ONNX input ``image`` ``(N, 2, 512, 512)``
float32 in [0, 1]:

* channel 0: the brain window of the research, HU 0..80 -> 0..1, clipped;
* channel 1: a wide window, HU -1000..2000 -> 0..1, clipped, so that bone (saturated at
  1 in channel 0) stays distinguishable from hematoma, and air from fat.

HU come from pydicom's ``apply_modality_lut`` (Rescale Slope / Intercept). Only 512x512
slices are accepted: the 32x32 grid of 16-pixel patches, and the SEG/SC results drawn
from it, are defined on the acquired matrix, so a slice of any other size is rejected
with a ``ValueError`` rather than resampled (route such series elsewhere).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut

from models.head_ct_hematoma.findings import HEMATOMA, HematomaFindings

__all__ = ["INPUT_NAME", "MATRIX", "OUTPUT_NAME", "PATCH_SIZE", "postprocess", "preprocess", "window"]

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


def preprocess(series: Sequence[Dataset]) -> dict[str, np.ndarray]:
    """Turn a sorted head CT series into ``{"image": (N, 2, 512, 512) float32}``.

    Raises
    ------
    ValueError
        If the series is empty, or a slice is not a single 512x512 frame.
    """
    if len(series) == 0:
        raise ValueError("empty series")
    slices = []
    for ds in series:
        rows, cols = int(ds.Rows), int(ds.Columns)
        if (rows, cols) != (MATRIX, MATRIX) or int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
            raise ValueError(
                f"head-ct-hematoma needs single-frame {MATRIX}x{MATRIX} slices; "
                f"SOP Instance {ds.SOPInstanceUID} is {rows}x{cols}"
            )
        slices.append(apply_modality_lut(ds.pixel_array, ds).astype(np.float32, copy=False))
    return {INPUT_NAME: window(np.stack(slices))}


def postprocess(outputs: Mapping[str, np.ndarray], min_patches: int) -> HematomaFindings:
    """Turn ``{"logits": (N, 4, 32, 32)}`` into :class:`HematomaFindings`.

    Softmax over the class axis, argmax per patch; the series is positive when at least
    ``min_patches`` patches are hematoma.
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
    )
