"""Chest radiograph projection: the line integral of attenuation through the chest along the
antero-posterior axis, from exact chords of ellipsoids, cylinders and tubes."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from models.phantoms.cxr_anatomy import (
    FIELD_MM,
    MU_BONE,
    MU_LUNG,
    MU_MARROW,
    MU_SOFT,
    Anatomy,
    anterior_ribs,
    clavicles,
    posterior_ribs,
    vessel_curves,
)
from models.phantoms.noise import zoomed_noise

__all__ = ["project_anatomy", "smooth_field"]


def _chord_ellipsoid(x, z, cx, cz, ax, ay, az) -> np.ndarray:
    """Chord length along y through an ellipsoid centred at (cx, ·, cz)."""
    q = 1.0 - ((x - cx) / ax) ** 2 - ((z - cz) / az) ** 2
    return 2.0 * ay * np.sqrt(np.clip(q, 0.0, None))


def _tube_chord(distance: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Chord along y through a tube of ``radius`` at in-plane ``distance`` from its axis."""
    return 2.0 * np.sqrt(np.clip(np.asarray(radius) ** 2 - distance ** 2, 0.0, None))


def project_anatomy(a: Anatomy, x, z, spacing: float, rng: np.random.Generator,
                     shift: tuple[float, float] = (0.0, 0.0)):
    """Attenuation (mm water equivalent) of every pixel, and the lungs' chord lengths."""
    size = z.shape[0]
    xr = x + a.tilt * z  # slight rotation of the patient
    # trunk: elliptic cylinder, half-width growing from the neck to the shoulders
    t = 1.0 / (1.0 + np.exp(-(z - a.shoulder_z) / 12.0))
    half_width = a.neck_half_width + (a.body_half_width - a.neck_half_width) * t
    half_depth = 55.0 + (a.body_half_depth - 55.0) * t
    body = 2.0 * half_depth * np.sqrt(np.clip(1.0 - (xr / half_width) ** 2, 0.0, None))
    atten = MU_SOFT * body

    # lungs: ellipsoids cut by the diaphragm domes (soft fade in the costophrenic recesses)
    lung = np.zeros_like(atten)
    for side, sign in ((0, -1.0), (1, 1.0)):
        cx = sign * a.lung_cx
        chord = _chord_ellipsoid(xr, z, cx, a.lung_cz, a.lung_ax, a.lung_ay, a.lung_az)
        dome = a.dome_z[side] + 28.0 * ((xr - cx) / a.lung_ax) ** 2
        chord = chord * np.clip((dome - z) / 18.0, 0.0, 1.0)
        lung += chord
    hx, hz, hax, hay, haz = a.heart
    heart = _chord_ellipsoid(xr, z, hx, hz, hax, hay, haz)
    knob = _chord_ellipsoid(xr, z, 22.0, a.lung_cz - 55.0, 18.0, 18.0, 16.0)
    lung = np.clip(lung - 0.8 * heart - 0.8 * knob, 0.0, None)
    atten -= (MU_SOFT - MU_LUNG) * lung

    # trachea and main bronchi (air)
    carina = a.lung_cz - 30.0
    trachea = _tube_chord(np.abs(xr - 0.0), 8.5) * (z < carina)
    atten -= MU_SOFT * 0.8 * trachea
    for sign in (-1.0, 1.0):
        d = _segment_distance(xr, z, (0.0, carina), (sign * 38.0, carina + 28.0 + 6 * (sign > 0)))
        atten -= MU_SOFT * 0.5 * _tube_chord(d, 6.0)

    # spine: vertebral bodies and disc spaces
    period = 26.0
    phase = np.mod(z - a.shoulder_z, period) / period
    disc = np.exp(-((phase - 0.5) / 0.08) ** 2)
    vert = _tube_chord(np.abs(xr), 22.0)
    atten += (MU_BONE - MU_SOFT) * 0.55 * vert * (1.0 - 0.45 * disc)
    pedicles = sum(_tube_chord(np.hypot(xr - s * 16.0, (phase - 0.3) * period), 5.0) for s in (-1, 1))
    atten += (MU_BONE - MU_SOFT) * 0.6 * pedicles

    # bones with a cortical shell: posterior ribs, anterior ribs, clavicles
    for curves in (posterior_ribs(a), anterior_ribs(a), clavicles(a)):
        d, r = _distance_to_curves(curves, size, spacing, shift)
        outer = _tube_chord(d, r)
        inner = _tube_chord(d, 0.7 * r)
        atten += (MU_BONE - MU_SOFT) * (outer - inner) + (MU_MARROW - MU_SOFT) * inner

    # lung vessels: tapering branches from the hila, inside the lungs only
    vessels = vessel_curves(rng, a)
    d, r = _distance_to_curves(vessels, size, spacing, shift)
    atten += (MU_SOFT - MU_LUNG) * 2.5 * _tube_chord(d, r) * (lung > 5.0)
    # soft low-frequency texture (overlying tissue)
    atten += 6.0 * smooth_field(rng, (size, size), 8)
    return atten, lung


def _segment_distance(x, z, p0, p1) -> np.ndarray:
    """In-plane distance of every pixel to the segment ``p0``-``p1``."""
    px, pz = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((x - p0[0]) * px + (z - p0[1]) * pz) / (px * px + pz * pz), 0.0, 1.0)
    return np.hypot(x - p0[0] - t * px, z - p0[1] - t * pz)



def _distance_to_curves(curves, size: int, spacing: float, shift: tuple[float, float] = (0.0, 0.0)):
    """Distance (mm) of every pixel to the nearest curve point, and that point's radius
    (curves in the patient's frame, which sits ``shift`` mm from the field centre)."""
    seeds = np.zeros((size, size), dtype=bool)
    radius_at = np.zeros((size, size), dtype=np.float64)
    for xs, zs, rs in curves:
        # densify so consecutive points are < 1 pixel apart
        n = max(2, int(np.ceil(np.hypot(np.diff(xs), np.diff(zs)).sum() / (0.5 * spacing))))
        t = np.linspace(0, len(xs) - 1, n)
        xi = np.interp(t, np.arange(len(xs)), xs)
        zi = np.interp(t, np.arange(len(zs)), zs)
        ri = np.interp(t, np.arange(len(rs)), rs)
        cols = np.floor((xi + shift[0] + FIELD_MM / 2) / spacing).astype(int)
        rows = np.floor((zi + shift[1] + FIELD_MM / 2) / spacing).astype(int)
        ok = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        seeds[rows[ok], cols[ok]] = True
        radius_at[rows[ok], cols[ok]] = np.maximum(radius_at[rows[ok], cols[ok]], ri[ok])
    if not seeds.any():
        return np.full((size, size), 1e6), np.zeros((size, size))
    dist, (ir, ic) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    return dist * spacing, radius_at[ir, ic]


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise: a ``cells`` x ``cells`` grid zoomed (cubic) to ``shape``."""
    return zoomed_noise(rng, shape, (cells, cells))
