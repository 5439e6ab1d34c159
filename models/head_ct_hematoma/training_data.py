"""Training slices of the head CT hematoma classifier: sampled phantom slices, grid-aligned crops."""
from __future__ import annotations

import numpy as np

from models.head_ct_hematoma.findings import CLASS_NAMES, HEMATOMA
from models.head_ct_hematoma.preprocess import window
from models.head_ct_hematoma.families import generate
from models.phantoms.head_ct_truth import TRUTH_CLASSES

__all__ = ["CROP", "GRID", "crop_batch", "pack_labels", "sample_slices", "training_slices"]

CROP = 256
"""Edge of a training crop (pixels)."""
GRID = 16
"""Edge of one classified patch (pixels)."""

_TO_CLASS = np.array([CLASS_NAMES.index(name) for name in TRUTH_CLASSES], dtype=np.uint8)
"""The phantom's truth label values → this pack's class values (matched by name)."""


def training_slices(
    seeds: range, slices: int, extra: int, rng: np.random.Generator, styles: bool = False, family: str = "a",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """HU slices (int16) and patch labels sampled from the training phantoms of ``family``
    (``styles``: family A with its randomised styles)."""
    hu_out, lab_out = [], []
    for s in seeds:
        phantom = generate("a-styled" if styles else family, int(s), slices)
        hu, labels = sample_slices(phantom.hu, phantom.patch_labels, extra, rng)
        hu_out += hu
        lab_out += labels
    return hu_out, lab_out


def pack_labels(truth_patches: np.ndarray) -> np.ndarray:
    """A phantom's truth patch labels as this pack's class values (same dtype)."""
    return _TO_CLASS[truth_patches].astype(truth_patches.dtype)


def sample_slices(
    hu: np.ndarray, truth_patches: np.ndarray, extra: int, rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every slice of one phantom with a hematoma patch plus ``extra`` others: HU slices and patch labels."""
    patch_labels = pack_labels(truth_patches)
    hem = (patch_labels == HEMATOMA).any(axis=(1, 2))
    others = np.flatnonzero(~hem)
    pick = list(np.flatnonzero(hem))
    pick += list(rng.choice(others, size=min(extra, others.size), replace=False))
    return [hu[k].copy() for k in sorted(pick)], [patch_labels[k].copy() for k in sorted(pick)]


def crop_batch(
    hu: list[np.ndarray], labels: list[np.ndarray], idx: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Grid-aligned random crops (half near a hematoma patch when there is one), flipped; a slice
    no larger than a crop (a hard crop, say) is taken whole."""
    xs, ys = [], []
    for i in idx:
        lab = labels[i]
        grid = lab.shape[0]
        cells = min(CROP // GRID, grid)
        hem = np.argwhere(lab == HEMATOMA)
        if hem.size and rng.random() < 0.5:
            r, c = hem[rng.integers(len(hem))]
            r0 = int(np.clip(r - rng.integers(2, cells - 2), 0, grid - cells))
            c0 = int(np.clip(c - rng.integers(2, cells - 2), 0, grid - cells))
        else:
            r0 = int(rng.integers(0, grid - cells + 1))
            c0 = int(rng.integers(0, grid - cells + 1))
        h = hu[i][r0 * GRID:(r0 + cells) * GRID, c0 * GRID:(c0 + cells) * GRID]
        y = lab[r0:r0 + cells, c0:c0 + cells]
        if rng.random() < 0.5:
            h, y = h[:, ::-1], y[:, ::-1]
        xs.append(h)
        ys.append(y)
    x = window(np.stack(xs))
    return np.ascontiguousarray(x), np.ascontiguousarray(np.stack(ys).astype(np.int64))
