"""What the pneumonia model found in one radiograph."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PneumoniaFinding", "PneumoniaFindings"]


@dataclass(frozen=True)
class PneumoniaFinding:
    """Probability, heatmap and heatmap location of one radiograph.

    ``heatmap`` is the class activation map on the source matrix, 0..1 (1 at its
    maximum); ``side`` (``"right"``/``"left"``, the patient's) and ``zone``
    (``"upper"``/``"middle"``/``"lower"``) say where its hot region lies; ``box`` is
    ``(row0, col0, row1, col1)`` of that region (source pixels, inclusive).
    """

    probability: float
    heatmap: np.ndarray = field(repr=False)
    side: str
    zone: str
    box: tuple[int, int, int, int]
    threshold: float

    @property
    def present(self) -> bool:
        return self.probability >= self.threshold

    @property
    def location(self) -> str:
        """Plain-language location, e.g. ``"right lower zone"``."""
        return f"{self.side} {self.zone} zone"


@dataclass(frozen=True)
class PneumoniaFindings:
    """One :class:`PneumoniaFinding` per image of the series (sorted series order)."""

    images: list[PneumoniaFinding]

    def summary(self) -> dict[str, object]:
        """A loggable summary: no pixel data, no patient data."""
        return {
            "pneumonia_present": any(f.present for f in self.images),
            "max_probability": round(max((f.probability for f in self.images), default=0.0), 4),
            "locations": [f.location for f in self.images if f.present],
        }
