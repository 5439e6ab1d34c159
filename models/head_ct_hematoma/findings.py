"""What the head CT hematoma model found in one series."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CLASS_NAMES", "HEMATOMA", "HematomaFindings"]

CLASS_NAMES: tuple[str, ...] = ("background", "brain", "hematoma", "bone")
"""Patch classes, in the order of the network's output channels."""

HEMATOMA = CLASS_NAMES.index("hematoma")


@dataclass(frozen=True)
class HematomaFindings:
    """Per-patch classification of a head CT series.

    Parameters
    ----------
    patch_classes:
        ``(n_slices, grid, grid)`` uint8, the most probable class of each patch, slices in
        the order of the sorted series.
    hematoma_probability:
        ``(n_slices, grid, grid)`` float32, the softmax probability of "hematoma".
    patch_size:
        Patch edge in pixels (16 for a 512² slice cut into a 32×32 grid).
    min_patches:
        The series is called positive when at least this many patches are hematoma.
    min_probability:
        A patch is a hematoma candidate when hematoma is its most probable class and its
        hematoma probability is at least this (0: the most probable class alone).
    """

    patch_classes: np.ndarray
    hematoma_probability: np.ndarray
    patch_size: int = 16
    min_patches: int = 1
    min_probability: float = 0.0

    @property
    def candidate_mask(self) -> np.ndarray:
        """``(n_slices, grid, grid)`` bool: every patch whose most probable class is hematoma, with a
        hematoma probability of at least ``min_probability``."""
        mask = self.patch_classes == HEMATOMA
        return mask & (self.hematoma_probability >= self.min_probability) if self.min_probability > 0 else mask

    @property
    def candidate_patch_count(self) -> int:
        """Number of candidate hematoma patches, before the series decision."""
        return int(self.candidate_mask.sum())

    @property
    def present(self) -> bool:
        """Whether the series is called positive: at least ``min_patches`` candidates."""
        return self.candidate_patch_count >= self.min_patches

    @property
    def hematoma_mask(self) -> np.ndarray:
        """The reported hematoma patches: the candidates of a positive series, none otherwise."""
        return self.candidate_mask if self.present else np.zeros_like(self.candidate_mask)

    @property
    def hematoma_patch_count(self) -> int:
        """Number of reported hematoma patches in the series."""
        return int(self.hematoma_mask.sum())

    @property
    def affected_slices(self) -> list[int]:
        """Indices (into the sorted series) of slices with reported hematoma patches."""
        return [int(i) for i in np.flatnonzero(self.hematoma_mask.any(axis=(1, 2)))]

    def summary(self) -> dict[str, object]:
        """A loggable summary: no pixel data, no patient data."""
        return {
            "hemorrhage_present": self.present,
            "candidate_patches": self.candidate_patch_count,
            "hematoma_patches": self.hematoma_patch_count,
            "affected_slices": len(self.affected_slices),
        }
