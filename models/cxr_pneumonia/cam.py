"""Class activation maps (Grad-CAM of a GAP + linear head) and their location, numpy only."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["LUNG_ROWS", "cam", "hot_region", "zone_of_row"]

LUNG_ROWS: tuple[float, float] = (0.08, 0.62)
"""Rows (fractions of the image height) taken as the lung span for the zone names: upper,
middle and lower zones are its thirds. Chosen for PA radiographs framed like the phantoms
(a 430 mm field with the lung apices near the top)."""


def cam(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``ReLU(sum_k w_k A_k)`` normalised to 0..1 per image.

    Parameters
    ----------
    features:
        ``(N, C, h, w)`` last-block feature maps.
    weights:
        ``(C,)`` weights of the linear head.

    Returns
    -------
    numpy.ndarray
        ``(N, h, w)`` float32; an all-zero map stays zero.
    """
    features = np.asarray(features, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32).reshape(-1)
    if features.ndim != 4 or features.shape[1] != weights.shape[0]:
        raise ValueError(f"features {features.shape} do not match {weights.shape[0]} head weights")
    maps = np.maximum(np.einsum("nchw,c->nhw", features, weights), 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float32)


def hot_region(heatmap: np.ndarray, level: float = 0.5) -> tuple[tuple[float, float], tuple[int, int, int, int]]:
    """Heat-weighted centroid and bounding box of the largest region ``>= level``.

    Returns
    -------
    ((row, col), (row0, col0, row1, col1))
    """
    hot = heatmap >= level * float(heatmap.max()) if heatmap.max() > 0 else np.ones_like(heatmap, bool)
    labels, n = ndimage.label(hot)
    if n > 1:
        sums = ndimage.sum(heatmap, labels, index=np.arange(1, n + 1))
        hot = labels == int(np.argmax(sums)) + 1
    rows, cols = np.nonzero(hot)
    weights = heatmap[rows, cols] + 1e-6
    centre = (float(np.average(rows, weights=weights)), float(np.average(cols, weights=weights)))
    return centre, (int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max()))


def zone_of_row(row: float, rows: int) -> str:
    """``upper``, ``middle`` or ``lower``: the third of :data:`LUNG_ROWS` the row falls in."""
    top, bottom = LUNG_ROWS[0] * rows, LUNG_ROWS[1] * rows
    third = (bottom - top) / 3.0
    if row < top + third:
        return "upper"
    if row < top + 2 * third:
        return "middle"
    return "lower"
