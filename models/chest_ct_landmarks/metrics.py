"""Slice-offset metrics of the research: "1-Up-Down" precision and the offset histogram."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["HISTOGRAM_BINS", "offset_histogram", "one_up_down_precision", "slice_offsets"]

HISTOGRAM_BINS: tuple[str, ...] = ("<-2", "-2", "-1", "0", "+1", "+2", ">+2")
"""Bins of :func:`offset_histogram` (pick minus truth, in slices; + is superior)."""


def slice_offsets(picks: Sequence[int], truth: Sequence[int]) -> np.ndarray:
    """Pick minus truth, per series, in slices."""
    p, t = np.asarray(picks, dtype=int), np.asarray(truth, dtype=int)
    if p.shape != t.shape:
        raise ValueError(f"{p.size} picks for {t.size} truths")
    return p - t


def one_up_down_precision(offsets: Sequence[int], tolerance: int = 1) -> float:
    """Fraction of picks within ``tolerance`` slices of the truth ("1-Up-Down" for 1).

    Each series contributes exactly one pick per landmark, so this is the research's
    precision with a pick on the truth slice or one slice above or below counted as
    correct. ``nan`` for no series.
    """
    o = np.asarray(offsets, dtype=int)
    return float(np.mean(np.abs(o) <= tolerance)) if o.size else float("nan")


def offset_histogram(offsets: Sequence[int]) -> dict[str, int]:
    """Counts of offsets in the bins of :data:`HISTOGRAM_BINS` (as in the research's Figure 5)."""
    o = np.asarray(offsets, dtype=int)
    return {
        "<-2": int(np.sum(o < -2)),
        "-2": int(np.sum(o == -2)),
        "-1": int(np.sum(o == -1)),
        "0": int(np.sum(o == 0)),
        "+1": int(np.sum(o == 1)),
        "+2": int(np.sum(o == 2)),
        ">+2": int(np.sum(o > 2)),
    }
