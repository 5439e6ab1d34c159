"""Synthetic chest CT with lung apex, carina and diaphragm landmarks and their truth slices.

Anatomy (mm, patient coordinates: +x patient left, +y posterior, +z superior; varied per
seed): an elliptical trunk with skin, subcutaneous fat of varying thickness and a muscle
layer, narrowing towards the neck; ribs (oblique rings, higher at the back) and a sternum;
a spine (vertebral body, canal, posterior elements); two lungs whose apices are paraboloid
caps of varying height and sharpness (left and right differ), whose bases rest on two
diaphragm domes (the left lower than the right) with deep costophrenic recesses, and whose
medial borders follow the mediastinum; a trachea (lumen and cartilage wall) that descends
in the midline and divides at the carina into a steep right and a flatter left main
bronchus, each splitting again into lobar bronchi; the heart on the diaphragm, the aorta
(ascending, arch, descending) and the oesophagus; a pulmonary vessel tree from each hilum;
liver under the right dome, spleen and a stomach (sometimes with a gas bubble) under the
left; in half of the patients subpleural basal reticulation (interstitial pneumonia-like)
as a hard negative for the diaphragm classifier. Each slice averages three sub-slices over
its thickness (partial volume), then in-plane blur, correlated noise and the
reconstruction circle; a patient table lies under the back.

Ground truth, as slice indices of the series sorted inferior to superior (index 0 is the
lowest slice, like :func:`node.packs.protocol.sort_slices`):

* **apex**: the most superior slice in which lung is visible, i.e. lung covers at least
  :data:`MIN_VISIBLE_AREA_MM2` in one of its sub-slices ("the slice where the uppermost
  lung first appears");
* **carina**: the most superior slice in which the airway shows as two separate lumens
  ("the slice where the trachea divides"): on a 0.4 mm grid, the lumen of the slice is
  where at least two of its three sub-slices are lumen, and two lumens of at least
  :data:`MIN_LUMEN_AREA_MM2` must be present (so it is the first slice below the spur
  between the main bronchi, not where their centre lines meet). Only the trachea and the
  two main bronchi count: a lobar bronchus that rises beside the trachea is not where the
  trachea divides (before 2026-11-25 it counted, and put the truth of about one phantom in
  three 1-2 slices above the division);
* **diaphragm**: the slice just above the highest slice in which the diaphragm dome is
  visible inside a lung field (dome tissue covering at least
  :data:`MIN_VISIBLE_AREA_MM2` in one sub-slice): "the last slice before the lung fields
  give way to the dome".

Randomised styles (``styles=True``, :class:`ChestCTStyle`, drawn from a random stream of
their own so that plain phantoms are unchanged): noise level and grain, reconstruction blur or
edge enhancement, slice thickness (3-5 mm) and spacing, field of view and matrix, patient
size, fat and position, tracheal radius, bronchial angles and the carina spur, IV contrast, a
HU offset and the value outside the reconstruction circle. The same seed gives the same
styled phantom. A second, independently written family is :mod:`models.phantoms.chest_ct_b`.

The series spans from 10-35 mm above the higher apex to 35-65 mm below the higher dome,
so a 4 mm series has about 60-90 slices; patient size, table height (z offset), slice
count and noise level vary with the seed.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.chest_ct_landmarks.findings import LANDMARKS
from models.phantoms.ct_series import Patient, SeriesSpec, Study, build_series

__all__ = [
    "LANDMARKS",
    "MIN_LUMEN_AREA_MM2",
    "MIN_VISIBLE_AREA_MM2",
    "ChestCTPhantom",
    "ChestCTStyle",
    "add_cli_arguments",
    "generate_chest_ct",
    "run_cli",
    "write_phantom",
    "default_patient_id",
    "random_style",
]

MIN_VISIBLE_AREA_MM2 = 30.0
"""Area (mm²) from which lung (apex) or dome (diaphragm) counts as visible in a sub-slice."""

MIN_LUMEN_AREA_MM2 = 4.0
"""Smallest airway lumen (mm²) counted when deciding whether a slice shows the airway divided."""

_SUBSLICES = (-1.0 / 3.0, 0.0, 1.0 / 3.0)
_FAT, _MUSCLE, _SOFT, _BLOOD, _LIVER, _SPLEEN = -95.0, 50.0, 35.0, 42.0, 58.0, 48.0
_LUNG = -860.0


@dataclass
class ChestCTPhantom:
    """A synthetic chest CT series and its landmark truth.

    Attributes
    ----------
    datasets:
        One CT Image dataset per slice, sorted inferior to superior.
    hu:
        ``(n, size, size)`` int16 Hounsfield units, slice 0 the most inferior.
    landmarks:
        Landmark name → truth slice index (into ``datasets``).
    z_positions:
        ``(n,)`` slice centre z (mm, Image Position Patient).
    lung_area_mm2, dome_area_mm2:
        ``(n,)`` the largest visible lung / dome area over each slice's sub-slices.
    airway_divided:
        ``(n,)`` whether the slice shows the airway as two or more lumens.
    carina_z:
        z (mm) of the spur between the main bronchi, where the lumen divides.
    seed:
        The seed.
    """

    datasets: list[Dataset]
    hu: np.ndarray
    landmarks: dict[str, int]
    z_positions: np.ndarray
    lung_area_mm2: np.ndarray
    dome_area_mm2: np.ndarray
    carina_z: float
    seed: int
    airway_divided: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    pixel_spacing: float = 1.0
    slice_thickness: float = 4.0
    info: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- anatomy


@dataclass
class _Anatomy:
    """Random parameters of one patient, z relative to the carina (0)."""

    centre: np.ndarray            # trunk centre (x, y)
    axes: np.ndarray              # outer trunk semi-axes (x, y)
    fat: float
    muscle: float
    wall: float
    apex: np.ndarray              # apex z (right, left)
    apex_sharpness: np.ndarray    # depth over which each apex reaches full width
    dome: np.ndarray              # dome top z (right, left)
    dome_drop: np.ndarray         # how far each dome falls at the lung's lateral edge
    dome_centre: np.ndarray       # (2, 2) dome centre offsets (x, y) per side
    lung_shape: np.ndarray        # (2, 3): width scale, depth scale, medial gap per side
    spine_y: float
    trachea_r: float
    bronchus_angle: np.ndarray    # right, left (radians from vertical)
    bronchus_len: np.ndarray
    heart: np.ndarray             # centre (x, y, z) and semi-axes (a, b, c) and angle
    aorta_arch_z: float
    fibrosis: bool
    stomach_gas: bool
    noise: float
    spur: float = 0.0             # main bronchi start this many bronchus radii beside the midline
    blood: float = _BLOOD         # heart, aorta and vessels (HU); higher with IV contrast
    liver: float = _LIVER
    spleen: float = _SPLEEN


@dataclass
class ChestCTStyle:
    """Randomised scanner and patient style of a family-A phantom (``styles=True``).

    Drawn from its own random stream (``default_rng([seed, 0x57])``), so a seed without
    styles gives exactly the phantom it always gave, and a seed with styles always the
    same styled phantom.
    """

    slice_thickness: float        # mm
    spacing_ratio: float          # slice spacing / thickness (<= 1: overlapping slices)
    size: int                     # matrix
    fov_extra: float              # mm beyond the patient's width
    body_scale: float             # patient size
    fat_scale: float
    shift: tuple[float, float]    # patient position (mm)
    trachea_r: float
    bronchus_angle: tuple[float, float]  # degrees from vertical (right, left)
    spur: float
    contrast: bool
    blood: float
    noise: float                  # HU at 4 mm
    noise_grain: float            # Gaussian sigma (pixels) of the noise correlation
    blur: float                   # in-plane Gaussian sigma (pixels)
    sharpen: float                # unsharp-mask amount (edge-enhancing kernels)
    hu_offset: float              # calibration offset (HU)
    outside: float                # value outside the reconstruction circle


def random_style(seed: int) -> ChestCTStyle:
    """The style that ``generate_chest_ct(seed, styles=True)`` uses."""
    rng = np.random.default_rng([int(seed), 0x57])
    u = rng.uniform
    contrast = bool(rng.random() < 0.4)
    return ChestCTStyle(
        slice_thickness=float(u(3.0, 5.0)),
        spacing_ratio=float(u(0.8, 1.0)) if rng.random() < 0.4 else 1.0,
        size=int(rng.choice([192, 256, 320])),
        fov_extra=float(u(10.0, 140.0)),
        body_scale=float(u(0.85, 1.2)),
        fat_scale=float(u(0.5, 1.6)),
        shift=(float(u(-30.0, 30.0)), float(u(-20.0, 25.0))),
        trachea_r=float(u(6.0, 12.0)),
        bronchus_angle=(float(u(15.0, 42.0)), float(u(30.0, 62.0))),
        spur=float(u(0.0, 0.7)),
        contrast=contrast,
        blood=float(u(150.0, 350.0)) if contrast else float(u(35.0, 50.0)),
        noise=float(u(6.0, 55.0)),
        noise_grain=float(u(0.35, 1.5)),
        blur=float(u(0.3, 1.2)),
        sharpen=float(u(0.0, 1.2)) if rng.random() < 0.5 else 0.0,
        hu_offset=float(u(-15.0, 15.0)),
        outside=-3024.0 if rng.random() < 0.3 else -1024.0,
    )


def _apply_style(a: "_Anatomy", st: ChestCTStyle) -> None:
    a.axes = a.axes * st.body_scale
    a.fat = a.fat * st.fat_scale * st.body_scale
    a.centre = a.centre + np.array(st.shift)
    a.trachea_r = st.trachea_r
    a.bronchus_angle = np.radians(np.array(st.bronchus_angle))
    a.spur = st.spur
    a.blood = st.blood
    if st.contrast:
        a.liver, a.spleen = a.liver + 45.0, a.spleen + 60.0
    a.noise = st.noise


def _random_anatomy(rng: np.random.Generator) -> _Anatomy:
    size = rng.uniform(0.85, 1.15)
    axes = np.array([150.0 * size * rng.uniform(0.95, 1.05), 108.0 * size * rng.uniform(0.9, 1.08)])
    fat = rng.uniform(6.0, 28.0) * size
    muscle = rng.uniform(7.0, 14.0)
    apex_r = rng.uniform(65.0, 90.0)
    dome_r = -rng.uniform(115.0, 160.0)
    return _Anatomy(
        centre=np.array([rng.uniform(-12, 12), rng.uniform(-10, 15)]),
        axes=axes,
        fat=fat,
        muscle=muscle,
        wall=rng.uniform(9.0, 13.0),
        apex=np.array([apex_r, apex_r + rng.uniform(-8.0, 8.0)]),
        apex_sharpness=rng.uniform(30.0, 60.0, size=2),
        dome=np.array([dome_r, dome_r - rng.uniform(5.0, 20.0)]),
        dome_drop=rng.uniform(35.0, 60.0, size=2),
        dome_centre=rng.uniform(-12.0, 12.0, size=(2, 2)),
        lung_shape=np.column_stack([rng.uniform(0.9, 1.05, 2), rng.uniform(0.85, 1.0, 2), rng.uniform(0.0, 8.0, 2)]),
        spine_y=0.0,
        trachea_r=rng.uniform(7.0, 10.0),
        bronchus_angle=np.radians([rng.uniform(20.0, 32.0), rng.uniform(40.0, 52.0)]),
        bronchus_len=np.array([rng.uniform(26.0, 36.0), rng.uniform(40.0, 52.0)]),
        heart=np.array([
            rng.uniform(12.0, 28.0), 0.0, 0.0,
            rng.uniform(52.0, 66.0), rng.uniform(44.0, 54.0), rng.uniform(46.0, 58.0),
            np.radians(rng.uniform(-40.0, -20.0)),
        ]),
        aorta_arch_z=rng.uniform(14.0, 30.0),
        fibrosis=bool(rng.random() < 0.5),
        stomach_gas=bool(rng.random() < 0.6),
        noise=rng.uniform(12.0, 35.0),
    )


@dataclass
class _Tube:
    """A capsule: the points within ``r`` of the segment ``p0``-``p1`` (mm)."""

    p0: np.ndarray
    p1: np.ndarray
    r: float


def _polyline(points: list[tuple[float, float, float]], radius: float) -> list[_Tube]:
    pts = [np.asarray(p, dtype=np.float64) for p in points]
    return [_Tube(a, b, radius) for a, b in zip(pts[:-1], pts[1:])]


class _Body:
    """Geometry of one patient placed in scanner coordinates; renders sub-slices."""

    def __init__(self, a: _Anatomy, rng: np.random.Generator, X: np.ndarray, Y: np.ndarray, spacing: float) -> None:
        self.a, self.X, self.Y, self.spacing = a, X, Y, spacing
        cx, cy = a.centre
        inner = a.axes - a.fat - a.muscle - a.wall
        self.inner = inner
        self.spine = np.array([cx, cy + a.axes[1] - a.fat - a.muscle - 40.0])
        a.spine_y = float(self.spine[1])
        self.trachea_xy = np.array([cx + rng.uniform(-4, 4), self.spine[1] - 44.0])
        hx, hy = cx + a.heart[0], cy - 0.28 * inner[1]
        self.heart_centre = np.array([hx, hy, a.dome[0] + a.heart[5] * 0.75])
        self.heart_axes = a.heart[3:6]
        self.heart_angle = float(a.heart[6])
        # Lungs: footprint ellipses per side (0 right = -x, 1 left = +x).
        self.lungs = []
        for side, sign in enumerate((-1.0, 1.0)):
            wscale, dscale, gap = a.lung_shape[side]
            ax = 0.5 * inner[0] * wscale - gap * 0.5
            ay = inner[1] * dscale
            centre = np.array([cx + sign * (0.5 * inner[0] + gap * 0.5 + 6.0), cy + 0.05 * inner[1]])
            apex_xy = np.array([cx + sign * 0.5 * inner[0], cy + 0.25 * inner[1]])
            self.lungs.append((sign, centre, np.array([ax, ay]), apex_xy))
        lumen, walls, self.divided_airways = self._airways(rng)
        self.airways = (lumen, walls)
        self.vessels = self._vessels(rng)
        self.aorta = self._aorta()
        self.rib_phase = rng.uniform(0.0, 1.0)
        self.rib_pitch = rng.uniform(24.0, 30.0)
        self.rib_drop = rng.uniform(35.0, 55.0)
        self.texture_seed = int(rng.integers(0, 2**31 - 1))
        self.stomach = np.array([cx + 0.45 * inner[0], cy - 0.1 * inner[1], a.dome[1] - 45.0])
        self._cache: dict[object, dict[str, np.ndarray] | np.ndarray] = {}
        self._dome = [self._dome_z(0, X, Y), self._dome_z(1, X, Y)]
        ang = np.arctan2(Y - cy, X - cx)
        self._rib_lift = (self.rib_drop * (1.0 + np.sin(ang)) / 2.0).astype(np.float32)

    # ----------------------------------------------------------------- structures

    def _airways(self, rng: np.random.Generator) -> tuple[list[_Tube], list[_Tube], list[_Tube]]:
        """(lumen tubes, wall tubes) of trachea, main and lobar bronchi, and the lumen tubes
        of the trachea and the two main bronchi alone (where the trachea divides)."""
        a = self.a
        tx, ty = self.trachea_xy
        r = a.trachea_r
        lumen = _polyline([(tx, ty, 400.0), (tx, ty, 0.0)], r)
        divided = list(lumen)
        for side, sign in enumerate((-1.0, 1.0)):
            ang, length = a.bronchus_angle[side], a.bronchus_len[side]
            rb = r * (0.8 if side == 0 else 0.7)
            end = np.array([tx + sign * length * np.sin(ang), ty + 6.0, -length * np.cos(ang)])
            start = np.array([tx + sign * a.spur * rb, ty, -0.2 * a.spur * rb])
            lumen.append(_Tube(start, end, rb))
            divided.append(lumen[-1])
            for k in range(2):
                d = np.array([sign * rng.uniform(0.3, 0.9), rng.uniform(-0.6, 0.6), rng.choice([-1.0, 0.6]) * rng.uniform(0.6, 1.0)])
                d /= np.linalg.norm(d)
                lumen.append(_Tube(end, end + d * rng.uniform(25.0, 40.0), rb * 0.6))
        walls = [_Tube(t.p0, t.p1, t.r + 1.6) for t in lumen]
        return lumen, walls, divided

    def _vessels(self, rng: np.random.Generator) -> list[_Tube]:
        """A three-generation vessel tree from each hilum to random points in the lung."""
        tubes: list[_Tube] = []
        tx, ty = self.trachea_xy
        for side, (sign, centre, axes, _) in enumerate(self.lungs):
            hilum = np.array([tx + sign * 38.0, ty + 8.0, -18.0])
            z_top, z_bot = self.a.apex[side] - 10.0, self.a.dome[side] - 20.0
            targets = []
            while len(targets) < 36:
                p = np.array([
                    centre[0] + rng.uniform(-1, 1) * axes[0] * 0.9,
                    centre[1] + rng.uniform(-1, 1) * axes[1] * 0.9,
                    rng.uniform(z_bot, z_top),
                ])
                if self._lung_at(side, p[0:1], p[1:2], p[2])[0]:
                    targets.append(p)
            for g1 in range(6):
                group = targets[g1 * 6:(g1 + 1) * 6]
                mid1 = hilum + 0.35 * (np.mean(group, axis=0) - hilum)
                tubes.append(_Tube(hilum, mid1, rng.uniform(4.0, 5.5)))
                for g2 in range(3):
                    pair = group[g2 * 2:(g2 + 1) * 2]
                    mid2 = mid1 + 0.5 * (np.mean(pair, axis=0) - mid1)
                    tubes.append(_Tube(mid1, mid2, rng.uniform(2.4, 3.2)))
                    for p in pair:
                        tubes.append(_Tube(mid2, p, rng.uniform(1.2, 1.9)))
        return tubes

    def _aorta(self) -> list[_Tube]:
        a = self.a
        hx, hy, hz = self.heart_centre
        top = hz + self.heart_axes[2] * 0.6
        dx = self.spine[0] + 22.0
        dy = self.spine[1] - 24.0
        asc_x = self.a.centre[0] + 4.0
        pts = [
            (asc_x, hy + 10.0, top - 10.0),
            (asc_x, hy + 12.0, a.aorta_arch_z - 10.0),
            (asc_x + 6.0, hy + 22.0, a.aorta_arch_z + 2.0),
            (dx - 6.0, dy - 22.0, a.aorta_arch_z + 4.0),
            (dx, dy - 4.0, a.aorta_arch_z - 6.0),
            (dx, dy, a.aorta_arch_z - 30.0),
            (dx - 8.0, dy + 2.0, a.dome[0] - 120.0),
        ]
        return _polyline(pts[:3], 15.0) + _polyline(pts[2:], 12.0)

    # ----------------------------------------------------------------- fields

    def _lung_at(self, side: int, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        """Lung (before mediastinal exclusions and the dome) of ``side`` at height ``z``."""
        sign, centre, axes, apex_xy = self.lungs[side]
        depth = self.a.apex[side] - z
        if depth <= 0:
            return np.zeros(np.shape(x), dtype=bool)
        s = min(1.0, float(np.sqrt(depth / self.a.apex_sharpness[side])))
        c = apex_xy + (centre - apex_xy) * s
        inside = ((x - c[0]) / (axes[0] * s)) ** 2 + ((y - c[1]) / (axes[1] * s)) ** 2 < 1.0
        inner = self._cavity(x, y, self._neck_scale(z))
        return inside & inner & (sign * (x - self.a.centre[0]) > 0)

    def _dome_z(self, side: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        sign, centre, axes, _ = self.lungs[side]
        dc = centre + self.a.dome_centre[side]
        k = self.a.dome_drop[side] / axes[0] ** 2
        return self.a.dome[side] - k * ((x - dc[0]) ** 2 + 0.7 * (y - dc[1]) ** 2)

    def _neck_scale(self, z: float) -> float:
        top = float(self.a.apex.max())
        return float(np.clip(1.0 - (z - top + 5.0) / 45.0 * 0.45, 0.55, 1.0))

    def _cavity(self, x: np.ndarray, y: np.ndarray, s: float) -> np.ndarray:
        cx, cy = self.a.centre
        return ((x - cx) / (self.inner[0] * s)) ** 2 + ((y - cy) / (self.inner[1] * (0.5 + 0.5 * s))) ** 2 < 1.0

    def _tubes(self, tubes: list[_Tube], z: float) -> np.ndarray:
        """Union of the capsules' cross-sections at height ``z``."""
        X, Y, sp = self.X, self.Y, self.spacing
        out = np.zeros(X.shape, dtype=bool)
        x0, y0 = float(X[0, 0]), float(Y[0, 0])
        n_r, n_c = X.shape
        for t in tubes:
            zlo, zhi = min(t.p0[2], t.p1[2]) - t.r, max(t.p0[2], t.p1[2]) + t.r
            if not zlo <= z <= zhi:
                continue
            d = t.p1 - t.p0
            dz = d[2]
            if abs(dz) > 1e-6:
                ta = np.clip(((z - t.r) - t.p0[2]) / dz, 0, 1)
                tb = np.clip(((z + t.r) - t.p0[2]) / dz, 0, 1)
                lo, hi = min(ta, tb), max(ta, tb)
            else:
                lo, hi = 0.0, 1.0
            pa, pb = t.p0 + lo * d, t.p0 + hi * d
            bx0, bx1 = min(pa[0], pb[0]) - t.r, max(pa[0], pb[0]) + t.r
            by0, by1 = min(pa[1], pb[1]) - t.r, max(pa[1], pb[1]) + t.r
            c0, c1 = max(0, int((bx0 - x0) / sp)), min(n_c, int((bx1 - x0) / sp) + 2)
            r0, r1 = max(0, int((by0 - y0) / sp)), min(n_r, int((by1 - y0) / sp) + 2)
            if c0 >= c1 or r0 >= r1:
                continue
            px, py = X[r0:r1, c0:c1], Y[r0:r1, c0:c1]
            vx, vy, vz = px - t.p0[0], py - t.p0[1], z - t.p0[2]
            dd = float(d @ d)
            u = np.clip((vx * d[0] + vy * d[1] + vz * d[2]) / dd, 0.0, 1.0) if dd > 0 else 0.0
            dist2 = (vx - u * d[0]) ** 2 + (vy - u * d[1]) ** 2 + (vz - u * d[2]) ** 2
            out[r0:r1, c0:c1] |= dist2 < t.r * t.r
        return out

    def _static(self, s: float) -> dict[str, np.ndarray]:
        """Masks that depend on z only through the neck scale ``s`` (cached)."""
        key = round(s, 3)
        if key in self._cache:
            return self._cache[key]
        a, X, Y = self.a, self.X, self.Y
        cx, cy = a.centre
        sx, sy = self.spine
        ax, ay = a.axes[0] * s, a.axes[1] * (0.55 + 0.45 * s)
        r_body = ((X - cx) / ax) ** 2 + ((Y - cy) / ay) ** 2
        fat_scale = 1.0 - (a.fat / np.mean(a.axes))
        cavity = self._cavity(X, Y, s)
        muscle = ((X - cx) / (ax * fat_scale)) ** 2 + ((Y - cy) / (ay * fat_scale)) ** 2 < 1.0
        rib_band = ~cavity & muscle & (
            ((X - cx) / (self.inner[0] * s + a.wall)) ** 2
            + ((Y - cy) / (self.inner[1] * (0.5 + 0.5 * s) + a.wall)) ** 2 < 1.0
        )
        d_vb = (X - sx) ** 2 + (Y - sy) ** 2
        out = {
            "body": r_body < 1.0,
            "muscle": muscle,
            "skin": (r_body < 1.0) & (r_body > (1.0 - 2.5 / np.mean(a.axes)) ** 2),
            "cavity": cavity,
            "med": cavity & (((X - cx) / (36.0 * s)) ** 2 + ((Y - sy + 40.0) / 45.0) ** 2 < 1.0),
            "rib_band": rib_band,
            "sternum": (((X - cx) / 18.0) ** 2 + ((Y - (cy - self.inner[1] * (0.5 + 0.5 * s) - a.wall * 0.5)) / 7.0) ** 2 < 1.0)
            & (r_body < 1.0),
            "vb": d_vb < 17.0**2,
            "cortex": (d_vb < 17.0**2) & (d_vb > 14.5**2),
            "post": ((((X - sx) / 26.0) ** 2 + ((Y - sy - 38.0) / 9.0) ** 2 < 1.0)
                     | ((np.abs(X - sx) < 4.0) & (Y > sy + 38.0) & (Y < sy + 58.0))) & (r_body < 1.0),
            "canal": ((X - sx) ** 2 + (Y - sy - 27.0) ** 2) < 8.5**2,
            "oesophagus": ((X - sx - 6.0) ** 2 + (Y - sy + 24.0) ** 2) < 8.0**2,
            "spine_keep": d_vb < 22.0**2,
        }
        self._cache[key] = out
        return out

    def _lung_mask(self, side: int, z: float, s: float) -> np.ndarray:
        """Lung of ``side`` at ``z`` before the dome, on the image grid (cached by shape)."""
        depth = self.a.apex[side] - z
        if depth <= 0:
            return np.zeros(self.X.shape, dtype=bool)
        k = min(1.0, float(np.sqrt(depth / self.a.apex_sharpness[side])))
        key = (side, round(k, 3), round(s, 3), z > self.a.dome[0] + 30)
        if key not in self._cache:
            X, Y = self.X, self.Y
            lung = self._lung_at(side, X, Y, z)
            st = self._static(s)
            lung &= ~st["oesophagus"] & ~st["spine_keep"]
            lung &= ~(np.abs(X - self.a.centre[0] - (6.0 if key[3] else 12.0)) < 26.0 * s)
            self._cache[key] = lung
        return self._cache[key]

    def render(self, z: float, texture: np.ndarray) -> tuple[np.ndarray, float, float]:
        """HU of one sub-slice at ``z`` and its visible lung and dome areas (mm²)."""
        a, X, Y = self.a, self.X, self.Y
        cx = a.centre[0]
        s = self._neck_scale(z)
        st = self._static(s)
        hu = np.full(X.shape, -1000.0, dtype=np.float32)
        hu[st["body"]] = _FAT
        m = st["muscle"]
        hu[m] = _MUSCLE + 6.0 * texture[m]
        hu[st["skin"]] = 30.0
        cavity = st["cavity"]
        hu[cavity] = _SOFT + 8.0 * texture[cavity]
        med = st["med"]
        hu[med] = -70.0 + 20.0 * texture[med]

        # Ribs: oblique rings just outside the cavity, higher posteriorly.
        if a.dome[1] - 110.0 < z < a.apex.max() + 12.0:
            band = st["rib_band"]
            phase = ((z - self._rib_lift[band]) / self.rib_pitch + self.rib_phase) % 1.0
            rib = phase < 0.32
            vals = np.where(np.abs(phase - 0.16) > 0.11, 720.0, 420.0).astype(np.float32)
            sub = hu[band]
            sub[rib] = vals[rib]
            hu[band] = sub
        if a.dome[0] - 40.0 < z < a.aorta_arch_z + 30.0:
            hu[st["sternum"]] = 380.0

        # Spine.
        vb = st["vb"]
        hu[vb] = 260.0 + 25.0 * texture[vb]
        hu[st["cortex"]] = 750.0
        hu[st["post"]] = 650.0
        hu[st["canal"]] = 12.0

        # Lungs with the diaphragm domes.
        lung_total = np.zeros(X.shape, dtype=bool)
        dome_area = 0.0
        heart = self._heart(z)
        aorta = self._tubes(self.aorta, z)
        below = [z < self._dome[0], z < self._dome[1]]
        for side in (0, 1):
            lung = self._lung_mask(side, z, s) & ~heart & ~aorta
            under = lung & below[side]
            dome_area = max(dome_area, float(np.count_nonzero(under)) * self.spacing**2)
            lung_total |= lung & ~below[side]
        # Abdomen under the domes: liver right, spleen and stomach left.
        if z < a.dome[0] + 1.0:
            below_r = cavity & below[0] & ~lung_total & (X <= cx + 20.0)
            below_l = cavity & below[1] & ~lung_total & (X > cx)
            hu[below_r] = a.liver + 6.0 * texture[below_r]
            hu[below_l] = a.spleen + 6.0 * texture[below_l]
            if a.stomach_gas:
                sx_, sy_, sz_ = self.stomach
                gas = below_l & (((X - sx_) ** 2 + (Y - sy_) ** 2 + 2.0 * (z - sz_) ** 2) < 22.0**2) & (Y < sy_)
                hu[gas] = -950.0
        hu[lung_total] = _LUNG + 25.0 * texture[lung_total]
        if a.fibrosis and z < -30.0 and lung_total.any():
            edge = ndimage.distance_transform_edt(lung_total) * self.spacing
            ret = lung_total & (edge < 14.0) & (texture > 0.35)
            hu[ret] = -480.0 + 120.0 * texture[ret]

        # Vessels inside the lungs; heart and aorta.
        vess = self._tubes(self.vessels, z) & lung_total
        hu[vess] = a.blood
        hc = heart & cavity
        hu[hc] = a.blood + 4.0 * texture[hc]
        hu[aorta & cavity] = a.blood
        if z > a.dome[1] - 10.0:
            hu[st["oesophagus"] & cavity] = 40.0

        # Airways: wall then lumen.
        lumen_tubes, wall_tubes = self.airways
        hu[self._tubes(wall_tubes, z) & cavity] = 70.0
        hu[self._tubes(lumen_tubes, z) & cavity] = -1000.0
        return hu, float(np.count_nonzero(lung_total)) * self.spacing**2, dome_area

    def _heart(self, z: float) -> np.ndarray:
        hx, hy, hz = self.heart_centre
        a, b, c = self.heart_axes
        qz = ((z - hz) / c) ** 2
        if qz >= 1.0:
            return np.zeros(self.X.shape, dtype=bool)
        ca, sa = np.cos(self.heart_angle), np.sin(self.heart_angle)
        dx, dy = self.X - hx, self.Y - hy
        u = (dx * ca + dy * sa) / a
        v = (-dx * sa + dy * ca) / b
        return u * u + v * v < 1.0 - qz

    def _airway_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """A 0.4 mm grid of +-40 mm around the trachea, for the airway measurements."""
        tx, ty = self.trachea_xy
        g = np.arange(-40.0, 40.0, 0.4)
        return np.meshgrid(tx + g, ty + g)

    def _lumen_on(self, gx: np.ndarray, gy: np.ndarray, z: float) -> np.ndarray:
        saved = self.X, self.Y, self.spacing
        self.X, self.Y, self.spacing = gx, gy, 0.4
        try:
            return self._tubes(self.divided_airways, z)
        finally:
            self.X, self.Y, self.spacing = saved

    def carina_z(self) -> float:
        """Highest z at which the airway lumen is two separate lumens (0.25 mm steps)."""
        gx, gy = self._airway_grid()
        for z in np.arange(0.0, -60.0, -0.25):
            if ndimage.label(self._lumen_on(gx, gy, float(z)))[1] >= 2:
                return float(z)
        raise RuntimeError("the main bronchi never separate")

    def divided_slices(self, zs: np.ndarray, thickness: float) -> np.ndarray:
        """Per slice: whether the slab-averaged airway lumen shows two or more lumens.

        The lumen of a slice is where at least half of its sub-slices are lumen; lumens
        smaller than :data:`MIN_LUMEN_AREA_MM2` are not counted.
        """
        gx, gy = self._airway_grid()
        min_px = MIN_LUMEN_AREA_MM2 / 0.4**2
        out = np.zeros(len(zs), dtype=bool)
        for i, z in enumerate(zs):
            if z > 20.0 or z < -60.0:
                continue
            frac = sum(self._lumen_on(gx, gy, float(z + off * thickness)).astype(np.float32) for off in _SUBSLICES)
            labels, count = ndimage.label(frac > len(_SUBSLICES) / 2.0)
            if count >= 2:
                sizes = ndimage.sum_labels(np.ones_like(frac), labels, index=np.arange(1, count + 1))
                out[i] = int(np.sum(sizes >= min_px)) >= 2
        return out


