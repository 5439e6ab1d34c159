"""Brain MR phantom anatomy: the label volume and tissue-index volume of one head (scalp,
skull, CSF, cerebrum, cerebellum, brainstem, ventricles, vessels) and its optional tumour."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from models.phantoms.brain_mr_geometry import (
    BACKGROUND,
    BRAINSTEM,
    CEREBELLUM,
    CEREBRUM,
    TISSUES,
    TUMOR,
    VENTRICLES,
    VESSELS,
    Geometry,
    Grid,
    ellipsoid,
    smooth_noise,
    tube,
)

__all__ = ["anatomy", "tumor_ok"]


def anatomy(grid: Grid, g: Geometry, rng: np.random.Generator, tumor: bool) -> tuple[np.ndarray, np.ndarray]:
    """Label volume and tissue-index volume (indices into :data:`TISSUES`)."""
    x, y, z = grid.coordinates()
    u, v, w = g.local(x, y, z)
    shape = u.shape
    T = {name: i for i, name in enumerate(TISSUES)}
    tissue = np.zeros(shape, dtype=np.uint8)
    labels = np.zeros(shape, dtype=np.uint8)

    inner = np.array([67.0, 85.0, 78.0])
    lump = smooth_noise(rng, shape, (4, 6, 6)) * 1.5
    head = ellipsoid(u, v, w, (0, 0, 0), [a + g.skull + 6.0 + lump * 0.3 for a in inner])
    fat = ellipsoid(u, v, w, (0, 0, 0), inner + g.skull + 4.5)
    skull_outer = ellipsoid(u, v, w, (0, 0, 0), inner + g.skull)
    diploe = ellipsoid(u, v, w, (0, 0, 0), inner + g.skull * 0.7) & ~ellipsoid(u, v, w, (0, 0, 0), inner + g.skull * 0.3)
    base = (w < -26.0) & (v < 2.0 - 0.3 * (w + 26.0))  # skull base, orbits and sinuses
    intracranial = ellipsoid(u, v, w, (0, 0, 0), inner) & ~base
    tissue[head] = T["skin"]
    tissue[fat] = T["fat"]
    tissue[skull_outer] = T["bone"]
    tissue[skull_outer & diploe] = T["diploe"]
    tissue[skull_outer & base] = T["diploe"]
    tissue[intracranial] = T["csf"]

    brain = ellipsoid(u, v, w, (0, 0, 0), [a - g.csf + lump for a in inner]) & intracranial
    stem_v = 14.0 - 0.25 * w
    stem = ((u / 12.5) ** 2 + ((v - stem_v) / 11.5) ** 2 <= 1.0) & (w < -4.0) & (w > -95.0)
    cbl_centre = np.array([0.0, 46.0, -30.0]) + g.jitter[0] * np.array([0.3, 0.6, 0.5])
    cerebellum = ellipsoid(u, v, w, cbl_centre, (54.0, 33.0, 21.0)) & brain & ~stem
    tentorium = ellipsoid(u, v, w, cbl_centre, (56.5, 35.5, 23.5))
    cerebrum = brain & ~tentorium & ~stem & (w > -30.0 + 0.12 * np.maximum(v, 0))
    cerebrum &= ~((v > 25.0) & (w < cbl_centre[2] + 20.0))

    # Cortex over white matter, sulci as CSF intrusions, deep grey nuclei.
    depth = ndimage.distance_transform_edt(cerebrum, sampling=grid.sampling)
    sulci = (smooth_noise(rng, shape, (8, 20, 20)) > 0.9) & (depth < g.cortex + 1.0)
    cerebrum &= ~sulci
    labels[cerebrum] = CEREBRUM
    tissue[cerebrum] = T["wm"]
    tissue[cerebrum & (depth < g.cortex)] = T["gm"]
    for side in (-1, 1):
        nucleus = ellipsoid(u, v, w, (side * 18.0, 2.0, 6.0) + g.jitter[1] * 0.3, (9.0, 15.0, 10.0))
        tissue[nucleus & cerebrum] = T["deep"]

    labels[cerebellum] = CEREBELLUM
    folia = np.sin((w - cbl_centre[2]) * 1.6 + 0.4 * u + lump * 2.0) > 0.2
    cbl_core = ellipsoid(u, v, w, cbl_centre + (0, -6, 2), (24.0, 12.0, 9.0))
    tissue[cerebellum] = np.where(folia[cerebellum], T["cbl_gm"], T["cbl_wm"])
    tissue[cerebellum & cbl_core] = T["cbl_wm"]
    labels[stem & brain] = BRAINSTEM
    tissue[stem & brain] = T["stem"]

    a = g.ventricle
    ventricles = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        body = ellipsoid(u, v, w, (side * (3.5 + 5.0 * a), 0.0 + g.jitter[2, 1] * 0.4, 16.0),
                          (4.0 * a + 1.5, 24.0, 6.0 * a + 2.0))
        horn = ellipsoid(u, v, w, (side * (4.0 + 6.0 * a), 20.0, 10.0), (3.0 * a + 1.5, 10.0, 7.0 * a + 2.0))
        ventricles |= body | horn
    ventricles |= ellipsoid(u, v, w, (0.0, 4.0, 1.0), (1.2 + 0.8 * a, 11.0, 7.0))
    fourth_v = 14.0 - 0.25 * cbl_centre[2] + 12.5
    ventricles |= ellipsoid(u, v, w, (0.0, fourth_v, cbl_centre[2] - 2.0), (5.0, 3.0, 6.0))
    ventricles &= brain
    labels[ventricles] = VENTRICLES
    tissue[ventricles] = T["csf"]

    if tumor:
        _add_tumor(labels, tissue, u, v, w, grid, rng, T)

    vessels = _vessels(u, v, w, g, inner) & intracranial
    labels[vessels] = VESSELS
    tissue[vessels] = T["vessel"]
    return labels, tissue


def _vessels(u, v, w, g: Geometry, inner: np.ndarray) -> np.ndarray:
    """Basilar artery, middle and anterior cerebral arteries, superior sagittal sinus."""
    j = g.jitter
    r = g.vessel_radius
    basilar = np.array([[0.0, 14.0 + 0.25 * 70 - 14.0, -70.0], [0.0, 0.0, -35.0], [0.0, -1.0, -10.0]])
    mask = tube(u, v, w, basilar, r)
    for side in (-1, 1):
        mca = np.array([
            [side * 2.0, -6.0, -9.0],
            [side * 25.0, -8.0 + j[3, 1] * 0.4, -8.0 + j[3, 2] * 0.3],
            [side * 45.0, -4.0 + j[4, 1] * 0.6, 0.0 + j[4, 2] * 0.6],
            [side * 55.0, 10.0 + j[5, 1], 20.0 + j[5, 2]],
        ])
        mask |= tube(u, v, w, mca, r * 0.9)
    aca = np.array([[0.0, -6.0, -9.0], [1.0, -35.0, 0.0 + j[6, 2] * 0.5],
                    [0.0, -45.0 + j[6, 1], 30.0], [-1.0, -15.0, 55.0 + j[7, 2] * 0.5]])
    mask |= tube(u, v, w, aca, r * 0.8)
    t = np.linspace(-1.2, 2.0, 24)
    sinus = np.stack([np.zeros_like(t), (inner[1] - 3.5) * np.sin(t), (inner[2] - 3.5) * np.cos(t)], axis=1)
    mask |= tube(u, v, w, sinus, r * 1.35)
    return mask


def _add_tumor(labels, tissue, u, v, w, grid: Grid, rng: np.random.Generator, T: dict) -> None:
    """Paint a tumour with oedema into the cerebrum, in place."""
    cerebrum = labels == CEREBRUM
    depth = ndimage.distance_transform_edt(cerebrum, sampling=grid.sampling)
    radius = float(rng.uniform(9.0, 20.0))
    z_ok = np.zeros(labels.shape[0], dtype=bool)
    margin = int(np.ceil(radius / grid.slice_mm)) + 1
    z_ok[margin:labels.shape[0] - margin] = True
    candidates = np.argwhere((depth >= min(radius * 0.7, depth.max() * 0.8)) & z_ok[:, None, None])
    if candidates.size == 0:
        return
    k, i, j = candidates[rng.integers(len(candidates))]
    centre = np.array([u[k, i, j], v[k, i, j], w[k, i, j]])
    semi = radius * rng.uniform(0.8, 1.2, size=3)
    dist = np.sqrt(((u - centre[0]) / semi[0]) ** 2 + ((v - centre[1]) / semi[1]) ** 2
                   + ((w - centre[2]) / semi[2]) ** 2)
    wobble = smooth_noise(rng, labels.shape, (6, 10, 10)) * 0.12
    lesion = (dist + wobble <= 1.0) & (labels != BACKGROUND)
    if not lesion.any():
        return
    outside = ndimage.distance_transform_edt(~lesion, sampling=grid.sampling)
    edema_reach = float(rng.uniform(5.0, 14.0))
    edema = (outside > 0) & (outside < edema_reach * (1.0 + wobble * 3)) & (tissue == T["wm"]) & cerebrum
    tissue[edema] = T["edema"]
    inside = ndimage.distance_transform_edt(lesion, sampling=grid.sampling)
    necrotic = radius > 12.0
    tissue[lesion] = T["solid"]
    if necrotic:
        rim = float(rng.uniform(2.5, 4.5))
        tissue[lesion & (inside > rim)] = T["core"]
        tissue[lesion & (inside <= rim)] = T["rim"]
    labels[lesion] = TUMOR


def tumor_ok(labels: np.ndarray, grid: Grid) -> bool:
    """Whether the tumour is at least 1 mL and clear of the first and last slices."""
    tumor = labels == TUMOR
    voxel_ml = grid.spacing ** 2 * grid.slice_mm / 1000.0
    return tumor.sum() * voxel_ml >= 1.0 and not tumor[0].any() and not tumor[-1].any()
