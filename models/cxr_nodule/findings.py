"""Nodule detections of one radiograph, and how they are found in a probability map."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["Detection", "NoduleFindings", "detect_components"]


@dataclass(frozen=True)
class Detection:
    """One detected nodule, in source pixel coordinates.

    ``mask`` is the component on the source matrix; ``diameter_mm`` the equivalent
    diameter of its area (NaN when the image has no usable pixel spacing);
    ``diameter_px`` the same in source pixels; ``score`` the highest nodule probability
    inside it.
    """

    row: float
    col: float
    diameter_mm: float
    score: float
    mask: np.ndarray = field(repr=False)
    diameter_px: float = float("nan")

    @property
    def measured(self) -> bool:
        """Whether the detection has a physical size (the image had a usable pixel spacing)."""
        return bool(np.isfinite(self.diameter_mm))


@dataclass(frozen=True)
class NoduleFindings:
    """Detections per image of the series (image order = sorted series order).

    ``candidates`` holds every connected component; ``detections`` only those whose score
    reaches ``score_threshold`` (the operating point stored in ``model.json``).
    """

    candidates: list[list[Detection]]
    score_threshold: float
    pixel_spacing_mm: list[float]
    """Mean pixel spacing of each image; NaN where the image has none that can be used."""

    @property
    def detections(self) -> list[list[Detection]]:
        return [[d for d in dets if d.score >= self.score_threshold] for dets in self.candidates]

    @property
    def count(self) -> int:
        return sum(len(d) for d in self.detections)

    def summary(self) -> dict[str, object]:
        """A loggable summary: no pixel data, no patient data."""
        return {
            "nodules": self.count,
            "candidates": sum(len(d) for d in self.candidates),
            "max_score": round(max((d.score for ds in self.candidates for d in ds), default=0.0), 4),
        }


def detect_components(
    probability: np.ndarray, candidate_threshold: float, min_pixels: int = 2, mask_threshold: float = 0.5
) -> list[tuple[float, float, float, np.ndarray]]:
    """Connected components of ``probability >= candidate_threshold``.

    Returns
    -------
    list of (row, col, score, mask)
        Probability-weighted centroid, maximum probability, and the nodule's mask: the
        component's pixels with probability >= ``mask_threshold`` (the whole component
        when none reaches it), all on the grid of ``probability``; components smaller than
        ``min_pixels`` are dropped.
    """
    labels, n = ndimage.label(probability >= candidate_threshold)
    out = []
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        component = labels[region] == index
        if component.sum() < min_pixels:
            continue
        weights = np.where(component, probability[region], 0.0)
        rr, cc = np.nonzero(component)
        w = weights[rr, cc]
        core = component & (probability[region] >= mask_threshold)
        mask = np.zeros(probability.shape, dtype=bool)
        mask[region] = core if core.any() else component
        out.append((
            float(np.average(rr, weights=w) + region[0].start),
            float(np.average(cc, weights=w) + region[1].start),
            float(w.max()),
            mask,
        ))
    return out