# --------------------------------------------------------------------------- series


def default_patient_id(seed: int) -> str:
    """The Patient ID of this kind's phantom of ``seed`` (``CHESTCT-<seed>``): phantoms of
    different kinds or seeds, whose names, sexes and birth dates differ, are never one patient."""
    return f"CHESTCT-{seed}"


def generate_chest_ct(
    seed: int = 0,
    *,
    slice_thickness: float | None = 4.0,
    size: int | None = None,
    styles: bool = False,
    patient_name: str = "Phantom^Chest",
    patient_id: str | None = None,
    study_instance_uid: str | None = None,
) -> ChestCTPhantom:
    """Generate one chest CT series with its landmark truth.

    Parameters
    ----------
    seed:
        Seed of everything random except the UIDs (which are always fresh).
    slice_thickness:
        Slice thickness and spacing (mm); 4 mm gives about 60-90 slices, thinner slices
        give proportionally more. ``None``: 4 mm, or the style's (3-5 mm, sometimes with
        overlapping slices) with ``styles``.
    size:
        Matrix size; the field of view (320-480 mm) follows the patient's width. ``None``:
        256, or the style's (192, 256 or 320) with ``styles``.
    styles:
        Draw a :class:`ChestCTStyle` (:func:`random_style`): noise level and grain,
        reconstruction blur or edge enhancement, slice thickness and spacing, field of view
        and matrix, patient size, fat and position, tracheal radius, bronchial angles and
        carina spur, IV contrast, HU offset, the value outside the reconstruction circle.
        Without it the phantom of a seed is the one it has always been.
    patient_name, patient_id:
        Patient's Name and ID (``patient_id`` defaults to ``CHESTCT-<seed>``, so phantoms of
        different kinds or seeds are different patients).
    study_instance_uid:
        Put the series in this study (default: a new study).

    Returns
    -------
    ChestCTPhantom
    """
    style = random_style(seed) if styles else None
    spacing_z = slice_thickness
    if slice_thickness is None:
        slice_thickness = style.slice_thickness if style else 4.0
        spacing_z = slice_thickness * (style.spacing_ratio if style else 1.0)
    spacing_z = float(spacing_z)
    if size is None:
        size = style.size if style else 256
    if slice_thickness <= 0 or slice_thickness > 10:
        raise ValueError(f"slice_thickness must be in (0, 10] mm, got {slice_thickness}")
    rng = np.random.default_rng(seed)
    anatomy = _random_anatomy(rng)
    if style is not None:
        _apply_style(anatomy, style)
    fov = float(np.clip(2.0 * anatomy.axes[0] + rng.uniform(30.0, 70.0), 320.0, 480.0))
    if style is not None:
        fov = float(np.clip(2.0 * (anatomy.axes[0] + abs(anatomy.centre[0])) + style.fov_extra, 300.0, 520.0))
    spacing = fov / size
    coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * spacing
    X, Y = np.meshgrid(coords, coords)
    body = _Body(anatomy, rng, X, Y, spacing)
    carina = body.carina_z()

    top = float(anatomy.apex.max()) + rng.uniform(10.0, 35.0)
    bottom = float(anatomy.dome.max()) - rng.uniform(35.0, 65.0)
    n = int(round((top - bottom) / spacing_z)) + 1
    zs = bottom + spacing_z * np.arange(n)  # relative to the carina
    z_offset = float(rng.uniform(-420.0, -120.0))  # table position: carina height in scanner z

    hu = np.empty((n, size, size), dtype=np.float32)
    lung_area = np.zeros(n)
    dome_area = np.zeros(n)
    texture_rng = np.random.default_rng(body.texture_seed)
    for i, z in enumerate(zs):
        acc = np.zeros((size, size), dtype=np.float32)
        texture = _smooth_noise(texture_rng, (size, size), cells=max(8, int(fov / 10)))
        for off in _SUBSLICES:
            sub, la, da = body.render(float(z + off * slice_thickness), texture)
            acc += sub
            lung_area[i] = max(lung_area[i], la)
            dome_area[i] = max(dome_area[i], da)
        hu[i] = acc / len(_SUBSLICES)

    _add_table(hu, X, Y, anatomy)
    blur, grain = (style.blur, style.noise_grain) if style else (0.6, 0.7)
    hu = ndimage.gaussian_filter(hu, sigma=(0.0, blur, blur), truncate=3.0)
    if style is not None and style.sharpen > 0:
        hu += style.sharpen * (hu - ndimage.gaussian_filter(hu, sigma=(0.0, 1.5, 1.5), truncate=3.0))
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0.0, grain, grain), truncate=3.0)
    noise *= anatomy.noise * np.sqrt(4.0 / slice_thickness) / max(float(noise[0].std()), 1e-6)
    hu += noise
    if style is not None:
        hu += style.hu_offset
    outside = style.outside if style else -1024.0
    hu[:, (X**2 + Y**2) > (fov / 2) ** 2] = outside
    hu_i = np.clip(np.rint(hu), min(outside, -1024.0), 3071).astype(np.int16)

    divided = body.divided_slices(zs, slice_thickness)
    landmarks = _truth(lung_area, dome_area, divided)
    z_abs = zs + z_offset
    datasets = build_series(
        hu_i,
        (spacing, spacing),
        slice_thickness,
        slice_spacing=float(spacing_z),
        z_origin=float(z_abs[0]),
        patient=Patient(name=patient_name, id=patient_id if patient_id is not None else default_patient_id(seed), sex="O"),
        study=Study(instance_uid=study_instance_uid, description="CT CHEST"),
        series=SeriesSpec(
            body_part="CHEST",
            description=f"CHEST {slice_thickness:g}mm",
            window=(-600.0, 1500.0),
            extra={"ConvolutionKernel": "LUNG"},
        ),
    )
    return ChestCTPhantom(
        datasets=datasets,
        hu=hu_i,
        landmarks=landmarks,
        z_positions=z_abs,
        lung_area_mm2=lung_area,
        dome_area_mm2=dome_area,
        carina_z=carina + z_offset,
        seed=int(seed),
        airway_divided=divided,
        pixel_spacing=spacing,
        slice_thickness=float(slice_thickness),
        info={"noise_hu": float(anatomy.noise), "fibrosis": float(anatomy.fibrosis), "fov_mm": fov,
              "styled": float(style is not None), "slice_spacing": float(spacing_z)},
    )


