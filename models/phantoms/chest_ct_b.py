"""Chest CT phantom family B: an independent construction of the same landmarks.

Family A (:mod:`models.phantoms.chest_ct`) builds a chest from ellipses, paraboloid caps
and capsule tubes. Family B was written from the anatomy description of the research
(``research/chest-ct-landmark-slices.txt``: the apex slice is where the uppermost lung
first appears, the carina slice where the trachea just divides, the upper-diaphragm
slice the last one above the dome, where the lung fields keep their shape, about six
4 mm slices above the slice where the lung fields vanish) with other parts throughout:

* **body**: a superellipse cross-section (exponent 2.2-3.2) whose width follows a
  profile along z (neck, shoulders, abdomen), optional breasts and arms at the sides;
* **lungs**: not shapes of their own but *what is left* of the thoracic cavity once the
  mediastinum (heart, great vessels, trachea and oesophagus, spine, a central septum) is
  taken out, under a power-law apex surface (exponent 1.4-2.4, not a paraboloid) and
  above a Gaussian diaphragm dome with a posterior recess;
* **tubes**: every tube (airways, aorta, pulmonary arteries, vessel tree, ribs) is a
  *sphere sweep* along sampled curves (Bezier curves, arcs, a recursive branching tree),
  cut with each sub-slice as discs; the trachea ends flat at the carina and each main
  bronchus starts beside the midline (a spur of random width), then divides into lobar
  bronchi (the right upper lobe bronchus close below the carina);
* **image formation**: four sub-slices per slice, a modulation transfer function and a
  ramp-shaped noise power spectrum applied in the Fourier domain (not a Gaussian blur of
  white noise), optional IV contrast, a flat table with an optional pad, -1024 or -3024
  HU outside the reconstruction circle.

The ground truth follows the pack's definitions (as family A does), computed from this
family's own geometry:

* **apex**: the most superior slice with at least :data:`MIN_VISIBLE_AREA_MM2` of lung in
  one of its sub-slices;
* **carina**: the most superior slice whose slab-averaged airway lumen (on a 0.4 mm grid,
  lumen where at least half of the sub-slices are lumen) shows two separate lumens of at
  least :data:`MIN_LUMEN_AREA_MM2` each;
* **diaphragm**: the slice just above the highest slice in which the dome covers at least
  :data:`MIN_VISIBLE_AREA_MM2` of a lung field in one sub-slice.

Seeds are independent of family A's: ``generate_chest_ct_b(seed)`` and
``generate_chest_ct(seed)`` are different patients. The same seed gives the same
phantom (pixels and truth; UIDs are always fresh).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.phantoms.chest_ct_truth import (
    LANDMARKS,
    MIN_LUMEN_AREA_MM2,
    MIN_VISIBLE_AREA_MM2,
    ChestCTPhantom,
    landmark_truth,
)
from models.phantoms.ct_series import Patient, SeriesSpec, Study, build_series

__all__ = ["FAMILY", "LANDMARKS", "default_patient_id", "generate_chest_ct_b"]

FAMILY = "b"
_SUBSLICES = (-0.375, -0.125, 0.125, 0.375)
_GRID = 0.4  # mm, airway truth grid


def default_patient_id(seed: int) -> str:
    """Patient ID of the family-B phantom of ``seed`` (``CHESTCTB-<seed>``)."""
    return f"CHESTCTB-{seed}"


# --------------------------------------------------------------------------- sweeps


@dataclass
class _Sweep:
    """Spheres (centres ``(n, 3)``, radii ``(n,)``) whose union is a set of tubes.

    ``h`` (``(n,)``, optional) turns an element into a vertical cylinder of half-height
    ``h`` (a flat-ended "coin"); 0 keeps it a sphere.
    """

    c: np.ndarray
    r: np.ndarray
    h: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.h is None:
            self.h = np.zeros_like(self.r)

    @staticmethod
    def empty() -> "_Sweep":
        return _Sweep(np.zeros((0, 3)), np.zeros(0))

    def __add__(self, other: "_Sweep") -> "_Sweep":
        return _Sweep(np.concatenate([self.c, other.c]), np.concatenate([self.r, other.r]),
                      np.concatenate([self.h, other.h]))

    def grown(self, d: float) -> "_Sweep":
        return _Sweep(self.c, self.r + d, np.where(self.h > 0, self.h + d, 0.0))


def _curve(points: np.ndarray, r0: float, r1: float | None = None) -> _Sweep:
    """Spheres along a polyline ``points`` (k, 3), radius from ``r0`` to ``r1``, dense enough to be a tube."""
    r1 = r0 if r1 is None else r1
    seg = np.diff(points, axis=0)
    length = np.linalg.norm(seg, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(length)])
    total = float(cum[-1])
    step = max(0.3, 0.45 * min(r0, r1))
    s = np.linspace(0.0, total, max(2, int(np.ceil(total / step)) + 1))
    c = np.column_stack([np.interp(s, cum, points[:, k]) for k in range(3)])
    r = r0 + (r1 - r0) * (s / max(total, 1e-9))
    return _Sweep(c, r)


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _discs(sweep: _Sweep, z: float, X: np.ndarray, Y: np.ndarray, spacing: float) -> np.ndarray:
    """Cross-section of a sweep at height ``z`` on the grid ``X``, ``Y``."""
    out = np.zeros(X.shape, dtype=bool)
    if sweep.r.size == 0:
        return out
    dz = sweep.c[:, 2] - z
    flat = sweep.h > 0
    sel = np.flatnonzero(np.abs(dz) < np.where(flat, sweep.h, sweep.r))
    if sel.size == 0:
        return out
    rr = np.where(flat[sel], sweep.r[sel], np.sqrt(np.maximum(sweep.r[sel] ** 2 - dz[sel] ** 2, 0.0)))
    x0, y0 = float(X[0, 0]), float(Y[0, 0])
    n_r, n_c = X.shape
    for (cx, cy), r in zip(sweep.c[sel, :2], rr):
        c0, c1 = max(0, int((cx - r - x0) / spacing)), min(n_c, int((cx + r - x0) / spacing) + 2)
        r0, r1 = max(0, int((cy - r - y0) / spacing)), min(n_r, int((cy + r - y0) / spacing) + 2)
        if c0 >= c1 or r0 >= r1:
            continue
        out[r0:r1, c0:c1] |= (X[r0:r1, c0:c1] - cx) ** 2 + (Y[r0:r1, c0:c1] - cy) ** 2 < r * r
    return out


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# --------------------------------------------------------------------------- the patient


class _PatientB:
    """One family-B patient, z relative to the carina (0), x patient left, y posterior."""

    def __init__(self, rng: np.random.Generator) -> None:
        u = rng.uniform
        self.cx, self.cy = u(-25.0, 25.0), u(-20.0, 25.0)
        self.a0 = u(128.0, 178.0)
        self.b0 = self.a0 * u(0.6, 0.78)
        self.p = u(2.2, 3.2)
        self.fat = u(5.0, 34.0)
        self.wall = u(11.0, 18.0)
        self.back = u(8.0, 16.0)               # extra posterior muscle
        self.x_mid = self.cx + u(-6.0, 6.0)    # midline of the mediastinum
        self.septum = u(5.0, 12.0)
        # Heights (mm from the carina).
        self.apex = np.array([u(52.0, 100.0), 0.0])
        self.apex[1] = self.apex[0] + u(-12.0, 12.0)
        self.dome = np.array([-u(105.0, 175.0), 0.0])
        self.dome[1] = self.dome[0] - u(-2.0, 25.0)
        self.shoulder = float(self.apex.max()) + u(0.0, 25.0)
        self.neck = (u(52.0, 70.0), u(48.0, 64.0))
        self.abdomen = u(-0.06, 0.08)
        # Cavity (anterior shift, since the back is thicker).
        self.cav_dy = -u(4.0, 14.0)
        # Apex surfaces: z_top = apex - k * rho ** q.
        self.apex_q = u(1.4, 2.4, 2)
        self.apex_drop60 = u(22.0, 45.0, 2)    # drop 60 mm from the apex point
        self.apex_xy = np.column_stack([u(0.35, 0.6, 2), u(0.05, 0.45, 2)])  # fractions of cavity axes
        # Domes: Gaussian, posterior recess.
        self.dome_h = u(28.0, 62.0, 2)
        self.dome_s = np.column_stack([u(0.32, 0.55, 2), u(0.38, 0.62, 2)])
        self.dome_c = np.column_stack([u(0.3, 0.6, 2), u(-0.2, 0.15, 2)])
        self.dome_tilt = u(0.0, 0.3, 2)
        # Spine.
        self.r_vb = u(14.0, 19.0)
        self.disc_pitch, self.disc_h, self.disc_phase = u(23.0, 30.0), u(4.0, 8.0), u(0.0, 30.0)
        # Trachea and bronchi.
        self.r_t = u(6.5, 11.5)
        self.t_wall = u(1.2, 2.6)
        self.spur = u(0.0, 0.7)                # how far beside the midline each bronchus starts (x r_b)
        self.angle = np.radians([u(18.0, 40.0), u(32.0, 60.0)])
        self.len_main = np.array([u(16.0, 28.0), u(38.0, 52.0)])
        # Heart.
        self.heart_axes = np.array([u(50.0, 66.0), u(40.0, 54.0), u(44.0, 60.0)])
        self.heart_e = u(2.0, 2.8)
        self.heart_rot = np.radians(u(-48.0, -20.0))
        self.heart_dx, self.heart_fy, self.heart_fz = u(8.0, 30.0), u(0.12, 0.35), u(0.55, 0.85)
        self.arch_z = u(14.0, 36.0)
        # Options.
        self.arms = bool(rng.random() < 0.35)
        self.arm_gap, self.arm_r = u(4.0, 28.0), u(32.0, 46.0)
        self.breasts = bool(rng.random() < 0.3)
        self.breast_r = u(35.0, 60.0)
        self.contrast = bool(rng.random() < 0.4)
        self.blood = u(160.0, 340.0) if self.contrast else u(35.0, 50.0)
        self.stomach_gas = bool(rng.random() < 0.6)
        self.rib_pitch, self.rib_drop = u(21.0, 29.0), u(30.0, 62.0)
        self.rib_top = float(self.apex.max()) + u(-8.0, 8.0)
        self.rng = rng
        self._build()

    # ------------------------------------------------------------------ profiles

    def axes(self, z: float) -> tuple[float, float]:
        """Outer half-width and half-depth of the body at ``z``."""
        s = float(_smoothstep((z - self.shoulder) / 45.0))
        a = self.a0 * (1 - s) + self.neck[0] * s
        b = self.b0 * (1 - s) + self.neck[1] * s
        t = float(np.clip((self.dome[0] - 20.0 - z) / 80.0, 0.0, 1.0))
        return a * (1 + self.abdomen * t), b * (1 + 0.5 * self.abdomen * t)

    def cavity_axes(self, z: float) -> tuple[float, float]:
        a, b = self.axes(z)
        return max(a - self.fat - self.wall, 10.0), max(b - self.fat - self.wall - 0.5 * self.back, 10.0)

    # ------------------------------------------------------------------ structures

    def _build(self) -> None:
        rng, u = self.rng, self.rng.uniform
        a_c, b_c = self.cavity_axes(0.0)
        self.a_c0, self.b_c0 = a_c, b_c
        cyc = self.cy + self.cav_dy
        self.cyc = cyc
        self.spine = np.array([self.x_mid, cyc + b_c - 0.25 * self.r_vb])
        # Trachea: a gently curved line from the neck to the carina point.
        self.carina_pt = np.array([self.x_mid + u(-6.0, 4.0), self.spine[1] - self.r_vb - u(22.0, 34.0), 0.0])
        top = self.carina_pt + np.array([u(-6.0, 6.0), u(-14.0, -4.0), 260.0])
        mid = 0.5 * (top + self.carina_pt) + np.array([u(-4.0, 4.0), u(-4.0, 4.0), 0.0])
        self.trachea_line = _bezier(top, mid, self.carina_pt, 30)
        lumen = self._bronchi()
        self.lumen = lumen
        self.airway_wall = lumen.grown(self.t_wall)
        self.oesophagus_xy = np.array([self.x_mid + u(2.0, 10.0), self.spine[1] - self.r_vb - u(6.0, 12.0)])
        # Heart, sitting on the right dome.
        hc = np.array([self.x_mid + self.heart_dx, cyc - self.heart_fy * b_c,
                       self.dome[0] + self.heart_fz * self.heart_axes[2]])
        self.heart_c = hc
        heart_top = hc[2] + 0.7 * self.heart_axes[2]
        # Aorta: ascending, arch over the left main bronchus, descending beside the spine.
        asc = np.array([self.x_mid + u(-2.0, 10.0), hc[1] + u(5.0, 18.0), heart_top - 15.0])
        desc_x, desc_y = self.spine[0] + u(18.0, 28.0), self.spine[1] - self.r_vb - u(4.0, 12.0)
        arch_pts = np.vstack([
            _bezier(asc, asc + [0.0, 0.0, 30.0], [asc[0] + 4, asc[1] + 8, self.arch_z], 12),
            _bezier([asc[0] + 4, asc[1] + 8, self.arch_z], [self.x_mid + 10, self.carina_pt[1], self.arch_z + 22.0],
                    [desc_x, desc_y, self.arch_z - 4.0], 16)[1:],
            np.array([[desc_x, desc_y, self.arch_z - 30.0], [desc_x - 6.0, desc_y + 4.0, self.dome[0] - 110.0]]),
        ])
        r_ao = u(11.0, 16.0)
        self.aorta = _curve(arch_pts, r_ao, r_ao * 0.8)
        # Superior vena cava, pulmonary trunk and arteries.
        svc_x = asc[0] - r_ao - u(8.0, 14.0)
        self.svc = _curve(np.array([[svc_x, asc[1] + 2.0, 90.0], [svc_x, asc[1], heart_top - 10.0]]), u(8.0, 11.0))
        pt0 = np.array([self.x_mid + u(8.0, 20.0), hc[1] - 0.4 * self.heart_axes[1], heart_top - 20.0])
        bif = np.array([self.x_mid + u(2.0, 12.0), self.carina_pt[1] - u(8.0, 16.0), -u(10.0, 22.0)])
        r_pa = u(11.0, 15.0)
        great = _curve(np.vstack([pt0, bif]), r_pa)
        self.hila = []
        for sign in (-1.0, 1.0):
            hilum = np.array([self.carina_pt[0] + sign * u(32.0, 46.0), self.carina_pt[1] + u(0.0, 14.0), -u(14.0, 30.0)])
            self.hila.append(hilum)
            great = great + _curve(_bezier(bif, 0.5 * (bif + hilum) + [0, 0, 8.0], hilum, 12), r_pa * 0.7)
        self.great = great
        self.vessels = self._vessel_tree()
        self.ribs, self.cartilage = self._ribs()

    def _bronchi(self) -> _Sweep:
        rng, u = self.rng, self.rng.uniform
        c = self.carina_pt
        sweep = _curve(self.trachea_line, self.r_t)
        # The trachea ends flat at the carina: spheres stop one radius above it, and a
        # cylinder fills the last radius down to the carina plane.
        keep = sweep.c[:, 2] >= c[2] + self.r_t
        sweep = _Sweep(sweep.c[keep], sweep.r[keep])
        sweep = sweep + _Sweep(np.array([c + [0.0, 0.0, 0.5 * self.r_t]]), np.array([self.r_t]),
                               np.array([0.5 * self.r_t + 0.3]))
        for side, sign in enumerate((-1.0, 1.0)):
            ang, length = self.angle[side], self.len_main[side]
            rb = self.r_t * (0.78 if side == 0 else 0.68)
            start = c + np.array([sign * self.spur * rb, u(-1.0, 1.0), -0.15 * rb])
            d = np.array([sign * np.sin(ang), u(0.0, 0.25), -np.cos(ang)])
            d /= np.linalg.norm(d)
            end_pt = start + d * length
            bend = start + d * 0.5 * length + np.array([sign * u(0.0, 4.0), u(-2.0, 2.0), u(-3.0, 0.0)])
            sweep = sweep + _curve(_bezier(start, bend, end_pt, 16), rb, rb * 0.9)
            # Lobar bronchi: upper lobe bronchus lateral (slightly up or down), the rest down.
            ul_from = start + d * (length * (0.55 if side == 0 else 1.0))
            ul_dir = np.array([sign * 1.0, u(-0.3, 0.2), u(-0.25, 0.12)])
            ul_dir /= np.linalg.norm(ul_dir)
            sweep = sweep + _curve(np.vstack([ul_from, ul_from + ul_dir * u(14.0, 24.0)]), rb * 0.62, rb * 0.5)
            lower_dir = np.array([sign * u(0.1, 0.45), u(0.0, 0.4), -1.0])
            lower_dir /= np.linalg.norm(lower_dir)
            lo_end = end_pt + lower_dir * u(28.0, 42.0)
            sweep = sweep + _curve(np.vstack([end_pt, lo_end]), rb * 0.75, rb * 0.55)
            for _ in range(2):
                dd = np.array([sign * u(0.2, 0.9), u(-0.6, 0.7), -u(0.4, 1.0)])
                dd /= np.linalg.norm(dd)
                sweep = sweep + _curve(np.vstack([lo_end, lo_end + dd * u(15.0, 28.0)]), rb * 0.45, rb * 0.3)
        return sweep

    def _vessel_tree(self) -> _Sweep:
        rng, u = self.rng, self.rng.uniform
        out = _Sweep.empty()
        for side, sign in enumerate((-1.0, 1.0)):
            hilum = self.hila[side]
            trunks = [
                np.array([sign * 0.4, u(-0.4, 0.2), 1.0]),    # upper
                np.array([sign * 1.0, u(-0.5, 0.3), u(-0.2, 0.2)]),  # middle
                np.array([sign * 0.4, u(0.0, 0.5), -1.0]),    # lower
                np.array([sign * 0.6, u(-0.2, 0.6), -0.7]),
            ]
            stack = [(hilum, d / np.linalg.norm(d), u(4.0, 6.0), 0) for d in trunks]
            while stack:
                p, d, r, gen = stack.pop()
                length = u(14.0, 30.0) * (0.6 + 0.4 * r / 5.0)
                q = p + d * length
                out = out + _curve(np.vstack([p, q]), r, r * 0.9)
                if gen < 4 and r > 1.1:
                    for _ in range(2):
                        k = rng.standard_normal(3)
                        k -= k @ d * d
                        k /= max(np.linalg.norm(k), 1e-9)
                        spread = np.radians(u(20.0, 45.0))
                        nd = np.cos(spread) * d + np.sin(spread) * k
                        stack.append((q, nd / np.linalg.norm(nd), r * u(0.68, 0.8), gen + 1))
        return out

    def _ribs(self) -> tuple[_Sweep, _Sweep]:
        u = self.rng.uniform
        ribs, cart = _Sweep.empty(), _Sweep.empty()
        r = u(3.5, 5.0)
        for i in range(12):
            z_post = self.rib_top - 6.0 - i * self.rib_pitch
            a_c, b_c = self.cavity_axes(z_post)
            if i == 0:
                a_c, b_c = a_c * 0.75, b_c * 0.8
            for sign in (-1.0, 1.0):
                th = np.radians(np.linspace(95.0, -85.0, 60))
                x = self.cx + sign * (a_c + 0.5 * self.wall) * np.cos(th)
                y = self.cyc + (b_c + 0.5 * self.wall) * np.sin(th)
                z = z_post - self.rib_drop * (1.0 - np.sin(th)) / 2.0 * (0.6 if i == 0 else 1.0)
                pts = np.column_stack([x, y, z])
                bone = th > np.radians(-45.0)
                ribs = ribs + _curve(pts[bone], r)
                if i < 10:
                    cart = cart + _curve(pts[~bone], r * 0.9)
        return ribs, cart

    # ------------------------------------------------------------------ fields

    def superellipse(self, X, Y, cx, cy, a, b, p) -> np.ndarray:
        return np.abs((X - cx) / a) ** p + np.abs((Y - cy) / b) ** p

    def apex_surface(self, side: int, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        sign = (-1.0, 1.0)[side]
        fx, fy = self.apex_xy[side]
        ax, ay = self.cx + sign * fx * self.a_c0, self.cyc + fy * self.b_c0
        rho = np.sqrt((X - ax) ** 2 + (0.8 * (Y - ay)) ** 2)
        k = self.apex_drop60[side] / 60.0 ** self.apex_q[side]
        return self.apex[side] - k * rho ** self.apex_q[side]

    def dome_surface(self, side: int, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        sign = (-1.0, 1.0)[side]
        fx, fy = self.dome_c[side]
        dx = X - (self.cx + sign * fx * self.a_c0)
        dy = Y - (self.cyc + fy * self.b_c0)
        sx, sy = self.dome_s[side] * np.array([self.a_c0, self.b_c0])
        g = np.exp(-0.5 * ((dx / sx) ** 2 + (dy / sy) ** 2))
        return self.dome[side] - self.dome_h[side] * (1.0 - g) - self.dome_tilt[side] * np.maximum(dy, 0.0)

    def heart(self, X, Y, z: float) -> np.ndarray:
        a, b, c = self.heart_axes
        wz = abs((z - self.heart_c[2]) / c) ** self.heart_e
        if wz >= 1.0:
            return np.zeros(X.shape, dtype=bool)
        ca, sa = np.cos(self.heart_rot), np.sin(self.heart_rot)
        dx, dy = X - self.heart_c[0], Y - self.heart_c[1]
        uu = (dx * ca + dy * sa) / a
        vv = (-dx * sa + dy * ca) / b
        return np.abs(uu) ** self.heart_e + np.abs(vv) ** self.heart_e < 1.0 - wz


class _Renderer:
    """Renders sub-slices of a :class:`_PatientB` on an image grid."""

    def __init__(self, pt: _PatientB, X: np.ndarray, Y: np.ndarray, spacing: float, texture_seed: int) -> None:
        self.pt, self.X, self.Y, self.sp = pt, X, Y, spacing
        self.top = [pt.apex_surface(s, X, Y) for s in (0, 1)]
        self.dome = [pt.dome_surface(s, X, Y) for s in (0, 1)]
        self.right = X < pt.x_mid
        trng = np.random.default_rng(texture_seed)
        tex = ndimage.gaussian_filter(trng.standard_normal((2, *X.shape)).astype(np.float32), (0, 2.5, 2.5))
        self.tex = tex / max(float(tex.std()), 1e-6)

    def render(self, z: float) -> tuple[np.ndarray, float, float]:
        """One sub-slice at ``z``: HU image, lung area and dome area (mm²)."""
        pt, X, Y, sp = self.pt, self.X, self.Y, self.sp
        tex, tex2 = self.tex
        hu, body, cavity, a_c, b_c = self._trunk(z)
        med, heart, aorta, great = self._mediastinum(z, cavity, b_c)
        hu[med & cavity] = -60.0 + 25.0 * tex2[med & cavity]
        # Lungs and domes.
        lung = np.zeros(X.shape, dtype=bool)
        dome_area = 0.0
        for side in (0, 1):
            field = cavity & ~med & (self.right if side == 0 else ~self.right) & (z < self.top[side])
            under = field & (z < self.dome[side])
            dome_area = max(dome_area, float(np.count_nonzero(under)) * sp * sp)
            lung |= field & ~under
        belly = cavity & ~lung & (z < np.where(self.right, self.dome[0], self.dome[1])) & ~heart
        self._abdomen(hu, z, belly, a_c, b_c)
        hu[lung] = -850.0 + 30.0 * tex2[lung]
        vessels = _discs(pt.vessels, z, X, Y, sp) & lung
        hu[vessels] = pt.blood if pt.contrast else 40.0
        hc = heart & cavity
        hu[hc] = (pt.blood * 0.85 if pt.contrast else 42.0) + 5.0 * tex[hc]
        hu[aorta & cavity] = pt.blood
        hu[great & cavity] = pt.blood * (0.9 if pt.contrast else 1.0)
        ox, oy = pt.oesophagus_xy
        hu[((X - ox) ** 2 + (Y - oy) ** 2 < 9.0**2) & cavity] = 35.0
        self._spine_and_wall(hu, z, body, cavity, b_c)
        return hu, float(np.count_nonzero(lung)) * sp * sp, dome_area

    def _trunk(self, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """Body outline, fat, muscle, arms and the thoracic cavity: HU, body, cavity, cavity axes."""
        pt, X, Y = self.pt, self.X, self.Y
        tex = self.tex[0]
        a, b = pt.axes(z)
        body = pt.superellipse(X, Y, pt.cx, pt.cy, a, b, pt.p) < 1.0
        if pt.breasts and pt.dome[0] - 20.0 < z < pt.dome[0] + 110.0:
            for sign in (-1.0, 1.0):
                bx, by = pt.cx + sign * 0.45 * a, pt.cy - 0.8 * b
                body |= ((X - bx) ** 2 + (Y - by) ** 2) < pt.breast_r**2
        inner = pt.superellipse(X, Y, pt.cx, pt.cy + 0.3 * pt.back, max(a - pt.fat, 5.0),
                                max(b - pt.fat, 5.0), pt.p) < 1.0
        a_c, b_c = pt.cavity_axes(z)
        cavity = pt.superellipse(X, Y, pt.cx, pt.cyc, a_c, b_c, max(2.0, pt.p - 0.4)) < 1.0
        hu = np.full(X.shape, -1000.0, np.float32)
        hu[body] = -100.0 + 10.0 * tex[body]
        hu[inner] = 45.0 + 8.0 * tex[inner]
        if pt.arms:
            for sign in (-1.0, 1.0):
                ax_ = pt.cx + sign * (a + pt.arm_gap + pt.arm_r)
                d2 = (X - ax_) ** 2 + ((Y - pt.cy) / 1.15) ** 2
                arm = d2 < pt.arm_r**2
                hu[arm] = -90.0
                hu[d2 < (pt.arm_r - 8.0) ** 2] = 45.0
                hu[d2 < 11.0**2] = 600.0
                hu[d2 < 7.0**2] = 200.0
        hu[cavity] = 30.0 + 8.0 * tex[cavity]
        return hu, body, cavity, a_c, b_c

    def _mediastinum(
        self, z: float, cavity: np.ndarray, b_c: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Masks of the mediastinum, the heart, the aorta and the great vessels at ``z``."""
        pt, X, Y, sp = self.pt, self.X, self.Y, self.sp
        med = cavity & (np.abs(X - pt.x_mid) < pt.septum)
        sx, sy = pt.spine
        d_vb = (X - sx) ** 2 + (Y - sy) ** 2
        med |= d_vb < (pt.r_vb + 9.0) ** 2
        heart = pt.heart(X, Y, z)
        aorta = _discs(pt.aorta, z, X, Y, sp)
        great = _discs(pt.great, z, X, Y, sp) | _discs(pt.svc, z, X, Y, sp)
        med |= heart | _discs(pt.aorta.grown(3.0), z, X, Y, sp) | _discs(pt.great.grown(2.5), z, X, Y, sp)
        med |= _discs(pt.svc.grown(2.0), z, X, Y, sp)
        ox, oy = pt.oesophagus_xy
        med |= ((X - ox) ** 2 + (Y - oy) ** 2) < 14.0**2
        if z > -15.0:
            tx, ty = pt.trachea_line[np.argmin(np.abs(pt.trachea_line[:, 2] - z)), :2]
            med |= ((X - tx) ** 2 + (Y - ty) ** 2) < (pt.r_t + pt.t_wall + 6.0) ** 2
        if -60.0 < z < 50.0:  # anterior mediastinal fat
            med |= cavity & (np.abs(X - pt.x_mid) < 22.0) & (Y < pt.cyc - 0.55 * b_c)
        return med, heart, aorta, great

    def _abdomen(self, hu: np.ndarray, z: float, belly: np.ndarray, a_c: float, b_c: float) -> None:
        """Liver, spleen and stomach (with its gas) under the domes."""
        pt, X, Y = self.pt, self.X, self.Y
        tex = self.tex[0]
        if belly.any():
            liver = belly & (X < pt.x_mid + 25.0)
            hu[liver] = (105.0 if pt.contrast else 60.0) + 6.0 * tex[liver]
            left = belly & ~liver
            hu[left] = 25.0 + 6.0 * tex[left]
            spleen = left & (X > pt.x_mid + 0.45 * a_c) & (Y > pt.cyc)
            hu[spleen] = (120.0 if pt.contrast else 48.0) + 5.0 * tex[spleen]
            st_c = (pt.x_mid + 0.35 * a_c, pt.cyc - 0.2 * b_c, pt.dome[1] - 40.0)
            st = left & (((X - st_c[0]) / 45.0) ** 2 + ((Y - st_c[1]) / 35.0) ** 2 + ((z - st_c[2]) / 40.0) ** 2 < 1.0)
            hu[st] = 15.0
            if pt.stomach_gas:
                gas = st & (Y < st_c[1] - 5.0)
                hu[gas] = -980.0

    def _spine_and_wall(self, hu: np.ndarray, z: float, body: np.ndarray, cavity: np.ndarray, b_c: float) -> None:
        """Spine, ribs, cartilage, sternum and the airways (wall, then lumen)."""
        pt, X, Y, sp = self.pt, self.X, self.Y, self.sp
        tex = self.tex[0]
        sx, sy = pt.spine
        d_vb = (X - sx) ** 2 + (Y - sy) ** 2
        # Spine: body with discs, cortex, canal, posterior elements.
        in_disc = ((z - pt.disc_phase) % pt.disc_pitch) < pt.disc_h
        vb = d_vb < pt.r_vb**2
        if in_disc:
            hu[vb] = 85.0
        else:
            hu[vb] = 230.0 + 30.0 * tex[vb]
            hu[vb & (d_vb > (pt.r_vb - 2.0) ** 2)] = 600.0
        canal_y = sy + pt.r_vb + 9.0
        post = (((X - sx) / 24.0) ** 2 + ((Y - canal_y - 6.0) / 8.0) ** 2 < 1.0) | (
            (np.abs(X - sx) < 3.5) & (Y > canal_y) & (Y < canal_y + 30.0))
        hu[post & body] = 520.0
        hu[((X - sx) ** 2 + (Y - canal_y) ** 2) < 8.0**2] = 15.0
        # Ribs, cartilage, sternum.
        hu[_discs(pt.ribs, z, X, Y, sp) & body] = 480.0
        hu[_discs(pt.cartilage, z, X, Y, sp) & body] = 120.0
        if pt.dome[0] + 10.0 < z < pt.rib_top - 25.0:
            st_y = pt.cyc - b_c - 0.45 * pt.wall
            hu[(((X - pt.x_mid) / 14.0) ** 2 + ((Y - st_y) / 6.0) ** 2 < 1.0) & body] = 320.0
        # Airways: wall, then lumen.
        hu[_discs(pt.airway_wall, z, X, Y, sp) & cavity] = 55.0
        if z > pt.shoulder - 10.0:
            wall = _discs(pt.airway_wall, z, X, Y, sp) & body
            hu[wall] = 55.0
        lumen = _discs(pt.lumen, z, X, Y, sp) & body
        hu[lumen] = -1000.0

    def divided(self, zs: np.ndarray, thickness: float) -> np.ndarray:
        """Per slice: whether the slab-averaged lumen (0.4 mm grid) shows two or more lumens."""
        pt = self.pt
        g = np.arange(-48.0, 48.0, _GRID)
        gx, gy = np.meshgrid(pt.carina_pt[0] + g, pt.carina_pt[1] + g)
        min_px = MIN_LUMEN_AREA_MM2 / _GRID**2
        out = np.zeros(len(zs), dtype=bool)
        for i, z in enumerate(zs):
            if z > 25.0 or z < -70.0:
                continue
            frac = sum(_discs(pt.lumen, float(z + o * thickness), gx, gy, _GRID).astype(np.float32)
                       for o in _SUBSLICES)
            labels, count = ndimage.label(frac > len(_SUBSLICES) / 2.0)
            if count >= 2:
                sizes = ndimage.sum_labels(np.ones_like(frac), labels, index=np.arange(1, count + 1))
                out[i] = int(np.sum(sizes >= min_px)) >= 2
        return out


