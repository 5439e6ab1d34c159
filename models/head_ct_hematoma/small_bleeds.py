"""Small bleeds: family-A training phantoms whose hematomas cover only a few patches.

Family A's generator draws hematomas of 10-60 mm, so bleeds of a handful of 16x16 patches are
rare among its training phantoms, and those are the ones a classifier trained on them misses.
:func:`small_bleed_seeds` walks the even seeds of a family from a start and keeps the first
``count`` whose hematoma covers between one and ``max_patches`` patches: more examples of
what is hard, drawn from the same generator and chosen by their truth alone (never by what
a model makes of them), and outside every validation and held-out range.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from models.head_ct_hematoma.findings import HEMATOMA
from models.head_ct_hematoma.training_data import pack_labels

__all__ = ["MAX_PATCHES", "STARTS", "patches_of", "small_bleed_seeds"]

MAX_PATCHES = 12
"""At most this many hematoma patches make a bleed small."""
STARTS = {"a": 240, "a-styled": 500_000}
"""The first seed searched per family: after the seeds 0.2.0 and 0.3.0 trained on (A 0..239),
and far from A's for the styled phantoms, so that the two do not share their anatomy."""


def small_bleed_seeds(
    family: str, count: int, source: Callable[[str, int], Any], *, max_patches: int = MAX_PATCHES,
    start: int | None = None, limit: int = 5000,
) -> list[int]:
    """The first ``count`` even seeds of ``family`` from ``start`` (default :data:`STARTS`) whose
    phantom has 1..``max_patches`` hematoma patches; ``source(family, seed)`` makes a phantom.
    Stops after ``limit`` seeds searched (fewer seeds returned then)."""
    first = STARTS[family] if start is None else int(start)
    seeds: list[int] = []
    for seed in range(first + first % 2, first + 2 * limit, 2):
        if len(seeds) >= count:
            break
        if 1 <= patches_of(source(family, seed)) <= max_patches:
            seeds.append(seed)
    return seeds


def patches_of(phantom: Any) -> int:
    """The hematoma patches of a phantom (its truth)."""
    return int(np.count_nonzero(pack_labels(phantom.patch_labels) == HEMATOMA))
