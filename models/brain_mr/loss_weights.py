"""Loss terms and per-voxel weights of the brain MR training: soft Dice, boundary weightings."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from models.brain_mr.classes import CLASS_NAMES, TUMOR, UNLABELLED

__all__ = ["distance_weights", "soft_dice_loss", "tumor_boundary_weights"]

_N_CLASSES = len(CLASS_NAMES)


def soft_dice_loss(prob: Any, target: Any, mask: Any, eps: float = 1.0) -> Any:
    """1 - mean soft Dice of all classes (background included) over the labelled voxels of the batch."""
    from torch.nn import functional as F

    onehot = F.one_hot(target, _N_CLASSES).permute(0, 3, 1, 2).float() * mask[:, None]
    prob = prob * mask[:, None]
    inter = (prob * onehot).sum(dim=(0, 2, 3))
    denom = prob.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return 1.0 - ((2.0 * inter + eps) / (denom + eps)).mean()


def distance_weights(labels: np.ndarray, w0: float = 5.0, sigma: float = 3.0) -> np.ndarray:
    """``1 + w0 exp(-d² / 2σ²)``, ``d`` the distance in pixels to the nearest label boundary."""
    lab = labels.astype(np.int16)
    boundary = np.zeros(lab.shape, dtype=bool)
    boundary[:-1] |= lab[:-1] != lab[1:]
    boundary[1:] |= lab[:-1] != lab[1:]
    boundary[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    boundary[:, 1:] |= lab[:, :-1] != lab[:, 1:]
    if not boundary.any():
        return np.ones(lab.shape, dtype=np.float32)
    d = ndimage.distance_transform_edt(~boundary)
    return (1.0 + w0 * np.exp(-(d ** 2) / (2 * sigma ** 2))).astype(np.float32)


def tumor_boundary_weights(labels: np.ndarray, w0: float, sigma: float = 1.0) -> np.ndarray:
    """``1 + w0 exp(-d² / 2σ²)``, ``d`` the distance in pixels to the nearest tumour boundary (both sides)."""
    tumor = labels == TUMOR
    if not tumor.any():
        return np.ones(labels.shape, dtype=np.float32)
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        diff = tumor[tuple(a)] != tumor[tuple(b)]
        diff &= (labels[tuple(a)] != UNLABELLED) & (labels[tuple(b)] != UNLABELLED)
        edge[tuple(a)] |= diff
        edge[tuple(b)] |= diff
    if not edge.any():
        return np.ones(labels.shape, dtype=np.float32)
    d = ndimage.distance_transform_edt(~edge)
    return (1.0 + w0 * np.exp(-(d ** 2) / (2 * sigma ** 2))).astype(np.float32)
