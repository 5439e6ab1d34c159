"""Chest radiograph phantom anatomy: attenuation coefficients, the randomised style
(:class:`CXRStyle`, drawn from a stream of its own), the per-seed chest shape and the curves
of its ribs, clavicles and lung vessels (mm; x to the patient's left, z downwards)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FIELD_MM", "MU_BONE", "MU_LUNG", "MU_MARROW", "MU_SOFT", "Anatomy", "CXRStyle",
    "anterior_ribs", "clavicles", "posterior_ribs", "random_style", "vessel_curves",
]

FIELD_MM = 430.0
"""Edge of the square detector field in mm."""

MU_SOFT, MU_LUNG, MU_BONE, MU_MARROW = 1.0, 0.22, 2.2, 1.35
"""Attenuation per mm (water equivalent) of soft tissue, aerated lung, cortical bone, marrow."""


@dataclass(frozen=True)
class CXRStyle:
    """Randomised detector, processing and patient style of a phantom (``styles=True``).

    Drawn from its own random stream (``default_rng([seed, 0x58])``), so a seed without
    styles gives exactly the phantom it always gave, and a seed with styles always the same
    styled phantom.
    """

    dose: float                   # noise sd relative to the plain phantom's at 0.84 mm pixels
    noise_grain: float            # Gaussian sigma (pixels) of the noise correlation (0: white)
    blur_mm: float                # detector blur (Gaussian sigma, mm; plain: 0.35)
    value_per_mm: float           # stored value per mm water equivalent at 12 bits (plain: 9)
    value_offset: float           # stored value behind no attenuation at 12 bits (plain: 250)
    gamma: float                  # curve of the value mapping (1: linear in attenuation)
    bits: int                     # Bits Stored (12 or 14; values scale with the range)
    processing: float             # unsharp-mask amount (edge / dynamic-range processing; 0: none)
    processing_mm: float          # its kernel (Gaussian sigma, mm)
    body_scale: float             # patient size
    shift_mm: tuple[float, float]  # patient position (x to the patient's left, z down)
    tilt: float                   # rotation (x shear per mm of z)


def random_style(seed: int) -> CXRStyle:
    """The style that ``generate_cxr(seed, styles=True)`` uses."""
    rng = np.random.default_rng([int(seed), 0x58])
    u = rng.uniform
    return CXRStyle(
        dose=float(np.exp(u(np.log(0.25), np.log(1.3)))),
        noise_grain=float(u(0.3, 0.9)) if rng.random() < 0.5 else 0.0,
        blur_mm=float(u(0.15, 0.7)),
        value_per_mm=float(u(6.0, 12.0)),
        value_offset=float(u(120.0, 450.0)),
        gamma=float(u(0.8, 1.25)),
        bits=int(rng.choice([12, 14])),
        processing=float(u(0.2, 1.5)) if rng.random() < 0.6 else 0.0,
        processing_mm=float(u(6.0, 30.0)),
        body_scale=float(u(0.88, 1.15)),
        shift_mm=(float(u(-25.0, 25.0)), float(u(-30.0, 30.0))),
        tilt=float(u(-0.08, 0.08)),
    )


@dataclass
class Anatomy:
    """Random shape parameters (mm; x to patient's left, z downwards, 0 at field centre)."""

    body_half_width: float
    body_half_depth: float
    neck_half_width: float
    shoulder_z: float
    lung_cx: float
    lung_ax: float
    lung_ay: float
    lung_az: float
    lung_cz: float
    dome_z: tuple[float, float]          # right, left dome apex z
    heart: tuple[float, float, float, float, float]  # cx, cz, ax, ay, az
    rib_pitch: float
    rib_top: float
    tilt: float

    @staticmethod
    def random(rng: np.random.Generator) -> "Anatomy":
        """A random chest drawn from ``rng``."""
        u = rng.uniform
        lung_az = u(105, 130)
        lung_cz = u(-65, -45)
        dome = lung_cz + lung_az * u(0.55, 0.7)
        return Anatomy(
            body_half_width=u(150, 180),
            body_half_depth=u(95, 125),
            neck_half_width=u(50, 62),
            shoulder_z=lung_cz - lung_az - u(5, 25),
            lung_cx=u(68, 82),
            lung_ax=u(58, 70),
            lung_ay=u(70, 85),
            lung_az=lung_az,
            lung_cz=lung_cz,
            dome_z=(dome - u(8, 20), dome),
            heart=(u(15, 35), lung_cz + u(35, 55), u(55, 70), u(45, 60), u(50, 62)),
            rib_pitch=u(21, 25),
            rib_top=lung_cz - lung_az + u(0, 10),
            tilt=u(-0.04, 0.04),
        )

    def styled(self, style: CXRStyle) -> "Anatomy":
        """This anatomy scaled about the field centre by the style's patient size, with its rotation."""
        s = style.body_scale
        scaled = {name: (tuple(s * v for v in value) if isinstance(value, tuple) else s * value)
                  for name, value in vars(self).items() if name != "tilt"}
        return Anatomy(**scaled, tilt=style.tilt)


def posterior_ribs(a: Anatomy):
    """Curves (x, z, radius) of the ten posterior ribs of each side."""
    curves = []
    for i in range(10):
        z0 = a.rib_top + i * a.rib_pitch
        for sign in (-1.0, 1.0):
            t = np.linspace(0.0, 1.0, 80)
            width = a.lung_cx + a.lung_ax + 8.0
            xs = sign * (14.0 + t * (width - 14.0))
            zs = z0 - 14.0 * np.sin(np.pi * t * 0.8) + 28.0 * t ** 3
            curves.append((xs, zs, np.full_like(t, 5.0 + 0.15 * i)))
    return curves


def anterior_ribs(a: Anatomy):
    """Curves (x, z, radius) of the six anterior ribs of each side."""
    curves = []
    for i in range(6):
        z0 = a.rib_top + 20.0 + i * a.rib_pitch * 0.9
        for sign in (-1.0, 1.0):
            t = np.linspace(0.0, 1.0, 60)
            width = a.lung_cx + a.lung_ax + 4.0
            xs = sign * (width - t * (width - 30.0))
            zs = z0 + 42.0 * t ** 1.3
            curves.append((xs, zs, np.full_like(t, 4.0)))
    return curves


def clavicles(a: Anatomy):
    """Curves (x, z, radius) of the clavicles."""
    curves = []
    for sign in (-1.0, 1.0):
        t = np.linspace(0.0, 1.0, 60)
        xs = sign * (18.0 + t * 135.0)
        zs = a.rib_top - 2.0 - 12.0 * t + 6.0 * np.sin(2 * np.pi * t)
        curves.append((xs, zs, np.full_like(t, 7.5)))
    return curves


def vessel_curves(rng: np.random.Generator, a: Anatomy):
    """Curves (x, z, radius) of the lung vessels: tapering random walks from the hila."""
    curves = []
    for sign in (-1.0, 1.0):
        hilum = (sign * (a.lung_cx - 35.0), a.lung_cz + 5.0)
        for _ in range(int(rng.integers(14, 20))):
            angle = rng.uniform(-np.pi * 0.95, np.pi * 0.95)
            direction = np.array([sign * abs(np.cos(angle)) * 0.9, np.sin(angle)])
            length = rng.uniform(50, 120)
            steps = 40
            pts = [np.array(hilum, dtype=float)]
            d = direction / np.linalg.norm(direction)
            for _ in range(steps):
                d = d + rng.normal(0, 0.12, 2)
                d /= np.linalg.norm(d)
                pts.append(pts[-1] + d * length / steps)
            pts_arr = np.array(pts)
            radius = np.linspace(rng.uniform(2.2, 3.5), 0.6, steps + 1)
            curves.append((pts_arr[:, 0], pts_arr[:, 1], radius))
    return curves
