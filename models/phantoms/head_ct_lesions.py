"""Head CT hematomas: 1-3 per phantom, unions of ellipsoids with noise-perturbed margins,
a fluid level or a hypodense part sometimes, a thin oedema rim, and partial volume across
the slice thickness."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.phantoms.head_ct_anatomy import SLICE_MM, Head, ellipse_q
from models.phantoms.head_ct_truth import HEMATOMA
from models.phantoms.noise import lerp_noise

__all__ = ["Canvas", "add_hematomas"]


@dataclass
class Canvas:
    """Where hematomas are painted: the volume's HU and labels (written in place), the voxels
    a hematoma may take, the head-aligned pixel coordinates, slice z and pixel spacing (mm)."""

    hu: np.ndarray
    labels: np.ndarray
    allowed: np.ndarray
    xr: np.ndarray
    yr: np.ndarray
    zs: np.ndarray
    spacing: float


def add_hematomas(rng: np.random.Generator, head: Head, canvas: Canvas) -> None:
    """Draw 1-3 hematomas inside ``canvas.allowed`` and paint them into its HU and labels."""
    a, b, cz = head.axes
    inner = np.array([a - head.scalp - head.skull - 6, b - head.scalp - head.skull - 6, cz - 16])
    z_lo, z_hi = float(canvas.zs.min()), float(canvas.zs.max())
    for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3]))):
        diameter = rng.uniform(10.0, 60.0) if rng.random() < 0.8 else rng.uniform(10.0, 22.0)
        u = rng.uniform(-1, 1, size=3)
        while np.sum(u**2) > 1:
            u = rng.uniform(-1, 1, size=3)
        centre = u * np.maximum(inner - diameter / 3, 5.0)
        centre[2] = np.clip(centre[2], z_lo + 2, max(z_hi - 10, z_lo + 3))
        parts = []
        for k in range(int(rng.integers(2, 6))):
            off = rng.normal(0, diameter / 6, size=3) if k else np.zeros(3)
            ax = diameter / 2 * rng.uniform(0.4, 0.8, size=3)
            ax[2] = max(ax[2], 3.0)
            parts.append((centre + off, ax, float(rng.uniform(-np.pi, np.pi))))
        density = rng.uniform(55.0, 90.0)
        kind = rng.choice(["plain", "fluid", "hypodense"], p=[0.55, 0.2, 0.25])
        _paint_hematoma(rng, canvas, parts, density, str(kind))


def _paint_hematoma(
    rng: np.random.Generator, canvas: Canvas, parts: list[tuple[np.ndarray, np.ndarray, float]],
    density: float, kind: str,
) -> None:
    """Rasterise one hematoma with partial volume over the slice thickness."""
    hu, labels, allowed, xr, yr, zs = canvas.hu, canvas.labels, canvas.allowed, canvas.xr, canvas.yr, canvas.zs
    spacing = canvas.spacing
    centres = np.array([p[0] for p in parts])
    extent = np.array([float(np.max(p[1])) for p in parts])
    x0, x1 = (centres[:, 0] - extent).min() - 6, (centres[:, 0] + extent).max() + 6
    y0, y1 = (centres[:, 1] - extent).min() - 6, (centres[:, 1] + extent).max() + 6
    z0, z1 = (centres[:, 2] - extent).min() - 3, (centres[:, 2] + extent).max() + 3
    box2d = (xr >= x0) & (xr <= x1) & (yr >= y0) & (yr <= y1)
    rows = np.flatnonzero(box2d.any(axis=1))
    cols = np.flatnonzero(box2d.any(axis=0))
    ks = np.flatnonzero((zs + SLICE_MM / 2 >= z0) & (zs - SLICE_MM / 2 <= z1))
    if rows.size == 0 or cols.size == 0 or ks.size == 0:
        return
    rs = slice(rows[0], rows[-1] + 1)
    cs = slice(cols[0], cols[-1] + 1)
    bx, by = xr[rs, cs], yr[rs, cs]
    h, w = bx.shape
    margin_noise = lerp_noise(rng, (ks.size * 3, h, w), cells=max(3, int(max(h, w) * spacing / 6)))
    fill = np.zeros((ks.size, h, w), dtype=np.float32)
    field_mid = np.full((ks.size, h, w), -np.inf, dtype=np.float32)
    for j, k in enumerate(ks):
        for t, dz in enumerate((-SLICE_MM / 3, 0.0, SLICE_MM / 3)):
            z = zs[k] + dz
            f = np.full((h, w), -np.inf, dtype=np.float32)
            for centre, ax, ang in parts:
                f = np.maximum(f, 1.0 - (ellipse_q(bx, by, centre, ax, ang) + ((z - centre[2]) / ax[2]) ** 2))
            f = f + 0.22 * margin_noise[3 * j + t]
            fill[j] += (f > 0) / 3.0
            if t == 1:
                field_mid[j] = f
    sub_allowed = allowed[ks][:, rs, cs]
    fill *= sub_allowed
    sub_hu = hu[ks][:, rs, cs]
    sub_lab = labels[ks][:, rs, cs]
    # Oedema rim just outside the lesion.
    rim = sub_allowed & (fill == 0) & (field_mid > -0.35)
    sub_hu[rim] -= rng.uniform(4.0, 9.0)
    lesion = np.full(fill.shape, density, dtype=np.float32)
    lesion += 2.5 * lerp_noise(rng, fill.shape, cells=max(3, int(max(h, w) * spacing / 4)))
    if kind == "fluid":
        level = float(np.quantile(by[None].repeat(ks.size, 0)[fill > 0], rng.uniform(0.3, 0.6))) if (fill > 0).any() else 0.0
        top = np.broadcast_to(by[None] < level, fill.shape)  # non-dependent (anterior) part
        lesion = np.where(top, density - rng.uniform(12.0, 20.0), density + 5.0).astype(np.float32)
        lesion += 2.0 * lerp_noise(rng, fill.shape, cells=6)
    elif kind == "hypodense":
        pocket = field_mid > rng.uniform(0.45, 0.7)
        lesion = np.where(pocket, density - rng.uniform(10.0, 18.0), lesion)
    lesion = np.maximum(lesion, 46.0)
    sub_hu[:] = sub_hu * (1 - fill) + lesion * fill
    sub_lab[fill >= 0.5] = HEMATOMA
    hu[ks, rs, cs] = sub_hu
    labels[ks, rs, cs] = sub_lab

