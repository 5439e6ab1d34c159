"""CXR nodule samples: the phantom of a seed, its pair resampled to the model grid, the phantom cache."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from models.cxr_nodule.implants import placeable_mask
from models.cxr_nodule.preprocess import MODEL_SIZE
from models.phantoms.cxr import FIELD_MM, generate_cxr
from models.radiograph import resample

__all__ = [
    "MIN_RADIUS_MODEL_PX", "PHANTOM_SIZE", "CachedPhantom", "Sample", "cached_phantom", "make_sample", "make_samples",
    "min_radius", "nodule_count", "phantom_for_seed",
]

PHANTOM_SIZE = 512
MIN_RADIUS_MODEL_PX = 2.0
"""Smallest hit radius, in pixels of a 256 x 256 model grid (3.4 mm on the 430 mm field);
:func:`min_radius` scales it to other input sizes so that the criterion stays the same in mm."""


def min_radius(size: int) -> float:
    """Smallest hit radius in model pixels for a ``size`` x ``size`` input (same mm at every size)."""
    return MIN_RADIUS_MODEL_PX * size / MODEL_SIZE


@dataclass
class Sample:
    """One training/evaluation pair on the model grid.

    ``truths``: ``(row, col, radius)`` per nodule in model pixels (radius at least
    :func:`min_radius` of the grid). ``value_scale``: stored values per unit of the normalised
    ``image``; ``placeable``: where a nodule may be embedded in training
    (:func:`~models.cxr_nodule.implants.placeable_mask`; ``None``: nowhere).
    """

    image: np.ndarray
    twin: np.ndarray
    mask: np.ndarray
    truths: list[tuple[float, float, float]]
    diameters_mm: list[float] = field(default_factory=list)
    has_twin: bool = True
    value_scale: float = 1.0
    placeable: np.ndarray | None = None


def nodule_count(seed: int) -> int:
    """Nodules of the phantom of ``seed`` (``seed % 4``)."""
    return seed % 4


def phantom_for_seed(seed: int, size: int = PHANTOM_SIZE, styles: bool = False):
    """The phantom of ``seed`` (nodule count and photometric from the seed; ``styles``: with
    its randomised detector, processing and patient style)."""
    photometric = "MONOCHROME1" if (seed // 4) % 2 else "MONOCHROME2"
    return generate_cxr(seed, size=size, nodules=nodule_count(seed), photometric=photometric, styles=styles)


def make_sample(phantom, size: int = MODEL_SIZE) -> Sample:
    """Resample a phantom's pair and masks to the model grid (shared normalisation)."""
    image, geometry = resample(phantom.image, size)
    twin, _ = resample(phantom.clean, size)
    low, high = np.percentile(image, (1.0, 99.0))
    scale = max(float(high - low), 1e-6)
    mask, _ = resample(phantom.nodule_mask.astype(np.float32), size)
    lungs, _ = resample(phantom.lung_mask.astype(np.float32), size)
    truths = []
    for n in phantom.nodules:
        r, c = geometry.to_model(n.row, n.col)
        truths.append((r, c, max(n.radius_px * geometry.scale, min_radius(size))))
    return Sample(
        np.clip((image - low) / scale, 0, 1).astype(np.float16),
        np.clip((twin - low) / scale, 0, 1).astype(np.float16),
        mask >= 0.35,
        truths,
        [n.diameter_mm for n in phantom.nodules],
        value_scale=scale,
        placeable=placeable_mask(lungs >= 0.5, mask >= 0.35, FIELD_MM / phantom.image.shape[0] / geometry.scale),
    )


@dataclass
class CachedPhantom:
    """What :func:`make_sample` reads of a phantom (image, twin, nodule and lung masks, truths)."""

    image: np.ndarray
    clean: np.ndarray
    nodule_mask: np.ndarray
    nodules: list
    lung_mask: np.ndarray


def cached_phantom(seed: int, cache_dir: Path | None = None, styles: bool = False):
    """The phantom of ``seed``, read from / written to ``cache_dir`` (``cxr-<seed>-512.npz``,
    ``cxr-s-<seed>-512.npz`` with ``styles``).

    Generating one 512 x 512 phantom takes 0.2-1 s on a shared CPU; the cache keeps the arrays that
    :func:`make_sample` needs, so later runs (other model sizes too) skip generation.
    """
    from models.phantoms.cxr import Nodule

    if cache_dir is None:
        return phantom_for_seed(seed, styles=styles)
    path = Path(cache_dir) / f"cxr-{'s-' if styles else ''}{seed}-{PHANTOM_SIZE}.npz"
    if path.exists():
        with np.load(path) as z:
            if "lung_mask" in z:   # else a cache written before lung masks were kept: made again
                nodules = [Nodule(*map(float, row)) for row in z["nodules"]]
                return CachedPhantom(z["image"], z["clean"], z["nodule_mask"], nodules, z["lung_mask"])
    phantom = phantom_for_seed(seed, styles=styles)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.array([[n.row, n.col, n.diameter_mm, n.radius_px, n.contrast] for n in phantom.nodules],
                    dtype=np.float64).reshape(-1, 5)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, image=phantom.image, clean=phantom.clean, nodule_mask=phantom.nodule_mask, nodules=rows,
             lung_mask=phantom.lung_mask)
    tmp.replace(path)
    return phantom


def make_samples(
    seeds: Sequence[int], log: Callable[[str], None] | None = None, *, size: int = MODEL_SIZE,
    cache_dir: Path | None = None, phantom_size: int = PHANTOM_SIZE, styles: bool = False,
) -> list[Sample]:
    """Samples on the ``size`` grid of the phantoms ``seeds`` made at ``phantom_size`` (only
    those at :data:`PHANTOM_SIZE` are cached); ``styles``: with randomised styles."""
    out = []
    for i, seed in enumerate(tqdm(seeds, desc="phantoms", unit="phantom", leave=False, disable=None)):
        phantom = (cached_phantom(seed, cache_dir, styles) if phantom_size == PHANTOM_SIZE
                   else phantom_for_seed(seed, phantom_size, styles))
        out.append(make_sample(phantom, size))
        if log and (i + 1) % 100 == 0:
            log(f"  {i + 1}/{len(seeds)} phantoms")
    return out
