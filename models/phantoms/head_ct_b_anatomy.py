"""Head CT family B, anatomy: a head described by a radial distance to its inner table.

Written from the head CT research report's description (skull, brain, ventricles,
sulci, the putamen / thalamus / cerebellum / pons as bleeding sites) and general
anatomy, independently of family A (:mod:`models.phantoms.head_ct`). Everything is an
analytic function of head coordinates (mm; x left-right, y anterior (-) to posterior
(+), z up; origin near the foramen of Monro), evaluated on the pixels of one thin
sub-slice at a time:

* the inner table is an ellipsoid modulated by low azimuthal harmonics, with a floor
  that dips from the anterior fossa (high) through the middle fossae (temporal lobes)
  to the posterior fossa (low); ``d_in`` is the signed distance outside it (mm);
* skull of varying thickness, denser tables around diploe, thicker at the base; frontal
  and sphenoid sinus air; petrous ridges with mastoid air cells; orbits below the
  anterior fossa; scalp with a fat layer; a face and neck below;
* brain: a CSF rim and sulci cut by a sum of random plane waves (atrophy widens both),
  grey cortex over white matter, deep grey nuclei, C-shaped lateral ventricles made of
  spheres along a curve, a third and a fourth ventricle, basal cisterns and sylvian
  fissures, the falx, the superior sagittal sinus (dense blood, not hemorrhage);
* calcifications that are not hemorrhage: pineal, choroid plexus in the atria, basal
  ganglia specks, falx plaques.

Labels use the shared vocabulary of :mod:`models.phantoms.head_ct_truth`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from models.phantoms.head_ct_truth import BACKGROUND, BONE, BRAIN

__all__ = ["CSF_TAG", "HeadB", "Plane", "tissue"]

CSF_TAG = 1
"""``Plane.tags`` bit: CSF in sulci, cisterns or fissures (where subarachnoid blood goes)."""
VENTRICLE_TAG = 2
"""``Plane.tags`` bit: ventricle CSF (where intraventricular blood goes)."""


@dataclass
class Plane:
    """One sub-slice: head coordinates of its pixels and what :func:`tissue` painted there."""

    hx: np.ndarray
    hy: np.ndarray
    hz: np.ndarray
    d_in: np.ndarray = field(default=None)  # type: ignore[assignment]
    hu: np.ndarray = field(default=None)  # type: ignore[assignment]
    label: np.ndarray = field(default=None)  # type: ignore[assignment]
    tags: np.ndarray = field(default=None)  # type: ignore[assignment]
    shared: dict = field(default_factory=dict)

    def once(self, name: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """A field of the in-plane coordinates only, made once and kept in ``shared`` (which the
        sub-slices of a series share: tilt moves z, not x and y)."""
        if name not in self.shared:
            self.shared[name] = make()
        return self.shared[name]

    def spans(self, low: float, high: float) -> bool:
        """Whether the plane reaches head heights ``low``..``high`` (mm): structures elsewhere are skipped."""
        return bool(self.hz.min() < high and self.hz.max() > low)


@dataclass
class HeadB:
    """Random shape and tissue parameters of one family-B head."""

    semi: tuple[float, float, float]    # inner-table semi-axes x, y, z (upper half)
    harmonics: np.ndarray               # (k, amplitude, phase) rows of the azimuthal modulation
    skull: float                        # vault thickness (mm)
    scalp: float                        # scalp thickness (mm)
    centre: tuple[float, float, float]  # head origin in patient coordinates (mm)
    yaw: float                          # in-plane rotation (radians)
    atrophy: float                      # 0..1: CSF rim, sulci and ventricle size
    waves: np.ndarray                   # (n, 4): plane waves (kx, ky, kz, phase) cutting the sulci
    grey: float
    white: float
    csf: float
    ventricle_scale: float
    calcs: list[tuple[tuple[float, float, float], float, float]]  # (centre, radius, HU)
    sinus_hu: float
    bone_hu: tuple[float, float]        # tables, diploe

    @classmethod
    def random(cls, rng: np.random.Generator) -> "HeadB":
        """Draw a head."""
        u = rng.uniform
        ks = np.arange(2, 6, dtype=float)
        harmonics = np.stack([ks, u(0.0, 0.035, ks.size) / ks * 2, u(0, 2 * np.pi, ks.size)], 1)
        n = 7
        directions = rng.normal(size=(n, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        waves = np.concatenate([directions * (2 * np.pi / u(11.0, 19.0, (n, 1))), u(0, 2 * np.pi, (n, 1))], 1)
        atrophy = float(rng.beta(1.5, 2.5))
        return cls(
            semi=(float(u(62, 74)), float(u(80, 95)), float(u(66, 78))),
            harmonics=harmonics, skull=float(u(4.5, 8.0)), scalp=float(u(3.5, 7.5)),
            centre=(float(u(-12, 12)), float(u(-15, 15)), 0.0), yaw=float(u(-0.3, 0.3)),
            atrophy=atrophy, waves=waves, grey=float(u(34, 41)), white=float(u(24, 30)), csf=float(u(2, 9)),
            ventricle_scale=float(0.8 + 0.9 * atrophy + u(0, 0.2)),
            calcs=_calcifications(rng), sinus_hu=float(u(44, 60)),
            bone_hu=(float(u(1400, 1900)), float(u(450, 850))),
        )


def _calcifications(rng: np.random.Generator) -> list[tuple[tuple[float, float, float], float, float]]:
    """Pineal, choroid plexus (both atria), basal ganglia specks and falx plaques; each may be absent."""
    u = rng.uniform
    out = []
    if rng.random() < 0.75:
        out.append(((u(-1, 1), u(14, 20), u(0, 5)), u(2.0, 4.0), u(110, 420)))
    if rng.random() < 0.75:
        for side in (-1, 1):
            out.append(((side * u(17, 23), u(22, 30), u(8, 15)), u(2.2, 4.5), u(80, 260)))
    if rng.random() < 0.2:
        for side in (-1, 1):
            out.append(((side * u(18, 24), u(-6, 2), u(-4, 3)), u(1.2, 2.8), u(65, 160)))
    if rng.random() < 0.3:
        out.append(((u(-0.5, 0.5), u(-50, 30), u(30, 55)), u(1.0, 2.2), u(150, 500)))
    return out


def _floor_c(hx: np.ndarray, hy: np.ndarray) -> np.ndarray:
    """Depth (mm) of the cranial floor below the origin: anterior fossa high, middle fossae and
    posterior fossa low."""
    c = 36.0 + 15.0 * np.tanh((hy - 8.0) / 18.0)
    c += 10.0 * np.exp(-(((np.abs(hx) - 38.0) / 16.0) ** 2) - ((hy + 2.0) / 20.0) ** 2)
    return c


def inner_distance(head: HeadB, p: Plane) -> np.ndarray:
    """Signed distance (mm, approximately radial) outside the inner table of the skull."""
    a, b, c_up = head.semi
    hx, hy, hz = p.hx, p.hy, p.hz
    theta = p.once("theta", lambda: np.arctan2(hy, hx))
    f0 = p.once("f", lambda: 1.0 + sum(amp * np.cos(k * theta + ph) for k, amp, ph in head.harmonics))
    brow = p.once("brow", lambda: 0.05 * np.exp(-((theta + np.pi / 2) / 0.5) ** 2))
    r2 = p.once("r2", lambda: hx * hx + hy * hy)
    rho2 = r2 + hz * hz
    # The azimuthal shape fades towards the vertex (no star at the pole): weighted by cos^2(elevation).
    f = 1.0 + (np.where(hz > 0, f0 - brow, f0) - 1.0) * (r2 / (rho2 + 1e-6))
    floor = p.once("floor", lambda: _floor_c(hx, hy))
    xy2 = p.once("xy2", lambda: (hx / a) ** 2 + (hy / b) ** 2)
    c = np.where(hz > 0, c_up, floor)
    q = np.sqrt(xy2 + (hz / c) ** 2) + 1e-6
    return np.sqrt(rho2) * (1.0 - f / q)


def tissue(head: HeadB, plane: Plane, rng: np.random.Generator) -> Plane:
    """Paint HU, labels and tags of one sub-slice (no lesions, no scanner effects)."""
    hx, hy, hz = plane.hx, plane.hy, plane.hz
    d = inner_distance(head, plane)
    hu = np.full(hx.shape, -1000.0, dtype=np.float32)
    label = np.full(hx.shape, BACKGROUND, dtype=np.uint8)
    tags = np.zeros(hx.shape, dtype=np.uint8)
    plane.d_in, plane.hu, plane.label, plane.tags = d, hu, label, tags
    _soft_tissue(head, plane)
    _skull(head, plane)
    _brain(head, plane)
    return plane


def _soft_tissue(head: HeadB, p: Plane) -> None:
    """Scalp with a fat layer above the skull base; face and neck below it; orbits."""
    s = head.scalp
    t = head.skull * (1.0 + 0.9 * np.clip(-p.hz / 20.0, 0.0, 1.0))  # the skull's thickness (see _skull)
    scalp = (p.d_in >= t) & (p.d_in < t + s)
    a, b, _ = head.semi
    q_neck = np.sqrt((p.hx / (a + head.skull + s + 4)) ** 2 + ((p.hy + 4) / (b + head.skull + s)) ** 2)
    neck = (p.hz <= -18) & (q_neck < 1.0) & (p.d_in >= 0)
    soft = scalp | neck
    p.hu[soft] = 38.0
    fat = scalp & (p.d_in > t + 0.35 * s) & (p.d_in < t + 0.7 * s)
    p.hu[fat] = -85.0
    for side in (-1, 1) if p.spans(-60.0, -28.0) else ():
        q_orb = np.sqrt(((p.hx - side * 30) / 17) ** 2 + ((p.hy + 62) / 20) ** 2 + ((p.hz + 44) / 15) ** 2)
        orbit = (q_orb < 1.0) & (p.d_in > 0)
        p.hu[orbit] = -90.0
        globe = (np.sqrt(((p.hx - side * 31) / 12) ** 2 + ((p.hy + 72) / 12) ** 2 + ((p.hz + 44) / 12) ** 2) < 1.0)
        p.hu[globe & (p.d_in > 0)] = 12.0
    p.label[soft] = BACKGROUND


def _skull(head: HeadB, p: Plane) -> None:
    """Vault with tables and diploe, a thicker base, sinuses, petrous ridges and mastoid air."""
    d = p.d_in
    base = np.clip(-p.hz / 20.0, 0.0, 1.0)
    t = head.skull * (1.0 + 0.9 * base)
    bone = (d >= 0) & (d < t)
    table, diploe = head.bone_hu
    tables = bone & ((d < 1.4) | (d > t - 1.6))
    p.hu[bone] = diploe
    p.hu[tables] = table
    p.label[bone] = BONE
    if not p.spans(-60.0, 5.0):
        return
    for side in (-1, 1):
        # Petrous ridge: a dense bar from lateral-posterior to medial-anterior whose top is the ridge.
        x0, y0, x1, y1 = side * 48.0, 18.0, side * 16.0, -4.0
        ax, ay = x1 - x0, y1 - y0
        along = np.clip(((p.hx - x0) * ax + (p.hy - y0) * ay) / (ax * ax + ay * ay), 0.0, 1.0)
        dist = np.hypot(p.hx - (x0 + along * ax), p.hy - (y0 + along * ay))
        ridge_z = -30.0 - 6.0 * along
        petrous = (dist < 7.0 - 3.0 * along) & (p.hz < ridge_z) & (p.hz > ridge_z - 22)
        p.hu[petrous] = table
        p.label[petrous] = BONE
        mastoid = petrous & (along < 0.3) & (np.sin(p.hx * 1.3) * np.sin(p.hy * 1.1) * np.sin(p.hz * 1.2) > 0.25)
        p.hu[mastoid] = -700.0
    for centre, radii in (((0.0, -80.0, -6.0), (14.0, 6.0, 9.0)), ((0.0, -12.0, -48.0), (13.0, 11.0, 9.0))):
        q = np.sqrt(sum(((c - m) / r) ** 2 for c, m, r in zip((p.hx, p.hy, p.hz), centre, radii)))
        air = (q < 1.0) & (d > 0)
        p.hu[air] = -950.0
        p.label[air] = BACKGROUND


def _brain(head: HeadB, p: Plane) -> None:
    """Brain inside the inner table: CSF spaces, cortex, white matter, nuclei, ventricles, falx,
    sinus and calcifications."""
    d = p.d_in
    inside = d < 0
    hu, lab = p.hu, p.label
    lab[inside] = BRAIN
    hu[inside] = head.white
    depth = -d
    shell = inside & (depth < 18.0)
    x, y, z = p.hx[shell], p.hy[shell], p.hz[shell]
    g = sum(np.sin(w[0] * x + w[1] * y + w[2] * z + w[3]) for w in head.waves) / np.sqrt(len(head.waves))
    cortex = np.zeros_like(shell)
    cortex[shell] = depth[shell] < 3.5 + 1.2 * np.sin(g * 2.0)
    hu[cortex] = head.grey
    hu[inside] += 1.5 * np.sin(0.21 * p.hx[inside] + 0.17 * p.hz[inside])
    for side in (-1, 1) if p.spans(-12.0, 20.0) else ():  # caudate, putamen, thalamus
        for c, r in (((side * 13, -14, 8), (6, 9, 8)), ((side * 24, -4, 0), (5, 11, 9)), ((side * 11, 10, 2), (8, 10, 8))):
            q = np.sqrt(((p.hx - c[0]) / r[0]) ** 2 + ((p.hy - c[1]) / r[1]) ** 2 + ((p.hz - c[2]) / r[2]) ** 2)
            hu[inside & (q < 1.0)] = head.grey - 2.0
    rim = 0.7 + 2.8 * head.atrophy
    sulcus = np.zeros_like(shell)
    sulcus[shell] = (depth[shell] < 9.0 + 8 * head.atrophy) & (np.abs(g) < 0.10 + 0.22 * head.atrophy)
    csf = inside & ((depth < rim) | sulcus)
    if p.spans(-24.0, 2.0):
        csf |= inside & _cisterns(p, head.atrophy)
    hu[csf] = head.csf
    p.tags[csf] = CSF_TAG
    vent = inside & _ventricles(p, head.ventricle_scale) if p.spans(-42.0, 32.0) else np.zeros_like(inside)
    hu[vent] = head.csf
    p.tags[vent] = VENTRICLE_TAG
    falx_x = 1.5 * np.sin(p.hy / 30.0)
    falx = inside & (np.abs(p.hx - falx_x) < 0.7) & (p.hz > 12 - 0.1 * p.hy) & ~vent
    hu[falx] = 52.0
    sss = inside & (np.abs(p.hx - falx_x) < 0.35 * (6.0 - np.minimum(depth, 6.0))) & (depth < 6.0) & (p.hz > 5)
    hu[sss] = head.sinus_hu
    for centre, radius, value in head.calcs:
        if not p.spans(centre[2] - radius, centre[2] + radius):
            continue
        q = np.sqrt((p.hx - centre[0]) ** 2 + (p.hy - centre[1]) ** 2 + (p.hz - centre[2]) ** 2)
        hu[inside & (q < radius)] = value


def _cisterns(p: Plane, atrophy: float) -> np.ndarray:
    """Suprasellar and ambient cisterns and the sylvian fissures (CSF)."""
    star = np.hypot(p.hx / 13.0, (p.hy + 4) / 11.0) * (1 + 0.25 * np.cos(5 * np.arctan2(p.hy + 4, p.hx)))
    supra = (star < 1.0 + 0.3 * atrophy) & (np.abs(p.hz + 18) < 4.0)
    ambient = (np.abs(np.hypot(p.hx, p.hy - 14) - 16) < 2.0 + 1.5 * atrophy) & (np.abs(p.hz + 14) < 6) & (p.hy > 4)
    sylvian = np.zeros_like(supra)
    for side in (-1, 1):
        along = np.clip((side * p.hx - 14) / 40.0, 0, 1)
        fissure_z = -12 + 10 * along
        sylvian |= (side * p.hx > 14) & (side * p.hx < 56) & (np.abs(p.hz - fissure_z) < 1.8 + 2 * atrophy) \
            & (np.abs(p.hy + 8 - 6 * along) < 10)
    return supra | ambient | sylvian


def _ventricles(p: Plane, scale: float) -> np.ndarray:
    """Lateral ventricles (C-shaped: frontal horn, body, atrium, occipital and temporal horns),
    third and fourth ventricles."""
    out = np.zeros(p.hx.shape, dtype=bool)
    t = np.linspace(0.0, 1.0, 14)
    ys = -26 + 56 * t
    zs = 10 + 10 * np.sin(np.pi * t * 0.9) - 4 * t
    xs = 5.5 + 10 * t
    rs = np.interp(t, [0, 0.2, 0.6, 0.8, 1], [4.0, 3.0, 2.5, 5.0, 3.0]) * scale
    temporal = [(30.0, 22.0, -4.0), (33.0, 10.0, -12.0), (34.0, 0.0, -18.0)]
    for side in (-1, 1):
        for x, y, z, r in zip(xs, ys, zs, rs):
            if not p.spans(z - r, z + r):
                continue
            out |= (p.hx - side * x) ** 2 + (p.hy - y) ** 2 + (p.hz - z) ** 2 < r * r
        for x, y, z in temporal:
            if not p.spans(z - 4 * scale, z + 4 * scale):
                continue
            out |= (p.hx - side * x) ** 2 + (p.hy - y) ** 2 + ((p.hz - z) / 1.4) ** 2 < (1.8 * scale) ** 2
    out |= (np.abs(p.hx) < 1.2 * scale) & (np.abs(p.hy - 2) < 12) & (np.abs(p.hz + 2) < 7)
    out |= (np.abs(p.hx) < 4.0 * scale - 0.3 * np.abs(p.hy - 34)) & (np.abs(p.hy - 34) < 5) \
        & (np.abs(p.hz + 34) < 5)
    return out
