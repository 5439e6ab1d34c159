"""Training batches of the brain MR networks: labelled slices and random crops of them."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from models.brain_mr.cases import Case
from models.brain_mr.classes import TUMOR, UNLABELLED
from models.brain_mr.preprocess import normalise, pad_to_multiple, stack_context

__all__ = ["crop_batch", "labelled_slices"]


def labelled_slices(cases: Sequence[Case], context: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalised input slices (``context`` neighbours stacked) and labels of every slice with a labelled voxel."""
    images, labels = [], []
    for case in cases:
        norm = stack_context(normalise(case.volume), context)
        for k in range(len(norm)):
            if (case.labels[k] != UNLABELLED).any():
                images.append(norm[k])
                labels.append(case.labels[k])
    if not images:
        raise ValueError("no labelled slice in the training cases")
    return images, labels


def crop_batch(images, labels, distance_w, idx, crop, rng):
    """Random crops (half near the tumour when the slice has one), scaled, flipped; padded to multiples of 8."""
    xs, ys, ws = [], [], []
    for i in idx:
        img, lab = images[i], labels[i]
        rows, cols = img.shape[-2:]
        size_r, size_c = min(crop, rows), min(crop, cols)
        tumor = np.argwhere(lab == TUMOR)
        if tumor.size and rng.random() < 0.5:
            r, c = tumor[rng.integers(len(tumor))]
            r0 = int(np.clip(r - rng.integers(size_r // 4, 3 * size_r // 4), 0, rows - size_r))
            c0 = int(np.clip(c - rng.integers(size_c // 4, 3 * size_c // 4), 0, cols - size_c))
        else:
            r0 = int(rng.integers(0, rows - size_r + 1))
            c0 = int(rng.integers(0, cols - size_c + 1))
        window = (slice(r0, r0 + size_r), slice(c0, c0 + size_c))
        x = img[(slice(None), *window)] * np.float32(rng.uniform(0.85, 1.15))
        y = lab[window]
        w = distance_w[i][window] if distance_w is not None else np.ones_like(x)
        if rng.random() < 0.5:
            x, y, w = x[..., ::-1], y[:, ::-1], w[:, ::-1]
        if len(x) > 1 and rng.random() < 0.5:  # 2.5D: the neighbours above and below swap
            x = x[::-1]
        xs.append(x)
        ys.append(y)
        ws.append(w)
    x = pad_to_multiple(np.stack(xs))
    y = pad_to_multiple(np.stack(ys).astype(np.int64))
    w = pad_to_multiple(np.stack(ws))
    return (np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y),
            np.ascontiguousarray(w, dtype=np.float32))
