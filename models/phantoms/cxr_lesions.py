"""Chest radiograph lesions: pneumonic consolidation and nodules (unions of spheres,
ray-cast), with the nodules' truth (:class:`Nodule`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.phantoms.cxr_anatomy import MU_LUNG, MU_SOFT, Anatomy
from models.phantoms.cxr_projection import smooth_field

__all__ = ["Nodule", "consolidation", "place_nodule"]


@dataclass(frozen=True)
class Nodule:
    """Ground truth of one embedded nodule (pixel coordinates of the written image).

    ``row``/``col``: centroid of the projected nodule; ``diameter_mm``: equivalent
    diameter of its projected area; ``radius_px``: half of it in pixels; ``contrast``:
    peak added attenuation in mm water equivalent.
    """

    row: float
    col: float
    diameter_mm: float
    radius_px: float
    contrast: float


def consolidation(rng, a: Anatomy, x, z, lung_chord, spacing) -> np.ndarray:
    """Fraction of lung air replaced by fluid along each ray (patchy, mostly lower zones)."""
    size = z.shape[0]
    fill = np.zeros((size, size))
    sides = [int(rng.integers(0, 2))] if rng.random() < 0.75 else [0, 1]
    for side in sides:
        sign = -1.0 if side == 0 else 1.0
        lower = rng.random() < 0.8
        top = a.lung_cz - a.lung_az
        bottom = a.dome_z[side]
        span = bottom - top
        cz = bottom - span * rng.uniform(0.12, 0.3) if lower else top + span * rng.uniform(0.35, 0.6)
        cx = sign * a.lung_cx + rng.uniform(-20, 20)
        rx, rz = rng.uniform(30, 50), rng.uniform(30, 48)
        envelope = np.exp(-(((x - cx) / rx) ** 2 + ((z - cz) / rz) ** 2) ** 1.5)
        patches = smooth_field(rng, (size, size), int(rng.integers(14, 22)))
        patches = np.clip((patches + rng.uniform(0.6, 1.0)) / 1.4, 0.0, 1.0)
        fill = np.maximum(fill, envelope * patches * rng.uniform(0.4, 0.75))
    fill = ndimage.gaussian_filter(fill, 2.0 / spacing)
    return fill * (lung_chord > 5.0)


def place_nodule(rng, lung_chord, taken, x, z, spacing, dmin, dmax):
    """One nodule: union of overlapping spheres, ray-cast, inside a lung field."""
    size = lung_chord.shape[0]
    inside = ndimage.binary_erosion(lung_chord > 60.0, iterations=max(1, int(12 / spacing)))
    inside &= ~ndimage.binary_dilation(taken, iterations=max(1, int(25 / spacing)))
    candidates = np.argwhere(inside)
    if len(candidates) == 0:
        return None
    row, col = candidates[rng.integers(len(candidates))]
    diameter = float(np.exp(rng.uniform(np.log(dmin), np.log(dmax))))
    radius = diameter / 2.0
    n_spheres = int(rng.integers(2, 6))
    centres = [np.zeros(3)]
    radii = [radius * rng.uniform(0.75, 0.95)]
    for _ in range(n_spheres - 1):
        base = centres[int(rng.integers(len(centres)))]
        offset = rng.normal(0, 1, 3)
        offset *= radius * rng.uniform(0.25, 0.55) / np.linalg.norm(offset)
        centres.append(base + offset)
        radii.append(radius * rng.uniform(0.4, 0.7))
    centres_arr, radii_arr = np.array(centres), np.array(radii)
    extent = np.abs(centres_arr).max() + radii_arr.max() + 2 * spacing
    half = int(np.ceil(extent / spacing)) + 1
    r0, r1 = max(0, row - half), min(size, row + half + 1)
    c0, c1 = max(0, col - half), min(size, col + half + 1)
    # ray casting with 2x2 supersampling in-plane and 0.5 mm steps in depth
    sub = (np.arange(2) + 0.5) / 2 - 0.5
    rows = (np.arange(r0, r1)[:, None] + sub[None, :]).reshape(-1) - row
    cols = (np.arange(c0, c1)[:, None] + sub[None, :]).reshape(-1) - col
    zz, xx = np.meshgrid(rows * spacing, cols * spacing, indexing="ij")
    depth = np.arange(-extent, extent, 0.5)
    inside3d = np.zeros(zz.shape + depth.shape, dtype=bool)
    for (cx_, cy_, cz_), rad in zip(centres_arr, radii_arr):
        inside3d |= ((xx - cx_) ** 2 + (zz - cz_) ** 2)[..., None] + (depth - cy_) ** 2 <= rad ** 2
    thick = inside3d.sum(axis=-1) * 0.5
    thick = thick.reshape(r1 - r0, 2, c1 - c0, 2).mean(axis=(1, 3))
    coverage = (inside3d.any(axis=-1)).reshape(r1 - r0, 2, c1 - c0, 2).mean(axis=(1, 3))
    contrast = rng.uniform(0.45, 1.0)
    soft = ndimage.gaussian_filter(thick, rng.uniform(0.3, 1.0) / spacing * 0.8)
    added = np.zeros_like(lung_chord)
    added[r0:r1, c0:c1] = (MU_SOFT - MU_LUNG) * contrast * soft
    mask = np.zeros(lung_chord.shape, dtype=bool)
    mask[r0:r1, c0:c1] = coverage >= 0.5
    if not mask.any():
        return None
    rr, cc = np.nonzero(mask)
    weights = thick[rr - r0, cc - c0] + 1e-6
    area_mm2 = mask.sum() * spacing * spacing
    eq_diameter = float(2.0 * np.sqrt(area_mm2 / np.pi))
    truth = Nodule(
        row=float(np.average(rr, weights=weights)),
        col=float(np.average(cc, weights=weights)),
        diameter_mm=eq_diameter,
        radius_px=eq_diameter / 2.0 / spacing,
        contrast=float(added.max()),
    )
    return added, mask, truth
