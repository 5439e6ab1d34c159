"""The head CT overlay: a slice in its 0-80 HU window with the patch grid and the hematoma
patches drawn over it (the secondary capture a radiologist pages through)."""
from __future__ import annotations

import functools

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut
from scipy import ndimage

from models.head_ct_hematoma.preprocess import patches_to_pixels

__all__ = ["WINDOW_HU", "render_overlay"]

WINDOW_HU: tuple[float, float] = (0.0, 80.0)
_GRID_COLOUR = np.array([90.0, 160.0, 255.0])
_GRID_ALPHA = 0.18
_HEMATOMA_COLOUR = np.array([255.0, 0.0, 0.0])
_HEMATOMA_ALPHA = 0.35


def render_overlay(image: Dataset, patch_mask: np.ndarray, patch_size: int) -> np.ndarray:
    """Draw the hematoma patches of one slice over its 0-80 HU window.

    Parameters
    ----------
    image:
        The CT slice (with Rescale Slope/Intercept).
    patch_mask:
        ``(grid, grid)`` bool, the slice's hematoma patches.
    patch_size:
        Patch edge in pixels.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols, 3)`` uint8: grey window, faint patch grid, hematoma patches
        filled semi-transparent red and outlined in red.
    """
    hu = apply_modality_lut(image.pixel_array, image).astype(np.float32)
    low, high = WINDOW_HU
    grey = np.clip((hu - low) / (high - low), 0.0, 1.0) * 255.0
    rows, cols = grey.shape
    rgb = np.repeat(np.rint(grey).astype(np.uint8)[..., np.newaxis], 3, axis=2)

    # only the grid lines and the hematoma patches are blended: work on those pixels alone
    grid = _grid_lines(rows, cols, *patch_mask.shape)
    pixels = patches_to_pixels(patch_mask, rows, cols)
    changed = np.flatnonzero(grid | pixels)
    blended = np.repeat(grey.reshape(-1)[changed][:, np.newaxis], 3, axis=1)
    on_grid = grid.reshape(-1)[changed]
    blended[on_grid] = (1.0 - _GRID_ALPHA) * blended[on_grid] + _GRID_ALPHA * _GRID_COLOUR
    if patch_mask.any():
        on_patch = pixels.reshape(-1)[changed]
        blended[on_patch] = (1.0 - _HEMATOMA_ALPHA) * blended[on_patch] + _HEMATOMA_ALPHA * _HEMATOMA_COLOUR
        blended[_outline(pixels).reshape(-1)[changed]] = _HEMATOMA_COLOUR
    rgb.reshape(-1, 3)[changed] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return rgb


def _outline(pixels: np.ndarray) -> np.ndarray:
    """The pixels of ``pixels`` (bool) that touch the outside: eroded within their bounding box only."""
    outline = np.zeros_like(pixels)
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    inside = pixels[box]
    outline[box] = inside & ~ndimage.binary_erosion(inside, border_value=0)
    return outline


@functools.lru_cache(maxsize=8)
def _grid_lines(rows: int, cols: int, grid_r: int, grid_c: int) -> np.ndarray:
    """``(rows, cols)`` bool: the first row and column of every patch (read-only, shared)."""
    cell_r = (np.arange(rows) * grid_r) // rows
    cell_c = (np.arange(cols) * grid_c) // cols
    grid = np.zeros((rows, cols), dtype=bool)
    grid[np.flatnonzero(np.diff(cell_r, prepend=-1)), :] = True
    grid[:, np.flatnonzero(np.diff(cell_c, prepend=-1))] = True
    grid.flags.writeable = False
    return grid