def _truth(lung_area: np.ndarray, dome_area: np.ndarray, divided: np.ndarray) -> dict[str, int]:
    """Truth slice indices from the rendered areas and the airway division (see module docs)."""
    lung_rows = np.flatnonzero(lung_area >= MIN_VISIBLE_AREA_MM2)
    dome_rows = np.flatnonzero(dome_area >= MIN_VISIBLE_AREA_MM2)
    divided_rows = np.flatnonzero(divided)
    if lung_rows.size == 0 or dome_rows.size == 0 or divided_rows.size == 0:
        raise RuntimeError("phantom has no visible lung, dome or airway division")
    apex = int(lung_rows.max())
    diaphragm = int(dome_rows.max()) + 1
    carina_idx = int(divided_rows.max())
    if not (diaphragm < carina_idx < apex):
        raise RuntimeError(f"landmarks out of order: {diaphragm}, {carina_idx}, {apex}")
    return {"apex": apex, "carina": carina_idx, "diaphragm": diaphragm}


def _add_table(hu: np.ndarray, X: np.ndarray, Y: np.ndarray, a: _Anatomy) -> None:
    """A curved patient table under the back: a dense shell around a foam core."""
    y0 = a.centre[1] + a.axes[1] + 8.0
    curve = y0 + 0.0012 * (X - a.centre[0]) ** 2
    shell = (Y > curve) & (Y < curve + 2.0) & (np.abs(X - a.centre[0]) < 190)
    core = (Y >= curve + 2.0) & (Y < curve + 12.0) & (np.abs(X - a.centre[0]) < 190)
    hu[:, shell] = 150.0
    hu[:, core] = -850.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise of roughly unit amplitude: a coarse random grid, linearly upsampled."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    zoom = (shape[0] / (cells + 1), shape[1] / (cells + 1))
    return ndimage.zoom(coarse, zoom, order=1)[: shape[0], : shape[1]] / 0.8


