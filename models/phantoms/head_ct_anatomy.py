"""Head CT phantom anatomy: the per-seed head shape (:class:`Head`) and the randomised
scanner and patient style (:class:`HeadCTStyle`, drawn from a stream of its own)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FOV_MM", "SLICE_MM", "Head", "HeadCTStyle", "ellipse_q", "ellipsoid", "random_style"]

SLICE_MM = 5.0
"""Slice thickness and spacing (mm)."""

FOV_MM = 230.0
"""Nominal reconstruction field of view (mm) of a plain phantom."""


@dataclass(frozen=True)
class HeadCTStyle:
    """Randomised scanner and patient style of a head CT phantom (``styles=True``).

    Drawn from its own random stream (``default_rng([seed, 0x48])``), so a seed without
    styles gives exactly the phantom it always gave, and a seed with styles always the
    same styled phantom.
    """

    fov_mm: float                 # reconstruction field of view (plain: ~230)
    noise: float                  # HU (plain: 4-8)
    noise_grain: float            # Gaussian sigma (pixels) of the noise correlation (plain: 0.6)
    blur: float                   # in-plane Gaussian sigma (pixels; plain: 0.7)
    sharpen: float                # unsharp-mask amount (edge-enhancing kernels; 0: none)
    hu_offset: float              # calibration offset (HU)
    outside: float                # value outside the reconstruction circle
    head_scale: float             # head size
    shift_mm: tuple[float, float]  # head position off the isocentre (x, y)
    angle: float                  # in-plane rotation (radians; plain: within ±0.18)


def random_style(seed: int) -> HeadCTStyle:
    """The style that ``generate_head_ct(seed, styles=True)`` uses."""
    rng = np.random.default_rng([int(seed), 0x48])
    u = rng.uniform
    return HeadCTStyle(
        fov_mm=float(u(200.0, 260.0)),
        noise=float(u(2.5, 12.0)),
        noise_grain=float(u(0.35, 1.2)),
        blur=float(u(0.4, 1.1)),
        sharpen=float(u(0.2, 1.0)) if rng.random() < 0.3 else 0.0,
        hu_offset=float(u(-5.0, 5.0)),
        outside=-3024.0 if rng.random() < 0.3 else -1024.0,
        head_scale=float(u(0.9, 1.08)),
        shift_mm=(float(u(-18.0, 18.0)), float(u(-18.0, 18.0))),
        angle=float(u(-0.35, 0.35)),
    )



@dataclass
class Head:
    """Random shape parameters of one head (mm, patient coordinates, z up)."""

    axes: np.ndarray          # outer skin semi-axes (x: left-right, y: antero-posterior, z)
    centre: np.ndarray        # centre of the head ellipsoid (x, y, z)
    angle: float              # in-plane rotation (radians)
    scalp: float              # scalp thickness
    skull: float              # mean skull thickness
    skull_mod: np.ndarray     # skull thickness modulation coefficients
    csf_rim: float            # subarachnoid CSF thickness
    z_first: float            # z of the lowest slice centre
    grey: float
    white: float
    vent_scale: float         # ventricle size factor (atrophy)
    vent_z: float             # z of the ventricle bodies' centre
    calcified: bool

    @staticmethod
    def random(rng: np.random.Generator, slices: int, spacing: float) -> "Head":
        axes = np.array([rng.uniform(68, 78), rng.uniform(86, 98), rng.uniform(78, 92)])
        centre = np.array([rng.uniform(-8, 8), rng.uniform(-8, 8), 0.0])
        top = centre[2] + axes[2] - rng.uniform(3, 9)
        return Head(
            axes=axes,
            centre=centre,
            angle=float(rng.uniform(-0.18, 0.18)),
            scalp=float(rng.uniform(4.0, 7.0)),
            skull=float(rng.uniform(5.0, 7.5)),
            skull_mod=rng.uniform(-1.0, 1.0, size=4),
            csf_rim=float(rng.uniform(1.0, 3.0)),
            z_first=float(top - (slices - 1) * SLICE_MM),
            grey=float(rng.uniform(35, 40)),
            white=float(rng.uniform(25, 30)),
            vent_scale=float(rng.uniform(0.7, 1.5)),
            vent_z=float(centre[2] + rng.uniform(8, 22)),
            calcified=bool(rng.random() < 0.6),
        )

    def styled(self, style: HeadCTStyle) -> None:
        """Scale the head about its centre, move it and turn it as the style says (in place)."""
        vertex = self.axes[2]  # above the centre; the series keeps its distance below the vertex
        self.axes = self.axes * style.head_scale
        self.centre = self.centre + np.array([style.shift_mm[0], style.shift_mm[1], 0.0])
        self.z_first += self.axes[2] - vertex
        self.vent_z = self.centre[2] + (self.vent_z - self.centre[2]) * style.head_scale
        self.angle = style.angle


def ellipsoid(
    xr: np.ndarray,
    yr: np.ndarray,
    zs: np.ndarray,
    centre: tuple[float, float, float],
    axes: tuple[float, float, float],
    angle: float,
) -> np.ndarray:
    """Boolean ``(n, rows, cols)`` mask of an ellipsoid rotated by ``angle`` about z."""
    q = ellipse_q(xr, yr, centre, axes, angle)
    qz = ((zs - centre[2]) / axes[2]) ** 2
    mask = np.zeros((zs.size,) + xr.shape, dtype=bool)
    for k in np.flatnonzero(qz < 1.0):
        mask[k] = q < 1.0 - qz[k]
    return mask


def ellipse_q(x: np.ndarray, y: np.ndarray, centre, axes, angle: float) -> np.ndarray:
    """``u² + v²`` of the in-plane points in the frame of an ellipse rotated by ``angle``
    (``u``, ``v``: offsets from ``centre`` along its axes, in units of ``axes[0]``, ``axes[1]``)."""
    ca, sa = np.cos(angle), np.sin(angle)
    dx, dy = x - centre[0], y - centre[1]
    return ((dx * ca + dy * sa) / axes[0]) ** 2 + ((-dx * sa + dy * ca) / axes[1]) ** 2
