"""What the chest CT landmark model found in one series."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DEFAULT_FRACTIONS", "LANDMARKS", "LandmarkFindings", "RepresentativeSlice", "representative_slices"]

LANDMARKS: tuple[str, ...] = ("apex", "carina", "diaphragm")
"""The three position markers, in the order of the network's outputs."""

DEFAULT_FRACTIONS: tuple[tuple[str, float], ...] = (
    ("upper zone", 1.0 / 6.0),
    ("middle zone", 0.5),
    ("lower zone", 5.0 / 6.0),
)
"""Representative lung-parenchyma slices: the centres of the upper, middle and lower thirds
of the span from the apex (fraction 0) to the diaphragm slice (fraction 1)."""


@dataclass(frozen=True)
class RepresentativeSlice:
    """A lung-parenchyma slice derived from the markers.

    ``fraction`` is its place between apex (0) and diaphragm (1); ``index`` is into the
    sorted series.
    """

    label: str
    fraction: float
    index: int


@dataclass(frozen=True)
class LandmarkFindings:
    """Per-slice scores and the picked marker slices of one chest CT series.

    Parameters
    ----------
    scores:
        ``(n_slices, 3)`` float32 sigmoid scores, columns in :data:`LANDMARKS` order, rows
        in the order of the sorted series (0 = most inferior).
    picks:
        Landmark → index of its highest-scoring slice.
    representative:
        The representative slices derived from the picks.
    """

    scores: np.ndarray
    picks: dict[str, int]
    representative: tuple[RepresentativeSlice, ...] = field(default_factory=tuple)

    def score(self, landmark: str) -> float:
        """The score of the picked slice of ``landmark``."""
        return float(self.scores[self.picks[landmark], LANDMARKS.index(landmark)])

    @property
    def selected_indices(self) -> list[int]:
        """Every selected slice (markers, then representative slices), without repeats."""
        out: list[int] = []
        for i in [self.picks[name] for name in LANDMARKS] + [r.index for r in self.representative]:
            if i not in out:
                out.append(i)
        return out

    def summary(self) -> dict[str, object]:
        """A loggable summary: slice indices and scores, no patient data."""
        return {
            "picks": {name: int(self.picks[name]) for name in LANDMARKS},
            "scores": {name: round(self.score(name), 4) for name in LANDMARKS},
            "representative": [int(r.index) for r in self.representative],
        }


def representative_slices(
    apex: int, diaphragm: int, n_slices: int,
    fractions: tuple[tuple[str, float], ...] = DEFAULT_FRACTIONS,
) -> tuple[RepresentativeSlice, ...]:
    """Slices at ``fractions`` of the way from the apex slice to the diaphragm slice.

    Parameters
    ----------
    apex, diaphragm:
        Indices of the two markers in the sorted series.
    n_slices:
        Slices in the series (results are clipped to it).
    fractions:
        ``(label, fraction)`` pairs; 0 is the apex slice, 1 the diaphragm slice.

    Returns
    -------
    tuple[RepresentativeSlice, ...]
    """
    out = []
    for label, f in fractions:
        if not 0.0 <= float(f) <= 1.0:
            raise ValueError(f"fraction {f!r} of {label!r} must lie in [0, 1]")
        index = int(np.clip(np.rint(apex + float(f) * (diaphragm - apex)), 0, n_slices - 1))
        out.append(RepresentativeSlice(str(label), float(f), index))
    return tuple(out)