# --------------------------------------------------------------------------- image formation


def _fourier_filter(hu: np.ndarray, spacing: float, rng: np.random.Generator, sharp: float,
                    fc: float, noise: float, nps_peak: float) -> np.ndarray:
    """Apply an MTF (Gaussian roll-off ``fc`` in cycles/mm with mid-frequency boost ``sharp``)
    and add noise with a ramp-shaped NPS peaking near ``nps_peak`` cycles/mm, per slice."""
    n = hu.shape[-1]
    f = np.fft.fftfreq(n, d=spacing)
    fr = np.sqrt(f[None, :] ** 2 + f[:, None] ** 2)
    mtf = (1.0 + sharp * (fr / fc) ** 2) * np.exp(-((fr / fc) ** 2))
    nps = fr * np.exp(-((fr / nps_peak) ** 2))
    out = np.empty_like(hu)
    for i in range(hu.shape[0]):
        img = np.real(np.fft.ifft2(np.fft.fft2(hu[i]) * mtf))
        w = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * nps))
        out[i] = img + w * (noise / max(float(w.std()), 1e-9))
    return out


def generate_chest_ct_b(
    seed: int = 0,
    *,
    slice_thickness: float = 4.0,
    size: int = 256,
    patient_name: str = "Phantom^ChestB",
    patient_id: str | None = None,
    study_instance_uid: str | None = None,
) -> ChestCTPhantom:
    """Generate one family-B chest CT series with its landmark truth.

    Parameters
    ----------
    seed:
        Seed of everything random except the UIDs.
    slice_thickness:
        Slice thickness and spacing (mm).
    size:
        Matrix size; the field of view (300-500 mm) follows the patient (and arms).
    patient_name, patient_id, study_instance_uid:
        As for :func:`models.phantoms.chest_ct.generate_chest_ct` (ID default
        ``CHESTCTB-<seed>``).

    Returns
    -------
    ChestCTPhantom
        ``info`` holds ``noise_hu``, ``contrast``, ``arms``, ``fov_mm`` and ``sharpness``;
        ``carina_z`` is the z of the plane where the trachea ends and the bronchi begin.
    """
    if slice_thickness <= 0 or slice_thickness > 10:
        raise ValueError(f"slice_thickness must be in (0, 10] mm, got {slice_thickness}")
    rng = np.random.default_rng([int(seed), 0xB])
    pt = _PatientB(rng)
    half = pt.a0 + (pt.arm_gap + 2 * pt.arm_r if pt.arms else 0.0) + abs(pt.cx)
    fov = float(np.clip(2.0 * half + rng.uniform(20.0, 80.0), 300.0, 500.0))
    spacing = fov / size
    coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * spacing
    X, Y = np.meshgrid(coords, coords)
    renderer = _Renderer(pt, X, Y, spacing, int(rng.integers(0, 2**31 - 1)))

    top = float(pt.apex.max()) + rng.uniform(8.0, 40.0)
    bottom = float(pt.dome.max()) - rng.uniform(30.0, 75.0)
    n = int(round((top - bottom) / slice_thickness)) + 1
    zs = bottom + slice_thickness * np.arange(n)
    z_offset = float(rng.uniform(-500.0, -80.0))
    hu = np.empty((n, size, size), dtype=np.float32)
    lung_area, dome_area = np.zeros(n), np.zeros(n)
    for i, z in enumerate(zs):
        acc = np.zeros((size, size), dtype=np.float32)
        for o in _SUBSLICES:
            sub, la, da = renderer.render(float(z + o * slice_thickness))
            acc += sub
            lung_area[i] = max(lung_area[i], la)
            dome_area[i] = max(dome_area[i], da)
        hu[i] = acc / len(_SUBSLICES)

    # Table: a flat board (carbon shell, foam core) and sometimes a pad.
    back = pt.cy + pt.b0 * 1.02
    pad = rng.uniform(6.0, 25.0) if rng.random() < 0.3 else 0.0
    board = back + pad + rng.uniform(0.0, 6.0)
    width = rng.uniform(190.0, 240.0)
    xs = np.abs(X - pt.cx) < width
    if pad:
        hu[:, xs & (Y > back - 4.0) & (Y < back + pad) & (hu[0] < -500.0)] = rng.uniform(-350.0, -150.0)
    hu[:, xs & (Y >= board) & (Y < board + 2.5)] = 200.0
    hu[:, xs & (Y >= board + 2.5) & (Y < board + 14.0)] = -880.0
    hu[:, xs & (Y >= board + 14.0) & (Y < board + 16.0)] = 200.0

    noise = rng.uniform(8.0, 45.0) * float(np.clip(pt.a0 / 150.0, 0.8, 1.3)) * np.sqrt(4.0 / slice_thickness)
    sharp = rng.uniform(0.0, 1.2)
    fc = rng.uniform(0.35, 0.8)            # cycles/mm
    nps_peak = rng.uniform(0.15, 0.45)
    hu = _fourier_filter(hu, spacing, rng, sharp, fc, noise, nps_peak).astype(np.float32)
    outside = -3024.0 if rng.random() < 0.4 else -1024.0
    hu[:, (X**2 + Y**2) > (fov / 2) ** 2] = outside
    hu_i = np.clip(np.rint(hu), -3024, 3071).astype(np.int16)

    divided = renderer.divided(zs, slice_thickness)
    landmarks = landmark_truth(lung_area, dome_area, divided)
    z_abs = zs + z_offset
    datasets = build_series(
        hu_i, (spacing, spacing), slice_thickness, z_origin=float(z_abs[0]),
        patient=Patient(name=patient_name, id=patient_id if patient_id is not None else default_patient_id(seed), sex="O"),
        study=Study(instance_uid=study_instance_uid, description="CT THORAX"),
        series=SeriesSpec(
            body_part="CHEST", description=f"THORAX {slice_thickness:g}mm B",
            window=(-550.0, 1600.0), manufacturer="ainode phantom B",
            extra={"ConvolutionKernel": "B" if sharp < 0.6 else "SHARP"},
        ),
    )
    return ChestCTPhantom(
        datasets=datasets, hu=hu_i, landmarks=landmarks, z_positions=z_abs, lung_area_mm2=lung_area,
        dome_area_mm2=dome_area, carina_z=float(pt.carina_pt[2] + z_offset), seed=int(seed),
        airway_divided=divided, pixel_spacing=spacing, slice_thickness=float(slice_thickness),
        info={"noise_hu": float(noise), "contrast": float(pt.contrast), "arms": float(pt.arms), "fov_mm": fov,
              "sharpness": float(sharp)},
    )