# --------------------------------------------------------------------------- files


def write_phantom(phantom: ChestCTPhantom, out_dir: Path) -> list[Path]:
    """Write the series (``0001.dcm`` ...) and ``truth.json`` to ``out_dir``.

    ``truth.json`` gives, per landmark, the slice index (0 = most inferior), the
    Instance Number, the SOP Instance UID and the slice z.

    Returns
    -------
    list[Path]
        The DICOM files in slice order, then ``truth.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(phantom.datasets, start=1):
        path = out_dir / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    landmarks = {
        name: {
            "index": index,
            "instance_number": int(phantom.datasets[index].InstanceNumber),
            "sop_instance_uid": str(phantom.datasets[index].SOPInstanceUID),
            "z": float(phantom.z_positions[index]),
        }
        for name, index in phantom.landmarks.items()
    }
    truth = {
        "seed": phantom.seed,
        "slices": len(phantom.datasets),
        "slice_thickness": phantom.slice_thickness,
        "definitions": {
            "apex": f"most superior slice with >= {MIN_VISIBLE_AREA_MM2:g} mm2 of lung in a sub-slice",
            "carina": "most superior slice whose slab-averaged airway lumen shows two separate lumens",
            "diaphragm": f"slice above the highest slice with >= {MIN_VISIBLE_AREA_MM2:g} mm2 of dome in a lung field",
        },
        "landmarks": landmarks,
        "carina_z": phantom.carina_z,
        "series_instance_uid": str(phantom.datasets[0].SeriesInstanceUID),
        "study_instance_uid": str(phantom.datasets[0].StudyInstanceUID),
        "sop_instance_uids": [str(ds.SOPInstanceUID) for ds in phantom.datasets],
    }
    json_path = out_dir / "truth.json"
    json_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return paths + [json_path]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ainode phantom chest-ct``."""
    parser.add_argument("--out", type=Path, required=True, help="folder for the DICOM files and truth.json")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same phantom)")
    parser.add_argument("--slice-thickness", type=float, default=None,
                        help="mm (default 4, or the style's 3-5 mm with --styles)")
    parser.add_argument("--size", type=int, default=None, help="matrix size (default 256, or the style's with --styles)")
    parser.add_argument("--styles", action="store_true",
                        help="randomised scanner and patient style of the seed (noise, sharpness, slices, field of view,"
                             " matrix, patient size and position, airway angles and carina, contrast)")
    parser.add_argument("--patient-name", default="Phantom^Chest", help="Patient's Name written into the series")
    parser.add_argument("--patient-id", default=None, help="Patient ID (default CHESTCT-<seed>, CHESTCTB-<seed> for B)")
    parser.add_argument("--family", choices=("a", "b"), default="a",
                        help="phantom family: a (ellipsoids and tubes, this module) or b (swept surfaces, written "
                             "independently from the anatomy description: models/phantoms/chest_ct_b.py)")


def run_cli(args: argparse.Namespace) -> int:
    """``ainode phantom chest-ct``: write one synthetic chest CT series with its landmark truth."""
    if args.family == "b":
        if args.styles:
            raise SystemExit("--styles is for family a; family b varies its own anatomy and scanner per seed")
        from models.phantoms.chest_ct_b import generate_chest_ct_b

        phantom = generate_chest_ct_b(
            seed=args.seed, slice_thickness=args.slice_thickness or 4.0, size=args.size or 256,
            patient_name=args.patient_name, patient_id=args.patient_id,
        )
    else:
        phantom = generate_chest_ct(
            seed=args.seed, slice_thickness=args.slice_thickness, size=args.size, styles=args.styles,
            patient_name=args.patient_name, patient_id=args.patient_id,
        )
    files = write_phantom(phantom, args.out)
    marks = ", ".join(f"{k} {v}" for k, v in phantom.landmarks.items())
    print(f"wrote {len(files)} files to {args.out} ({len(phantom.datasets)} slices; truth: {marks})")
    return 0
