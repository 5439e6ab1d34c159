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

With ``airway_style=True`` the airway style axis of both families
(:mod:`models.phantoms.chest_ct_airway`: wall, bronchus angles, 5 mm slices, breathing) replaces
this family's wall and angles and renders each sub-slice at the breathing patient's height; the
truth is computed at the same heights.

Seeds are independent of family A's: ``generate_chest_ct_b(seed)`` and
``generate_chest_ct(seed)`` are different patients. The same seed gives the same
phantom (pixels and truth; UIDs are always fresh).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from models.phantoms.chest_ct_airway import airway_info, random_airway_style, subslice_heights
from models.phantoms.chest_ct_b_patient import PatientB, discs
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


class _Renderer:
    """Renders sub-slices of a :class:`PatientB` on an image grid."""

    def __init__(self, pt: PatientB, X: np.ndarray, Y: np.ndarray, spacing: float, texture_seed: int) -> None:
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
        vessels = discs(pt.vessels, z, X, Y, sp) & lung
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
        aorta = discs(pt.aorta, z, X, Y, sp)
        great = discs(pt.great, z, X, Y, sp) | discs(pt.svc, z, X, Y, sp)
        med |= heart | discs(pt.aorta.grown(3.0), z, X, Y, sp) | discs(pt.great.grown(2.5), z, X, Y, sp)
        med |= discs(pt.svc.grown(2.0), z, X, Y, sp)
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
        hu[discs(pt.ribs, z, X, Y, sp) & body] = 480.0
        hu[discs(pt.cartilage, z, X, Y, sp) & body] = 120.0
        if pt.dome[0] + 10.0 < z < pt.rib_top - 25.0:
            st_y = pt.cyc - b_c - 0.45 * pt.wall
            hu[(((X - pt.x_mid) / 14.0) ** 2 + ((Y - st_y) / 6.0) ** 2 < 1.0) & body] = 320.0
        # Airways: wall, then lumen.
        hu[discs(pt.airway_wall, z, X, Y, sp) & cavity] = pt.wall_hu
        if z > pt.shoulder - 10.0:
            wall = discs(pt.airway_wall, z, X, Y, sp) & body
            hu[wall] = pt.wall_hu
        lumen = discs(pt.lumen, z, X, Y, sp) & body
        hu[lumen] = -1000.0

    def divided(self, heights: np.ndarray) -> np.ndarray:
        """Per slice: whether the slab-averaged lumen (0.4 mm grid) shows two or more lumens;
        ``heights`` (``(n, k)``): the sub-slice heights each slice was rendered at."""
        pt = self.pt
        g = np.arange(-48.0, 48.0, _GRID)
        gx, gy = np.meshgrid(pt.carina_pt[0] + g, pt.carina_pt[1] + g)
        min_px = MIN_LUMEN_AREA_MM2 / _GRID**2
        out = np.zeros(len(heights), dtype=bool)
        for i, row in enumerate(heights):
            z = float(np.mean(row))
            if z > 25.0 or z < -70.0:
                continue
            frac = sum(discs(pt.lumen, float(h), gx, gy, _GRID).astype(np.float32) for h in row)
            labels, count = ndimage.label(frac > len(row) / 2.0)
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


def _render(renderer: _Renderer, heights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each slice as the mean of its sub-slices at ``heights`` (``(n, k)``), with the largest
    lung and dome areas seen."""
    n = len(heights)
    hu = np.empty((n, size, size), dtype=np.float32)
    lung_area, dome_area = np.zeros(n), np.zeros(n)
    for i, row in enumerate(heights):
        acc = np.zeros((size, size), dtype=np.float32)
        for h in row:
            sub, la, da = renderer.render(float(h))
            acc += sub
            lung_area[i] = max(lung_area[i], la)
            dome_area[i] = max(dome_area[i], da)
        hu[i] = acc / len(row)
    return hu, lung_area, dome_area


def generate_chest_ct_b(
    seed: int = 0,
    *,
    slice_thickness: float | None = 4.0,
    size: int = 256,
    airway_style: bool = False,
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
        Slice thickness and spacing (mm); ``None``: 4 mm, or the airway style's 5 mm.
    size:
        Matrix size; the field of view (300-500 mm) follows the patient (and arms).
    airway_style:
        Draw the seed's :class:`~models.phantoms.chest_ct_airway.AirwayStyle` (airway wall
        thickness, bronchus angles, 5 mm slices with their partial volume, respiratory
        motion), as for family A; the truth follows it.
    patient_name, patient_id, study_instance_uid:
        As for :func:`models.phantoms.chest_ct.generate_chest_ct` (ID default
        ``CHESTCTB-<seed>``).

    Returns
    -------
    ChestCTPhantom
        ``info`` holds ``noise_hu``, ``contrast``, ``arms``, ``fov_mm`` and ``sharpness``;
        ``carina_z`` is the z of the plane where the trachea ends and the bronchi begin.
    """
    airway = random_airway_style(seed) if airway_style else None
    if slice_thickness is None:
        slice_thickness = airway.slice_thickness if airway is not None else 4.0
    if slice_thickness <= 0 or slice_thickness > 10:
        raise ValueError(f"slice_thickness must be in (0, 10] mm, got {slice_thickness}")
    if airway is not None:
        airway = replace(airway, slice_thickness=float(slice_thickness))
    rng = np.random.default_rng([int(seed), 0xB])
    pt = PatientB(rng, airway)
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
    if airway is None:
        heights = zs[:, None] + np.array(_SUBSLICES)[None, :] * slice_thickness
    else:
        heights = subslice_heights(zs, airway, float(pt.apex.max()), float(pt.dome.max()))
    hu, lung_area, dome_area = _render(renderer, heights, size)

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

    divided = renderer.divided(heights)
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
              "sharpness": float(sharp), **(airway_info(airway) if airway is not None else {})},
    )
