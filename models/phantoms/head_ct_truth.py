"""Head CT truth: the label vocabulary and the patch rule that makes the training target.

Pixel truth uses :data:`TRUTH_CLASSES`: air, scalp and head holder are background; skull is
bone; brain, CSF and ventricles are brain; hematoma is hematoma (a pixel is hematoma when at
least half of its slice thickness is). A 16x16-pixel patch is hematoma when hematoma pixels
cover at least :data:`HEMATOMA_PATCH_FRACTION` of it; otherwise it takes the majority class
among background / brain / bone, hematoma pixels counting as brain (ties to the first listed).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "BACKGROUND", "BONE", "BRAIN", "HEMATOMA", "HEMATOMA_PATCH_FRACTION", "PATCH_SIZE", "TRUTH_CLASSES",
    "hematoma_patch_count", "patch_labels_from_pixels",
]

PATCH_SIZE = 16
"""Patch edge in pixels."""

HEMATOMA_PATCH_FRACTION = 0.25
"""Minimum fraction of a patch covered by hematoma for the patch to be "hematoma"."""

TRUTH_CLASSES: tuple[str, ...] = ("background", "brain", "hematoma", "bone")
"""The phantom's pixel and patch label values 0..3, by name."""

BACKGROUND, BRAIN, HEMATOMA, BONE = (TRUTH_CLASSES.index(c) for c in ("background", "brain", "hematoma", "bone"))


def patch_labels_from_pixels(pixel_labels: np.ndarray, patch: int = PATCH_SIZE) -> np.ndarray:
    """Apply the patch rule to ``(n, rows, cols)`` pixel labels.

    A patch is hematoma when hematoma covers >= 25 % of it; otherwise the majority of
    background / brain (hematoma counted as brain) / bone, ties to the first listed.

    Returns
    -------
    np.ndarray
        ``(n, rows // patch, cols // patch)`` uint8.
    """
    n, rows, cols = pixel_labels.shape
    blocks = pixel_labels.reshape(n, rows // patch, patch, cols // patch, patch)
    counts = np.stack([(blocks == c).sum(axis=(2, 4)) for c in range(len(TRUTH_CLASSES))], -1)
    hem = counts[..., HEMATOMA] >= HEMATOMA_PATCH_FRACTION * patch * patch
    majority = np.stack(
        [counts[..., BACKGROUND], counts[..., BRAIN] + counts[..., HEMATOMA], counts[..., BONE]], -1
    ).argmax(-1)
    classes = np.array([BACKGROUND, BRAIN, BONE], dtype=np.uint8)[majority]
    return np.where(hem, HEMATOMA, classes).astype(np.uint8)


def hematoma_patch_count(labels: np.ndarray) -> int:
    """Number of hematoma patches of ``labels``."""
    return int((patch_labels_from_pixels(labels) == HEMATOMA).sum())
