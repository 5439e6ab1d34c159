"""Pre- and post-processing of the CXR pneumonia model (numpy/scipy only).

Input ``image`` ``(N, 1, 256, 256)``: as for the nodule model (dense = high, MONOCHROME1
inverted, padded square, 256 x 256, percentile-normalised). Outputs ``probability``
``(N, 1)`` and ``features`` ``(N, C, 16, 16)`` (the last convolutional block). The CAM is
``ReLU(sum_k w_k A_k)`` with the linear head's weights ``w`` from ``model.json``, mapped
back to the source matrix bilinearly; its hot region (>= 50 % of its maximum, largest
component) gives the side (from Patient Orientation) and the zone (:mod:`.cam`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from pydicom import Dataset

from models.radiograph import to_model
from models.radiograph import Geometry, patient_side
from models.cxr_pneumonia.cam import cam, hot_region, zone_of_row
from models.cxr_pneumonia.findings import PneumoniaFinding, PneumoniaFindings

__all__ = ["FEATURES_NAME", "INPUT_NAME", "MODEL_SIZE", "PROBABILITY_NAME", "postprocess", "preprocess"]

INPUT_NAME = "image"
PROBABILITY_NAME = "probability"
FEATURES_NAME = "features"
MODEL_SIZE = 256


def preprocess(series: Sequence[Dataset]) -> dict[str, np.ndarray]:
    """``{"image": (N, 1, 256, 256) float32}``."""
    if len(series) == 0:
        raise ValueError("empty series")
    # the heatmap overlay is drawn on the full matrix: decode it in full once, here
    images = [to_model(ds, MODEL_SIZE, reduced_decode=False)[0] for ds in series]
    return {INPUT_NAME: np.stack(images)[:, np.newaxis]}


def postprocess(
    series: Sequence[Dataset], outputs: Mapping[str, np.ndarray], *, head_weights: np.ndarray, threshold: float
) -> PneumoniaFindings:
    """Probability, CAM on the source matrix and its location for every image."""
    probability = np.asarray(outputs[PROBABILITY_NAME], dtype=np.float32).reshape(-1)
    features = np.asarray(outputs[FEATURES_NAME])
    if len(probability) != len(series) or len(features) != len(series):
        raise ValueError(f"outputs cover {len(probability)} images, the series has {len(series)}")
    maps = cam(features, head_weights)
    images = []
    for ds, p, heat in zip(series, probability, maps):
        rows, cols = int(ds.Rows), int(ds.Columns)
        side_ = max(rows, cols)
        geometry = Geometry(rows, cols, MODEL_SIZE, (side_ - rows) // 2, (side_ - cols) // 2, side_)
        model_heat = _upsample(heat, MODEL_SIZE)
        source_heat = np.clip(geometry.smooth_to_source(model_heat), 0.0, 1.0)
        (row, col), box = hot_region(source_heat)
        images.append(PneumoniaFinding(
            probability=float(p),
            heatmap=source_heat.astype(np.float32),
            side=patient_side(ds, col),
            zone=zone_of_row(row, rows),
            box=box,
            threshold=float(threshold),
        ))
    return PneumoniaFindings(images)


def _upsample(heat: np.ndarray, size: int) -> np.ndarray:
    """Bilinear, pixel-area aligned ``(h, w)`` → ``(size, size)``."""
    from scipy import ndimage

    h = heat.shape[0]
    centres = (np.arange(size) + 0.5) * h / size - 0.5
    rr, cc = np.meshgrid(centres, centres, indexing="ij")
    return ndimage.map_coordinates(heat.astype(np.float32), [rr, cc], order=1, mode="nearest")
