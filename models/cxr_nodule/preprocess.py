"""Pre- and post-processing of the CXR nodule model (numpy/scipy only).

Input ``image`` ``(N, 2, S, S)`` float32 (``S`` = the model's input size, from its
``model.json``: 256 or 512): each radiograph read as dense = high (MONOCHROME1 inverted),
padded to a square, resampled to S x S and percentile-normalised
(:mod:`models.radiograph`) in channel 0; channel 1 is its local detail,
``clip(DETAIL_GAIN x (x - gaussian(x, sigma)), -1, 1)`` with ``sigma = DETAIL_SIGMA x S /
256`` model pixels (the same 5 mm on the detector at every input size), the high-pass in
which nodule-sized blobs stand out from the lung background (the way radiographs are
usually shown with unsharp-mask processing). Output ``logits`` ``(N, 1, S, S)``.
Postprocessing: sigmoid, connected components of probability >= the candidate
threshold, each mapped back to the source matrix (centre, mask, equivalent diameter in mm
from Pixel Spacing / Imager Pixel Spacing; an image whose spacing is absent or zero, as
on many CR, gets no size in mm: :func:`measured_spacing`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.cxr_nodule.findings import Detection, NoduleFindings, detect_components
from models.radiograph import Geometry, to_model

__all__ = [
    "DETAIL_GAIN", "DETAIL_SIGMA", "INPUT_NAME", "MODEL_SIZE", "OUTPUT_NAME",
    "detail_sigma", "measured_spacing", "model_detections", "model_input", "postprocess", "preprocess", "sigmoid",
]

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MODEL_SIZE = 256
DETAIL_SIGMA = 3.0
DETAIL_GAIN = 10.0


def detail_sigma(size: int) -> float:
    """Gaussian sigma (model pixels) of the detail channel for an ``size`` x ``size`` input."""
    return DETAIL_SIGMA * size / MODEL_SIZE


def model_input(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """``(2, H, W)`` float32: the normalised image and its local detail.

    ``sigma`` defaults to :func:`detail_sigma` of the image's width (pass it explicitly for a
    crop of a larger image).
    """
    image = np.asarray(image, dtype=np.float32)
    sigma = detail_sigma(image.shape[-1]) if sigma is None else sigma
    detail = np.clip(DETAIL_GAIN * (image - ndimage.gaussian_filter(image, sigma)), -1.0, 1.0)
    return np.stack([image, detail]).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def preprocess(series: Sequence[Dataset], size: int = MODEL_SIZE) -> dict[str, np.ndarray]:
    """``{"image": (N, 2, size, size) float32}`` for the radiographs of ``series``."""
    if len(series) == 0:
        raise ValueError("empty series")
    return {INPUT_NAME: np.stack([model_input(to_model(ds, size)[0]) for ds in series])}


def measured_spacing(ds: Dataset) -> tuple[float, float] | None:
    """``(row, column)`` spacing in mm from Pixel Spacing, else Imager Pixel Spacing.

    ``None`` when neither holds two positive finite numbers (e.g. ``0\\0`` on a CR):
    such an image is analysed, but nothing on it is measured in mm.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = [float(v) for v in ds.get(keyword) or ()]
        except (TypeError, ValueError):
            continue
        if len(value) == 2 and all(np.isfinite(v) and v > 0 for v in value):
            return value[0], value[1]
    return None


def model_detections(logits: np.ndarray, candidate_threshold: float) -> list[tuple[float, float, float, np.ndarray]]:
    """Components of one ``(1, H, W)`` or ``(H, W)`` logit map, on the model grid."""
    return detect_components(sigmoid(np.asarray(logits, dtype=np.float32).reshape(logits.shape[-2:])),
                             candidate_threshold)


def postprocess(
    series: Sequence[Dataset],
    outputs: Mapping[str, np.ndarray],
    *,
    candidate_threshold: float,
    score_threshold: float,
    size: int = MODEL_SIZE,
) -> NoduleFindings:
    """Turn ``{"logits": (N, 1, H, W)}`` into :class:`NoduleFindings` on the source matrices."""
    logits = np.asarray(outputs[OUTPUT_NAME])
    if logits.ndim != 4 or logits.shape[0] != len(series):
        raise ValueError(f"logits must be (N={len(series)}, 1, H, W), got {logits.shape}")
    candidates: list[list[Detection]] = []
    spacings: list[float] = []
    for ds, image_logits in zip(series, logits):
        geometry = Geometry(int(ds.Rows), int(ds.Columns), image_logits.shape[-1], *_padding(ds), max(int(ds.Rows), int(ds.Columns)))
        measured = measured_spacing(ds)
        spacing = (measured[0] + measured[1]) / 2.0 if measured else float("nan")
        spacings.append(spacing)
        found = []
        for row, col, score, mask in model_detections(image_logits, candidate_threshold):
            source_mask = geometry.mask_to_source(mask)
            if not source_mask.any():
                continue
            r, c = geometry.to_source(row, col)
            diameter_px = 2.0 * np.sqrt(source_mask.sum() / np.pi)
            found.append(Detection(float(r), float(c), float(diameter_px * spacing), float(score), source_mask,
                                   float(diameter_px)))
        candidates.append(sorted(found, key=lambda d: -d.score))
    return NoduleFindings(candidates, float(score_threshold), spacings)


def _padding(ds: Dataset) -> tuple[int, int]:
    rows, cols = int(ds.Rows), int(ds.Columns)
    side = max(rows, cols)
    return (side - rows) // 2, (side - cols) // 2
