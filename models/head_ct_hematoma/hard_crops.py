"""Hard crops: training crops centred where a trained model errs on its own training phantoms.

A patch classifier trained on both phantom families still calls a few patches of normal tissue
hematoma with some confidence (partial-volume bone at the skull base and vertex of family B,
above all) and gives the smallest bleeds (two to six patches) too little. Fine-tuning on crops
centred on exactly those patches moves both apart, so that a lower probability cut finds the
small bleeds without calling the look-alikes.

For each training phantom the model runs on every slice; from the patches of normal tissue
with a hematoma probability of at least :data:`FALSE_POSITIVE_PROBABILITY` the most confident
``false_positives`` are taken, from the hematoma patches below :data:`WEAK_PROBABILITY` the
least confident ``weak`` ones, and a 256x256 grid-aligned crop is cut around each (the patch
at a random place 3..12 cells from the crop's edge).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from models.head_ct_hematoma.findings import HEMATOMA
from models.head_ct_hematoma.preprocess import INPUT_NAME, OUTPUT_NAME, window
from models.head_ct_hematoma.training_data import CROP, GRID, pack_labels
from models.training import onnx_session

__all__ = ["FALSE_POSITIVE_PROBABILITY", "WEAK_PROBABILITY", "HardCrop", "mine"]

FALSE_POSITIVE_PROBABILITY = 0.3
"""A patch of normal tissue at or above this hematoma probability is a false-positive candidate."""
WEAK_PROBABILITY = 0.999
"""A hematoma patch below this hematoma probability is a weak one."""
SEED = 7
"""Seed of the crop placement."""


@dataclass(frozen=True)
class HardCrop:
    """One 256x256 HU crop (int16) and its 16x16 patch labels (the pack's classes)."""

    hu: np.ndarray
    labels: np.ndarray


def mine(
    model_path: Path, plan: Mapping[str, range], source: Callable[[str, int], Any], *,
    false_positives: int = 6, weak: int = 4, batch_size: int = 8,
) -> list[HardCrop]:
    """Hard crops of every phantom of ``plan`` (family -> seeds) under the ONNX graph ``model_path``:
    at most ``false_positives`` around look-alike patches and ``weak`` around weak hematoma
    patches per phantom."""
    session = onnx_session(model_path, 1)
    rng = np.random.default_rng(SEED)
    cells = CROP // GRID
    out: list[HardCrop] = []
    for family, seeds in plan.items():
        for seed in seeds:
            phantom = source(family, int(seed))
            labels = pack_labels(phantom.patch_labels)
            x = window(phantom.hu)
            logits = np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + batch_size]})[0]
                                     for i in range(0, len(x), batch_size)])
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = (e / e.sum(axis=1, keepdims=True))[:, HEMATOMA]
            grid = labels.shape[1]
            for mask, cap, most_confident in (
                ((p >= FALSE_POSITIVE_PROBABILITY) & (labels != HEMATOMA), false_positives, True),
                ((labels == HEMATOMA) & (p < WEAK_PROBABILITY), weak, False),
            ):
                points = np.argwhere(mask)
                values = p[mask]
                order = np.argsort(-values) if most_confident else np.argsort(values)
                for z, r, c in points[order[:cap]]:
                    r0 = int(np.clip(r - rng.integers(3, 13), 0, grid - cells))
                    c0 = int(np.clip(c - rng.integers(3, 13), 0, grid - cells))
                    out.append(HardCrop(phantom.hu[z, r0 * GRID:(r0 + cells) * GRID, c0 * GRID:(c0 + cells) * GRID].copy(),
                                        labels[z, r0:r0 + cells, c0:c0 + cells].copy()))
    return out
