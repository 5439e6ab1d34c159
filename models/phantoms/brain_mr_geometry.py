"""Brain MR phantom geometry: the label and tissue vocabularies, the randomised style
(:class:`BrainMRStyle`, drawn from a stream of its own), the voxel grid, the per-seed head
shape and the solids the anatomy is made of (ellipsoids, tubes)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.phantoms.noise import zoomed_noise

__all__ = [
    "BACKGROUND", "BRAINSTEM", "CEREBELLUM", "CEREBRUM", "FOV_MM", "SLICE_MM", "TISSUES", "TRUTH_CLASSES",
    "TUMOR", "VENTRICLES", "VESSELS", "BrainMRStyle", "Geometry", "Grid", "ellipsoid", "random_style", "smooth_noise", "tube",
]

TRUTH_CLASSES: tuple[str, ...] = (
    "background", "cerebrum", "cerebellum", "brainstem", "ventricles", "vessels", "tumor",
)
"""The phantom's label values 0..6 (``labels``), by name."""

BACKGROUND, CEREBRUM, CEREBELLUM, BRAINSTEM, VENTRICLES, VESSELS, TUMOR = range(7)
SLICE_MM = 4.0
"""Nominal slice thickness and spacing (mm)."""
FOV_MM = 205.0
"""Nominal field of view (mm)."""

TISSUES: tuple[str, ...] = ("air", "skin", "fat", "bone", "diploe", "csf", "gm", "wm", "deep", "cbl_gm",
            "cbl_wm", "stem", "vessel", "rim", "core", "solid", "edema")
"""Tissues of the anatomy's tissue-index volume, in index order."""


@dataclass(frozen=True)
class BrainMRStyle:
    """Randomised scanner and patient style of a brain MR phantom (``styles=True``).

    Drawn from its own random stream (``default_rng([seed, 0x4D])``), so a seed without
    styles gives exactly the phantom it always gave, and a seed with styles always the
    same styled phantom.
    """

    fov_mm: float                 # field of view (plain: ~205)
    slice_mm: float               # slice thickness = spacing (plain: 4)
    noise: float                  # Rician noise sd relative to white matter's T1 (plain: 0.02-0.04)
    bias: float                   # bias field amplitude (plain: 0.15-0.3)
    blur: float                   # in-plane Gaussian sigma (pixels; plain: 0.6)
    contrast_jitter: float        # per-tissue intensity spread (plain: 0.08)
    gain: float                   # scanner scaling of the stored values
    head_scale: float             # head size
    shift_mm: tuple[float, float]  # head position (x, y)
    angle: float                  # in-plane rotation (radians; plain: within ±0.14)


def random_style(seed: int) -> BrainMRStyle:
    """The style that ``generate_brain_mr(seed, styles=True)`` uses."""
    rng = np.random.default_rng([int(seed), 0x4D])
    u = rng.uniform
    return BrainMRStyle(
        fov_mm=float(u(185.0, 240.0)),
        slice_mm=float(u(3.0, 5.0)),
        noise=float(u(0.01, 0.06)),
        bias=float(u(0.05, 0.45)),
        blur=float(u(0.3, 1.0)),
        contrast_jitter=float(u(0.04, 0.15)),
        gain=float(np.exp(u(np.log(0.4), np.log(2.0)))),
        head_scale=float(u(0.88, 1.1)),
        shift_mm=(float(u(-15.0, 15.0)), float(u(-15.0, 15.0))),
        angle=float(u(-0.3, 0.3)),
    )



@dataclass
class Grid:
    """The voxel grid: matrix, slices, pixel spacing, origin (LPS mm) and slice spacing."""

    size: int
    slices: int
    spacing: float
    origin: tuple[float, float, float]
    slice_mm: float = SLICE_MM

    def coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS x, y, z of every voxel centre, each ``(slices, size, size)`` float32."""
        j = np.arange(self.size, dtype=np.float32) * self.spacing + self.origin[0]
        i = np.arange(self.size, dtype=np.float32) * self.spacing + self.origin[1]
        k = np.arange(self.slices, dtype=np.float32) * self.slice_mm + self.origin[2]
        z, y, x = np.meshgrid(k, i, j, indexing="ij")
        return x, y, z

    @property
    def sampling(self) -> tuple[float, float, float]:
        return (self.slice_mm, self.spacing, self.spacing)


@dataclass
class Geometry:
    """Random shape parameters of one head (mm, local head coordinates u, v, w)."""

    centre: np.ndarray
    angle: float
    scale: np.ndarray
    skull: float
    csf: float
    ventricle: float
    cortex: float
    vessel_radius: float
    jitter: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Geometry":
        """A random head shape drawn from ``rng``."""
        return cls(
            centre=np.array([rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(-3, 3)]),
            angle=float(rng.uniform(-0.14, 0.14)),
            scale=rng.uniform(0.9, 1.08, size=3),
            skull=float(rng.uniform(5.5, 8.5)),
            csf=float(rng.uniform(1.8, 3.5)),
            ventricle=float(rng.uniform(0.7, 1.6)),
            cortex=float(rng.uniform(2.4, 3.6)),
            vessel_radius=float(rng.uniform(1.7, 2.4)),
            jitter=rng.uniform(-5, 5, size=(8, 3)),
        )

    def styled(self, style: BrainMRStyle) -> None:
        """Scale, move and turn the head as the style says (in place)."""
        self.scale = self.scale * style.head_scale
        self.centre = self.centre + np.array([style.shift_mm[0], style.shift_mm[1], 0.0])
        self.angle = style.angle

    def local(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """Patient coordinates → unscaled head coordinates (u left, v posterior, w up)."""
        dx, dy, dz = x - self.centre[0], y - self.centre[1], z - self.centre[2]
        c, s = np.cos(self.angle), np.sin(self.angle)
        u = (c * dx + s * dy) / self.scale[0]
        v = (-s * dx + c * dy) / self.scale[1]
        w = dz / self.scale[2]
        return u, v, w


def ellipsoid(u, v, w, centre, semi) -> np.ndarray:
    """Voxels inside the axis-aligned ellipsoid of ``centre`` and semi-axes ``semi``."""
    semi = [semi[0], semi[1], semi[2]]
    return (((u - centre[0]) / semi[0]) ** 2 + ((v - centre[1]) / semi[1]) ** 2
            + ((w - centre[2]) / semi[2]) ** 2) <= 1.0



def tube(u, v, w, points: np.ndarray, radius: float) -> np.ndarray:
    """Voxels within ``radius`` of the polyline ``points`` (local coordinates)."""
    mask = np.zeros(u.shape, dtype=bool)
    for a, b in zip(points[:-1], points[1:]):
        d = b - a
        length2 = float(d @ d) or 1e-6
        t = np.clip(((u - a[0]) * d[0] + (v - a[1]) * d[1] + (w - a[2]) * d[2]) / length2, 0, 1)
        dist2 = (u - a[0] - t * d[0]) ** 2 + (v - a[1] - t * d[1]) ** 2 + (w - a[2] - t * d[2]) ** 2
        mask |= dist2 <= radius ** 2
    return mask


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[int, ...]) -> np.ndarray:
    """Smooth noise: a ``cells`` grid zoomed (cubic, edges held) to ``shape``."""
    return zoomed_noise(rng, shape, cells, mode="nearest").astype(np.float32)
