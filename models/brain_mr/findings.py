"""What the brain MR model found in one series."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.brain_mr.classes import CLASS_NAMES, TUMOR

__all__ = ["BrainMRFindings"]


@dataclass(frozen=True)
class BrainMRFindings:
    """Per-voxel labels of a brain MR series.

    Parameters
    ----------
    labels:
        ``(n_slices, rows, cols)`` uint8, values of :data:`CLASS_NAMES`, slices in the
        order of the sorted series.
    spacing:
        ``(row spacing, column spacing, slice spacing)`` in mm.
    """

    labels: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL."""
        row, col, slc = self.spacing
        return float(row * col * slc / 1000.0)

    def volumes_ml(self) -> dict[int, float]:
        """Label value → volume in mL, for every class except background."""
        counts = np.bincount(self.labels.ravel(), minlength=len(CLASS_NAMES))
        return {c: float(counts[c] * self.voxel_ml) for c in range(1, len(CLASS_NAMES))}

    def present(self) -> list[int]:
        """Label values (background excluded) with at least one voxel, ascending."""
        return [c for c in range(1, len(CLASS_NAMES)) if (self.labels == c).any()]

    @property
    def has_tumor(self) -> bool:
        return bool((self.labels == TUMOR).any())

    def summary(self) -> dict[str, object]:
        """A loggable summary: volumes only, no pixel or patient data."""
        return {
            "tumor_present": self.has_tumor,
            **{f"{CLASS_NAMES[c]}_ml": round(v, 2) for c, v in self.volumes_ml().items()},
        }
