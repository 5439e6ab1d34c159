"""Head CT family B, hematomas: every type the research and general neuroradiology name,
at several ages.

Types (:data:`TYPES`):

* ``epidural``: a biconvex lens between the inner table and the brain, 25-45 mm across;
* ``subdural``: a crescent along the convexity, longer and thinner, crossing sutures
  (one in four along the falx, interhemispheric);
* ``intraparenchymal``: an irregular blob at one of the sites the research names
  (putamen, thalamus, cerebellum, pons) or lobar, with the research's markers
  (hypodensities, irregular margins, blend sign, fluid level) and an oedema rim;
* ``subarachnoid``: blood filling the CSF of the basal cisterns, a sylvian fissure and
  the nearby sulci;
* ``intraventricular``: blood layering in the dependent (posterior) part of a lateral
  ventricle, or casting it.

Ages (:data:`AGES`) set the density: hyperacute 44-60 HU with hypodense swirls, acute
60-90 HU, early subacute 46-56 HU with a paler rim. Isodense and chronic stages are
not drawn (see the model card's limits).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.phantoms.head_ct_b_anatomy import CSF_TAG, VENTRICLE_TAG, HeadB, Plane
from models.phantoms.head_ct_truth import BRAIN, HEMATOMA

__all__ = ["AGES", "SITES", "TYPES", "Bleed", "draw_bleeds", "paint_bleed"]

TYPES = ("epidural", "subdural", "intraparenchymal", "subarachnoid", "intraventricular")
AGES = {"hyperacute": (44.0, 60.0), "acute": (60.0, 90.0), "subacute": (46.0, 56.0)}
SITES = {
    "putamen": (24.0, -4.0, 0.0), "thalamus": (12.0, 10.0, 3.0), "cerebellum": (22.0, 42.0, -34.0),
    "pons": (0.0, 24.0, -30.0), "lobar": (40.0, -20.0, 30.0),
}
MARKERS = ("none", "hypodensity", "irregular", "blend", "fluid_level")


@dataclass
class Bleed:
    """One hematoma: its type, age, density and shape parameters (mm, head coordinates)."""

    kind: str
    age: str
    hu: float
    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    side: int
    site: str = ""
    marker: str = "none"
    wobble: tuple[tuple[float, float, float], ...] = ()

    def describe(self) -> dict:
        """A JSON-able summary for ``truth.json``."""
        return {"type": self.kind, "age": self.age, "hu": round(self.hu, 1), "site": self.site,
                "marker": self.marker, "centre_mm": [round(c, 1) for c in self.centre],
                "size_mm": [round(s, 1) for s in self.size]}


def draw_bleeds(rng: np.random.Generator, z_low: float, z_high: float, kind: str | None = None) -> list[Bleed]:
    """One hematoma of ``kind`` (random when ``None``), and a second of another type one time in four.

    ``z_low``..``z_high`` (head z, mm) is the covered height; lesions are placed inside it.
    """
    first = kind or str(rng.choice(TYPES))
    bleeds = [_draw(rng, first, z_low, z_high)]
    if rng.random() < 0.25:
        bleeds.append(_draw(rng, str(rng.choice([t for t in TYPES if t != first])), z_low, z_high))
    return bleeds


def _draw(rng: np.random.Generator, kind: str, z_low: float, z_high: float) -> Bleed:
    """Draw one hematoma of ``kind``."""
    u = rng.uniform
    age = str(rng.choice(list(AGES))) if kind in ("epidural", "subdural", "intraparenchymal") else "acute"
    lo, hi = AGES[age]
    hu = float(u(lo, hi)) if kind not in ("subarachnoid", "intraventricular") else float(u(52, 80))
    side = int(rng.choice([-1, 1]))
    zc = lambda lo_, hi_: float(u(max(lo_, z_low + 6), max(min(hi_, z_high - 6), max(lo_, z_low + 6) + 1)))
    wobble = tuple((float(k), float(u(0.05, 0.18)), float(u(0, 2 * np.pi))) for k in rng.integers(2, 6, 3))
    if kind == "epidural":
        return Bleed(kind, age, hu, (float(u(-1.9, 1.9)), 0.0, zc(-5, 50)),
                     (float(u(25, 45)), float(u(25, 40)), float(u(8, 22))), side, wobble=wobble)
    if kind == "subdural":
        site = "interhemispheric" if rng.random() < 0.25 else "convexity"
        return Bleed(kind, age, hu, (float(u(-2.0, 2.0)), 0.0, zc(0, 45)),
                     (float(u(55, 95)), float(u(40, 75)), float(u(4, 15))), side, site=site, wobble=wobble)
    if kind == "intraparenchymal":
        sites = [s for s, c in SITES.items() if z_low + 8 < c[2] < z_high - 4] or ["lobar"]
        site = str(rng.choice(sites))
        x, y, z = SITES[site]
        centre = (side * x + float(u(-4, 4)) if x else float(u(-3, 3)), y + float(u(-6, 6)), z + float(u(-5, 5)))
        r = float(u(6, 22)) if site != "pons" else float(u(5, 10))
        size = (r * float(u(0.7, 1.0)), r * float(u(0.8, 1.3)), r * float(u(0.7, 1.1)))
        return Bleed(kind, age, hu, centre, size, side, site=site, marker=str(rng.choice(MARKERS)), wobble=wobble)
    if kind == "subarachnoid":
        return Bleed(kind, age, hu, (side * float(u(10, 40)), float(u(-25, 5)), zc(-20, 10)),
                     (float(u(30, 55)),) * 3, side, site="basal and sylvian")
    return Bleed(kind, age, hu, (side * 14.0, float(u(15, 28)), 10.0), (float(u(-2, 18)), 0.0, 0.0), side,
                 site="cast" if rng.random() < 0.3 else "layering")


def paint_bleed(bleed: Bleed, head: HeadB, p: Plane) -> None:
    """Paint ``bleed`` into the sub-slice ``p`` (HU and the hematoma label)."""
    if bleed.kind in ("epidural", "subdural"):
        mask = _extra_axial(bleed, p)
    elif bleed.kind == "intraparenchymal":
        mask = _parenchymal(bleed, p)
    elif bleed.kind == "subarachnoid":
        r = np.sqrt(sum((c - m) ** 2 for c, m in zip((p.hx, p.hy, p.hz), bleed.centre)))
        mask = ((p.tags & CSF_TAG) > 0) & (r < bleed.size[0]) & (p.d_in < -0.3)
    else:
        level = bleed.size[0]
        near = np.abs(p.hx - bleed.side * 14.0) < 14.0
        mask = ((p.tags & VENTRICLE_TAG) > 0) & near & ((p.hy > level) | (bleed.site == "cast"))
    if not mask.any():
        return
    value = np.full(mask.sum(), bleed.hu, dtype=np.float32)
    if bleed.age == "hyperacute":
        swirl = np.sin(0.9 * p.hx[mask] + 0.7 * p.hy[mask]) * np.sin(0.8 * p.hz[mask] + 0.5 * p.hx[mask])
        value -= 14.0 * (swirl > 0.35)
    if bleed.kind == "intraparenchymal":
        value += _marker_offset(bleed, p, mask)
        if bleed.age == "subacute":
            value -= 6.0 * _rim(bleed, p, mask)
    p.hu[mask] = value
    p.label[mask] = HEMATOMA


def _extra_axial(bleed: Bleed, p: Plane) -> np.ndarray:
    """Epidural lens or subdural crescent inside the inner table (or along the falx)."""
    width, height, thick = bleed.size
    if bleed.site == "interhemispheric":
        s = np.hypot((p.hy - 10.0) / width, (p.hz - bleed.centre[2]) / height)
        prof = np.sqrt(np.clip(1 - s ** 4, 0, 1)) * thick * 0.5
        return (p.d_in < 0) & (np.abs(p.hx - bleed.side * (prof + 0.4)) < prof) & (p.hz > 0)
    theta = p.once(f"theta{bleed.side}", lambda: np.arctan2(p.hy, p.hx * bleed.side))
    radius = p.once("radius", lambda: np.hypot(p.hx, p.hy))
    arc = radius * (theta - bleed.centre[0])
    s = np.hypot(arc / width, (p.hz - bleed.centre[2]) / height)
    if bleed.kind == "epidural":
        prof = np.clip(1 - s * s, 0, 1) * thick
    else:
        prof = np.sqrt(np.clip(1 - s ** 4, 0, 1)) * thick
    prof *= 1.0 + sum(a * np.cos(k * theta + ph) for k, a, ph in bleed.wobble) * 0.5
    # Above the cranial floor only: there the distance to the inner table is radial.
    return (p.d_in < 0) & (-p.d_in < prof) & (p.label == BRAIN) & (p.hz > -6.0)


def _parenchymal(bleed: Bleed, p: Plane) -> np.ndarray:
    """Irregular blob with an oedema rim around it."""
    q = _blob_q(bleed, p)
    rim = (q >= 1.0) & (q < 1.25) & (p.label == BRAIN)
    p.hu[rim] = np.minimum(p.hu[rim], 20.0)
    return (q < 1.0) & (p.d_in < 0)


def _marker_offset(bleed: Bleed, p: Plane, mask: np.ndarray) -> np.ndarray:
    """HU offsets of the research's markers inside ``mask``: hypodensities, blend sign, fluid level
    (the dependent, posterior part denser)."""
    x, y, z = p.hx[mask], p.hy[mask], p.hz[mask]
    offset = np.zeros(x.shape, dtype=np.float32)
    if bleed.marker == "hypodensity":
        offset[np.sin(0.5 * x + 1.1) * np.sin(0.45 * y) * np.sin(0.5 * z) > 0.3] = -18.0
    elif bleed.marker == "blend":
        offset[(x - bleed.centre[0]) * 0.7 + (y - bleed.centre[1]) * 0.7 > 0] = -22.0
    elif bleed.marker == "fluid_level":
        offset[y < bleed.centre[1] + 0.2 * bleed.size[1]] = -20.0
    return offset


def _blob_q(bleed: Bleed, p: Plane) -> np.ndarray:
    """Normalised radius of the blob (< 1 inside), its margin wobbled when irregular."""
    dx, dy, dz = (p.hx - bleed.centre[0], p.hy - bleed.centre[1], p.hz - bleed.centre[2])
    q = np.sqrt((dx / bleed.size[0]) ** 2 + (dy / bleed.size[1]) ** 2 + (dz / bleed.size[2]) ** 2)
    gain = 2.0 if bleed.marker == "irregular" else 1.0
    az = np.arctan2(dy, dx)
    el = np.arctan2(dz, np.hypot(dx, dy))
    for k, a, ph in bleed.wobble:
        q = q * (1.0 + gain * a * np.cos(k * az + ph) * np.cos((k - 1) * el))
    return q


def _rim(bleed: Bleed, p: Plane, mask: np.ndarray) -> np.ndarray:
    """1 at the margin of a parenchymal bleed, fading to 0 at its centre (subacute paling)."""
    return np.clip(_blob_q(bleed, p)[mask] * 1.6 - 0.6, 0.0, 1.0)
