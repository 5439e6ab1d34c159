"""The family-A chest CT patient: tissue values, random anatomy, scanner and patient style,
and the tube segments the airways and vessels are built from."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BLOOD_HU",
    "FAT_HU",
    "LIVER_HU",
    "LUNG_HU",
    "MUSCLE_HU",
    "SOFT_HU",
    "SPLEEN_HU",
    "Anatomy",
    "ChestCTStyle",
    "Tube",
    "apply_style",
    "polyline",
    "random_anatomy",
    "random_style",
]

FAT_HU, MUSCLE_HU, SOFT_HU, BLOOD_HU, LIVER_HU, SPLEEN_HU = -95.0, 50.0, 35.0, 42.0, 58.0, 48.0
LUNG_HU = -860.0


@dataclass
class Anatomy:
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
    blood: float = BLOOD_HU         # heart, aorta and vessels (HU); higher with IV contrast
    liver: float = LIVER_HU
    spleen: float = SPLEEN_HU
    airway_wall: float = 1.6      # mm of wall around every airway lumen
    airway_wall_hu: float = 70.0


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


def apply_style(a: "Anatomy", st: ChestCTStyle) -> None:
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


def random_anatomy(rng: np.random.Generator) -> Anatomy:
    size = rng.uniform(0.85, 1.15)
    axes = np.array([150.0 * size * rng.uniform(0.95, 1.05), 108.0 * size * rng.uniform(0.9, 1.08)])
    fat = rng.uniform(6.0, 28.0) * size
    muscle = rng.uniform(7.0, 14.0)
    apex_r = rng.uniform(65.0, 90.0)
    dome_r = -rng.uniform(115.0, 160.0)
    return Anatomy(
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
class Tube:
    """A capsule: the points within ``r`` of the segment ``p0``-``p1`` (mm)."""

    p0: np.ndarray
    p1: np.ndarray
    r: float


def polyline(points: list[tuple[float, float, float]], radius: float) -> list[Tube]:
    pts = [np.asarray(p, dtype=np.float64) for p in points]
    return [Tube(a, b, radius) for a, b in zip(pts[:-1], pts[1:])]

