"""Brain MR training and evaluation cases: volumes with label volumes, from phantoms or the user."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from models.brain_mr.classes import CLASS_NAMES, UNLABELLED

__all__ = ["Case", "phantom_cases", "thin_labels", "thinned"]


@dataclass
class Case:
    """One training or evaluation volume."""

    volume: np.ndarray
    labels: np.ndarray
    voxel_ml: float
    name: str = ""


def phantom_cases(seeds: Sequence[int], contrast: str = "T1", styles: bool = False) -> list[Case]:
    """Phantom volumes and their label volumes (tumour unless ``seed % 4 == 3``; ``styles``:
    with their randomised scanner and patient styles)."""
    from models.phantoms.brain_mr import TRUTH_CLASSES, generate_brain_mr

    to_class = np.array([CLASS_NAMES.index(name) for name in TRUTH_CLASSES], dtype=np.uint8)
    cases = []
    for s in seeds:
        p = generate_brain_mr(int(s), tumor=int(s) % 4 != 3, contrasts=(contrast,), dicom=False, styles=styles)
        labels = to_class[p.labels].astype(p.labels.dtype)
        cases.append(Case(p.images[contrast], labels, p.voxel_ml, f"seed {int(s)}"))
    return cases


def thin_labels(labels: np.ndarray, every: int, offset: int = 0) -> np.ndarray:
    """Keep the labels of every ``every``-th slice (from ``offset``); the rest UNLABELLED."""
    out = np.full_like(labels, UNLABELLED)
    out[offset::every] = labels[offset::every]
    return out


def thinned(cases: Sequence[Case], every: int, seed: int) -> list[Case]:
    """``cases`` with only every ``every``-th slice labelled (a random offset per case, drawn from ``seed``)."""
    if every <= 1:
        return list(cases)
    rng = np.random.default_rng(seed + 7)
    return [Case(c.volume, thin_labels(c.labels, every, int(rng.integers(every))), c.voxel_ml, c.name)
            for c in cases]
