"""Smooth random fields shared by the phantom generators: a coarse grid of Gaussian draws,
upsampled (linearly through interpolation matrices, or by ``scipy.ndimage.zoom``)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["lerp_matrix", "lerp_noise", "zoomed_noise"]


def lerp_noise(rng: np.random.Generator, shape: tuple[int, int, int], cells: int) -> np.ndarray:
    """Unit-variance-ish smooth noise: a coarse random grid upsampled per slice."""
    n, h, w = shape
    coarse = rng.standard_normal((n, cells + 1, cells + 1)).astype(np.float32)
    return lerp_matrix(h, cells + 1) @ coarse @ lerp_matrix(w, cells + 1).T / 0.6


def lerp_matrix(out_size: int, in_size: int) -> np.ndarray:
    """``(out_size, in_size)`` matrix of linear interpolation weights."""
    pos = np.linspace(0.0, in_size - 1.0, out_size)
    lo = np.minimum(pos.astype(int), in_size - 2) if in_size > 1 else np.zeros(out_size, int)
    frac = (pos - lo).astype(np.float32)
    m = np.zeros((out_size, in_size), dtype=np.float32)
    m[np.arange(out_size), lo] = 1.0 - frac
    if in_size > 1:
        m[np.arange(out_size), lo + 1] = frac
    return m


def zoomed_noise(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    cells: tuple[int, ...],
    *,
    order: int = 3,
    mode: str = "constant",
    dtype: type = np.float64,
) -> np.ndarray:
    """A ``cells`` grid of standard normal draws (as ``dtype``) zoomed with spline ``order``
    and ``mode`` to at least ``shape``, cut to ``shape``."""
    coarse = rng.standard_normal(cells).astype(dtype, copy=False)
    zoom = [s / c for s, c in zip(shape, cells)]
    out = ndimage.zoom(coarse, zoom, order=order, mode=mode)
    return out[tuple(slice(0, s) for s in shape)]
