"""Head CT rendering: the head's layers slice by slice (holder, scalp, skull, brain, CSF,
ventricles, calcifications, hematomas), then the scanner (blur or an edge-enhancing kernel,
correlated noise, HU offset, reconstruction circle)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.phantoms.head_ct_anatomy import SLICE_MM, Head, HeadCTStyle, ellipsoid
from models.phantoms.head_ct_lesions import Canvas, add_hematomas
from models.phantoms.head_ct_truth import BONE, BRAIN
from models.phantoms.noise import lerp_noise

__all__ = ["render"]


@dataclass
class _Frame:
    """Pixel coordinates (mm) of the slices: scanner ``X``, ``Y``; head-aligned ``xr``, ``yr``;
    slice ``zs`` relative to the head's centre."""

    X: np.ndarray
    Y: np.ndarray
    xr: np.ndarray
    yr: np.ndarray
    zs: np.ndarray


def render(
    head: Head, rng: np.random.Generator, size: int, spacing: float, slices: int, hematoma: bool,
    style: HeadCTStyle | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render HU and pixel labels of the whole volume (the scanner's part in ``style``'s way)."""
    f = _frame(head, size, spacing, slices)
    hu = np.full((slices, size, size), -1000.0, dtype=np.float32)
    labels = np.zeros((slices, size, size), dtype=np.uint8)
    depth, skull_in, brain_top = _shell(head, f, hu, labels)
    parenchyma, brain_depth = _brain(head, f, rng, hu, labels, depth, skull_in, brain_top)
    if hematoma:
        allowed = parenchyma & (brain_depth > 1.0)
        add_hematomas(rng, head, Canvas(hu, labels, allowed, f.xr, f.yr, f.zs, spacing))
    return _scanner(hu, rng, f, size, spacing, style), labels


def _frame(head: Head, size: int, spacing: float, slices: int) -> _Frame:
    """The coordinates of every pixel, in the scanner's and the head's frame."""
    coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * spacing
    X, Y = np.meshgrid(coords, coords)  # X: columns (patient left is +x), Y: rows (posterior +y)
    c, s = np.cos(head.angle), np.sin(head.angle)
    xr = (X - head.centre[0]) * c + (Y - head.centre[1]) * s
    yr = -(X - head.centre[0]) * s + (Y - head.centre[1]) * c
    zs = (head.z_first + SLICE_MM * np.arange(slices) - head.centre[2]).astype(np.float32)
    return _Frame(X, Y, xr, yr, zs)


def _shell(
    head: Head, f: _Frame, hu: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head holder, scalp and skull into ``hu`` and ``labels``; returns the depth below the skin
    and the depths of the skull's inner surface and of the brain's top."""
    xr, yr, zs = f.xr, f.yr, f.zs
    a, b, cz = head.axes
    # Normalised radius of the skin ellipsoid and the radial distance below the skin.
    r2_xy = (xr / a) ** 2 + (yr / b) ** 2
    rho2_xy = xr**2 + yr**2
    r = np.sqrt(r2_xy[None] + (zs[:, None, None] / cz) ** 2)
    rho = np.sqrt(rho2_xy[None] + zs[:, None, None] ** 2)
    depth = (1.0 - r) * rho / np.maximum(r, 1e-3)

    # Direction-dependent skull thickness.
    ux = xr / np.sqrt(np.maximum(rho2_xy, 1e-6))
    uy = yr / np.sqrt(np.maximum(rho2_xy, 1e-6))
    m = head.skull_mod
    mod_xy = m[0] * ux + m[1] * uy + m[2] * (ux * ux - uy * uy) + m[3] * ux * uy
    skull_t = head.skull * (1.0 + 0.22 * mod_xy)[None] + 1.2 * np.abs(uy)[None]
    skull_out = head.scalp
    skull_in = head.scalp + skull_t
    brain_top = skull_in + head.csf_rim

    # Head holder: a plastic shell behind the head.
    r_xy = np.sqrt(r2_xy)
    shell = (r_xy > 1.09) & (r_xy < 1.09 + 3.0 / b) & (yr > 0.45 * b)
    hu[:, shell] = 140.0

    # Scalp: skin, fat, galea.
    scalp = (depth >= 0) & (depth < skull_out)
    fat = scalp & (depth > 1.4) & (depth < skull_out - 1.3)
    hu[scalp] = 40.0
    hu[fat] = -85.0

    # Skull: dense tables and diploe.
    bone = (depth >= skull_out) & (depth < skull_in)
    frac = (depth - skull_out) / np.maximum(skull_t, 1e-3)
    table = np.abs(frac - 0.5) * 2.0  # 1 at tables, 0 mid-diploe
    bone_hu = 750.0 + 700.0 * table**2
    hu[bone] = bone_hu[bone]
    labels[bone] = BONE
    return depth, skull_in, brain_top


def _brain(
    head: Head, f: _Frame, rng: np.random.Generator, hu: np.ndarray, labels: np.ndarray,
    depth: np.ndarray, skull_in: np.ndarray, brain_top: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Intracranial contents into ``hu`` and ``labels``; returns the parenchyma mask and the
    depth below the brain's surface."""
    xr, yr, zs = f.xr, f.yr, f.zs
    a, b, cz = head.axes
    inside = depth >= skull_in
    hu[inside] = 6.0
    labels[inside] = BRAIN
    shape = hu.shape
    tex = lerp_noise(rng, shape, cells=20)
    sulci_noise = lerp_noise(rng, shape, cells=40)
    brain_depth = depth - brain_top
    parenchyma = inside & (brain_depth >= 0)
    cortex_t = 3.5 + 1.2 * tex
    grey_w = np.clip(1.0 - (brain_depth - cortex_t) / 1.5, 0.0, 1.0)
    tissue = head.white + (head.grey - head.white) * grey_w + 1.8 * tex
    hu[parenchyma] = tissue[parenchyma]
    sulci = parenchyma & (brain_depth < 9.0) & (sulci_noise > 0.9 + brain_depth / 9.0)
    hu[sulci] = 7.0

    # Falx above the ventricles.
    falx = parenchyma & (np.abs(xr)[None] < 0.9) & (zs[:, None, None] > head.vent_z - head.centre[2] + 14)
    hu[falx] = 52.0

    # Petrous ridges in the lowest part of the head.
    for side in (-1.0, 1.0):
        e = ellipsoid(xr, yr, zs, (side * 0.55 * a, 0.15 * b, -0.32 * cz), (0.32 * a, 9.0, 11.0), side * 0.6)
        ridge = e & inside
        hu[ridge] = 1100.0
        labels[ridge] = BONE
    _ventricles(head, f, hu, parenchyma, tex)
    return parenchyma, brain_depth


def _ventricles(head: Head, f: _Frame, hu: np.ndarray, parenchyma: np.ndarray, tex: np.ndarray) -> None:
    """Ventricles and, when the head has them, calcifications (pineal, choroid plexus)."""
    xr, yr, zs = f.xr, f.yr, f.zs
    vs = head.vent_scale
    vz = head.vent_z - head.centre[2]
    ventricle = np.zeros_like(parenchyma)
    for side in (-1.0, 1.0):
        ventricle |= ellipsoid(xr, yr, zs, (side * 7 * vs, -8.0, vz), (5.5 * vs, 24.0 * vs ** 0.5, 13.0), side * 0.25)
        ventricle |= ellipsoid(xr, yr, zs, (side * 12 * vs, 20.0, vz - 10), (5.0 * vs, 14.0, 12.0), -side * 0.35)
    ventricle |= ellipsoid(xr, yr, zs, (0.0, 2.0, vz - 22), (1.5 * vs, 13.0, 10.0), 0.0)
    ventricle &= parenchyma
    hu[ventricle] = 4.0 + 1.5 * tex[ventricle]

    if head.calcified:
        calc = ellipsoid(xr, yr, zs, (0.0, 22.0, vz - 18), (2.5, 2.5, 3.0), 0.0)
        for side in (-1.0, 1.0):
            calc |= ellipsoid(xr, yr, zs, (side * 12 * vs, 22.0, vz - 8), (2.5, 3.5, 3.0), 0.0)
        calc &= parenchyma
        hu[calc] = 180.0


def _scanner(
    hu: np.ndarray, rng: np.random.Generator, f: _Frame, size: int, spacing: float, style: HeadCTStyle | None,
) -> np.ndarray:
    """Scanner: blur (or an edge-enhancing kernel), correlated noise, reconstruction circle."""
    blur, grain = (style.blur, style.noise_grain) if style else (0.7, 0.6)
    hu = ndimage.gaussian_filter(hu, sigma=(0.0, blur, blur), truncate=3.0)
    if style is not None and style.sharpen > 0:
        hu += style.sharpen * (hu - ndimage.gaussian_filter(hu, sigma=(0.0, 1.5, 1.5), truncate=3.0))
    sigma_n = rng.uniform(4.0, 8.0)  # drawn with a style too: the random stream stays the plain one's
    if style is not None:
        sigma_n = style.noise
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0.0, grain, grain), truncate=3.0)
    noise *= sigma_n / max(float(noise[0].std()), 1e-6)
    hu += noise
    if style is not None:
        hu += style.hu_offset
    circle = (f.X**2 + f.Y**2) > (size / 2 * spacing) ** 2
    outside = style.outside if style else -1024.0
    hu[:, circle] = outside
    return np.clip(np.rint(hu), min(outside, -1024.0), 3071).astype(np.int16)
