"""What the head CT hematoma model found in one series."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cached_property

import numpy as np
from scipy import ndimage

__all__ = ["CLASS_NAMES", "HEMATOMA", "HematomaFindings", "SeriesCount", "largest_cluster"]

CLASS_NAMES: tuple[str, ...] = ("background", "brain", "hematoma", "bone")
"""Patch classes, in the order of the network's output channels."""

HEMATOMA = CLASS_NAMES.index("hematoma")


class SeriesCount(str, Enum):
    """What ``min_patches`` is compared with (``model.json``'s ``series_count``).

    * ``total``: every candidate patch of the series;
    * ``largest-cluster``: the candidates of the largest group of touching candidates (across
      faces, edges and corners, also between adjacent slices). A bleed is one connected
      region; scattered look-alikes (partial-volume bone at the skull base, say) are not, so
      a lower probability cut can find small bleeds without calling them.
    """

    TOTAL = "total"
    LARGEST_CLUSTER = "largest-cluster"


_TOUCHING = np.ones((3, 3, 3), dtype=bool)


def clusters(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The groups of touching ``True`` patches of ``(n_slices, grid, grid)`` ``mask``: a label per
    patch (0: none) and each label's size (index 0 unused)."""
    labels, n = ndimage.label(mask, structure=_TOUCHING)
    return labels, np.bincount(labels.ravel(), minlength=n + 1)


def largest_cluster(mask: np.ndarray) -> int:
    """Patches in the largest group of touching ``True`` patches of ``mask`` (0 when none)."""
    _, sizes = clusters(mask)
    return int(sizes[1:].max(initial=0))


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
    series_count:
        What ``min_patches`` is compared with (:class:`SeriesCount`); with
        ``largest-cluster`` only the clusters of at least ``min_patches`` are reported.
    """

    patch_classes: np.ndarray
    hematoma_probability: np.ndarray
    patch_size: int = 16
    min_patches: int = 1
    min_probability: float = 0.0
    series_count: SeriesCount = SeriesCount.TOTAL

    @cached_property
    def candidate_mask(self) -> np.ndarray:
        """``(n_slices, grid, grid)`` bool: every patch whose most probable class is hematoma, with a
        hematoma probability of at least ``min_probability``."""
        mask = self.patch_classes == HEMATOMA
        return mask & (self.hematoma_probability >= self.min_probability) if self.min_probability > 0 else mask

    @property
    def candidate_patch_count(self) -> int:
        """Number of candidate hematoma patches, before the series decision."""
        return int(self.candidate_mask.sum())

    @cached_property
    def series_patch_count(self) -> int:
        """The count compared with ``min_patches``: every candidate, or the largest cluster's."""
        if self.series_count is SeriesCount.LARGEST_CLUSTER:
            return largest_cluster(self.candidate_mask)
        return self.candidate_patch_count

    @property
    def present(self) -> bool:
        """Whether the series is called positive: a count (:attr:`series_patch_count`) of at least
        ``min_patches``."""
        return self.series_patch_count >= self.min_patches

    @cached_property
    def hematoma_mask(self) -> np.ndarray:
        """The reported hematoma patches: the candidates of a positive series (with
        ``largest-cluster``, those in clusters of at least ``min_patches``), none otherwise."""
        if not self.present:
            return np.zeros_like(self.candidate_mask)
        if self.series_count is SeriesCount.LARGEST_CLUSTER:
            labels, sizes = clusters(self.candidate_mask)
            return (sizes >= self.min_patches)[labels] & (labels > 0)
        return self.candidate_mask

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
