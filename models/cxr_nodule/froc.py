"""Free-response ROC (FROC) of a nodule detector (numpy only).

A detection is a true positive when it lies within the radius of a truth nodule that
no higher-scored detection has already hit; further detections inside an already-found
nodule are ignored (neither TP nor FP); every other detection is a false positive.
Sensitivity = found nodules / all nodules; FP per image = false positives / images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["FROC", "froc", "matched_nodule", "nodule_scores", "render_froc_png"]


@dataclass(frozen=True)
class FROC:
    """An FROC curve: one point per score threshold, thresholds descending."""

    thresholds: np.ndarray
    fp_per_image: np.ndarray
    sensitivity: np.ndarray
    n_images: int
    n_nodules: int

    def sensitivity_at(self, fp_per_image: float) -> float:
        """Highest sensitivity reached with at most ``fp_per_image`` false positives per image."""
        ok = self.fp_per_image <= fp_per_image + 1e-12
        return float(self.sensitivity[ok].max()) if ok.any() else 0.0

    def threshold_at(self, fp_per_image: float) -> float:
        """Lowest score threshold whose FP rate stays at or under ``fp_per_image``."""
        ok = self.fp_per_image <= fp_per_image + 1e-12
        return float(self.thresholds[ok].min()) if ok.any() else float("inf")


def froc(
    detections: Sequence[Sequence[tuple[float, float, float]]],
    truths: Sequence[Sequence[tuple[float, float, float]]],
) -> FROC:
    """Compute the FROC curve.

    Parameters
    ----------
    detections:
        Per image, ``(row, col, score)`` of every candidate.
    truths:
        Per image, ``(row, col, radius)`` of every nodule (same units as detections).

    Returns
    -------
    FROC
    """
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detection lists for {len(truths)} images")
    events: list[tuple[float, int, int, int]] = []  # score, kind (1 TP, 0 FP), image, nodule
    for image, (dets, nods) in enumerate(zip(detections, truths)):
        found: set[int] = set()
        for row, col, score in sorted(dets, key=lambda d: -d[2]):
            hit = matched_nodule(row, col, nods)
            if hit is None:
                events.append((float(score), 0, image, -1))
            elif hit not in found:
                found.add(hit)
                events.append((float(score), 1, image, hit))
    n_images = len(truths)
    n_nodules = sum(len(n) for n in truths)
    events.sort(key=lambda e: -e[0])
    scores = np.array([e[0] for e in events], dtype=float)
    tp = np.cumsum([e[1] for e in events]) if events else np.zeros(0)
    fp = np.cumsum([1 - e[1] for e in events]) if events else np.zeros(0)
    # one point per distinct threshold: the last event with that score
    if len(scores):
        last = np.r_[scores[1:] != scores[:-1], True]
        thresholds, tp, fp = scores[last], tp[last], fp[last]
    else:
        thresholds = np.zeros(0)
    thresholds = np.r_[np.inf, thresholds]
    sensitivity = np.r_[0.0, tp / max(n_nodules, 1)]
    fp_per_image = np.r_[0.0, fp / max(n_images, 1)]
    return FROC(thresholds, fp_per_image, sensitivity, n_images, n_nodules)


def nodule_scores(
    detections: Sequence[Sequence[tuple[float, float, float]]],
    truths: Sequence[Sequence[tuple[float, float, float]]],
) -> list[list[float]]:
    """Per image and nodule, the score of the detection that finds it (``-inf`` if none).

    The same matching as :func:`froc`: each detection goes to the closest nodule within whose
    radius it lies; a nodule is found at threshold ``t`` when its score is ``>= t``.
    """
    out = []
    for dets, nods in zip(detections, truths):
        best = [float("-inf")] * len(nods)
        for row, col, score in dets:
            k = matched_nodule(row, col, nods)
            if k is not None:
                best[k] = max(best[k], float(score))
        out.append(best)
    return out


def matched_nodule(row: float, col: float, nodules: Sequence[tuple[float, float, float]]) -> int | None:
    """The index of the closest nodule whose radius holds ``(row, col)`` (the first on a tie), or ``None``."""
    hit, best = None, np.inf
    for k, (tr, tc, radius) in enumerate(nodules):
        distance = float(np.hypot(row - tr, col - tc))
        if distance <= radius and distance < best:
            hit, best = k, distance
    return hit


def render_froc_png(curve: FROC, path, *, marker_fp: float = 0.2, title_value: float | None = None) -> None:
    """Draw the FROC curve (FP/image on a log axis 0.01..10, sensitivity 0..1) as a PNG."""
    from PIL import Image, ImageDraw

    width, height, margin = 640, 480, 60
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = margin, height - margin, width - 20, 20
    lo, hi = np.log10(0.01), np.log10(10.0)

    def xy(fp: float, sens: float) -> tuple[float, float]:
        fx = (np.log10(min(max(fp, 0.01), 10.0)) - lo) / (hi - lo)
        return x0 + fx * (x1 - x0), y0 - sens * (y0 - y1)

    draw.rectangle([x0, y1, x1, y0], outline="black")
    for tick in (0.01, 0.1, 0.2, 1.0, 10.0):
        x, _ = xy(tick, 0)
        draw.line([x, y0, x, y1], fill=(220, 220, 220))
        draw.text((x - 10, y0 + 8), f"{tick:g}", fill="black")
    for tick in np.linspace(0, 1, 6):
        _, y = xy(0.01, tick)
        draw.line([x0, y, x1, y], fill=(220, 220, 220))
        draw.text((x0 - 35, y - 6), f"{tick:.1f}", fill="black")
    points = [xy(f, s) for f, s in zip(curve.fp_per_image, curve.sensitivity)]
    stepped = []
    for (xa, ya), (xb, yb) in zip(points[:-1], points[1:]):
        stepped += [(xa, ya), (xb, ya), (xb, yb)]
    if len(stepped) >= 2:
        draw.line(stepped, fill=(200, 30, 30), width=2)
    sens = curve.sensitivity_at(marker_fp)
    mx, my = xy(marker_fp, sens)
    draw.ellipse([mx - 4, my - 4, mx + 4, my + 4], outline="blue", width=2)
    draw.text((x0 + 10, y1 + 8), f"sensitivity {sens:.3f} at {marker_fp:g} FP/image "
              f"({curve.n_nodules} nodules, {curve.n_images} images)", fill="black")
    draw.text((width // 2 - 60, height - 25), "false positives per image", fill="black")
    draw.text((5, 5), "sensitivity", fill="black")
    img.save(path, format="PNG")
