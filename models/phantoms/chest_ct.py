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
The airway style axis (``airway_style=True``, :mod:`models.phantoms.chest_ct_airway`, both
families) moves the carina's look: airway wall thickness, bronchus angles, 5 mm slices with
their partial volume, respiratory motion during the scan; the truth follows it.

The series spans from 10-35 mm above the higher apex to 35-65 mm below the higher dome,
so a 4 mm series has about 60-90 slices; patient size, table height (z offset), slice
count and noise level vary with the seed.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from models.phantoms.chest_ct_airway import AirwayStyle, airway_info, random_airway_style, subslice_heights
from models.phantoms.chest_ct_anatomy import Anatomy, ChestCTStyle, apply_style, random_anatomy, random_style
from models.phantoms.chest_ct_body import SUBSLICES, Body
from models.phantoms.chest_ct_truth import (
    LANDMARKS,
    MIN_LUMEN_AREA_MM2,
    MIN_VISIBLE_AREA_MM2,
    ChestCTPhantom,
    landmark_truth,
    write_phantom,
)
from models.phantoms.ct_series import Patient, SeriesSpec, Study, build_series

__all__ = [
    "LANDMARKS",
    "MIN_LUMEN_AREA_MM2",
    "MIN_VISIBLE_AREA_MM2",
    "ChestCTPhantom",
    "ChestCTStyle",
    "add_cli_arguments",
    "apply_airway_style",
    "generate_chest_ct",
    "run_cli",
    "write_phantom",
    "default_patient_id",
    "random_style",
]


# --------------------------------------------------------------------------- series


def default_patient_id(seed: int) -> str:
    """Patient ID of this kind's phantom of ``seed`` (``CHESTCT-<seed>``; kinds and seeds never share one)."""
    return f"CHESTCT-{seed}"


def generate_chest_ct(
    seed: int = 0,
    *,
    slice_thickness: float | None = 4.0,
    size: int | None = None,
    styles: bool = False,
    airway_style: bool = False,
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
    airway_style:
        Draw the seed's :class:`~models.phantoms.chest_ct_airway.AirwayStyle` (the axis that
        moves the carina's look: airway wall thickness, bronchus angles, 5 mm slices with
        their partial volume, respiratory motion); the truth follows it. With ``styles`` too,
        its angles replace the style's. ``slice_thickness=None``: its 5 mm.
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
    airway = random_airway_style(seed) if airway_style else None
    slice_thickness, spacing_z = _thickness_and_spacing(slice_thickness, style, airway)
    if size is None:
        size = style.size if style else 256
    if slice_thickness <= 0 or slice_thickness > 10:
        raise ValueError(f"slice_thickness must be in (0, 10] mm, got {slice_thickness}")
    rng = np.random.default_rng(seed)
    anatomy = random_anatomy(rng)
    if style is not None:
        apply_style(anatomy, style)
    if airway is not None:
        airway = replace(airway, slice_thickness=float(slice_thickness))
        apply_airway_style(anatomy, airway)
    fov = float(np.clip(2.0 * anatomy.axes[0] + rng.uniform(30.0, 70.0), 320.0, 480.0))
    if style is not None:
        fov = float(np.clip(2.0 * (anatomy.axes[0] + abs(anatomy.centre[0])) + style.fov_extra, 300.0, 520.0))
    spacing = fov / size
    coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * spacing
    X, Y = np.meshgrid(coords, coords)
    body = Body(anatomy, rng, X, Y, spacing)
    carina = body.carina_z()

    top = float(anatomy.apex.max()) + rng.uniform(10.0, 35.0)
    bottom = float(anatomy.dome.max()) - rng.uniform(35.0, 65.0)
    n = int(round((top - bottom) / spacing_z)) + 1
    zs = bottom + spacing_z * np.arange(n)  # relative to the carina
    z_offset = float(rng.uniform(-420.0, -120.0))  # table position: carina height in scanner z

    if airway is None:
        heights = zs[:, None] + np.array(SUBSLICES)[None, :] * slice_thickness
    else:
        heights = subslice_heights(zs, airway, float(anatomy.apex.max()), float(anatomy.dome.max()))
    hu, lung_area, dome_area = _render_slices(body, heights, size, fov)
    _add_table(hu, X, Y, anatomy)
    hu_i = _scanner(hu, rng, anatomy, style, slice_thickness, X, Y, fov)

    divided = body.divided_slices(zs, slice_thickness, heights)
    landmarks = landmark_truth(lung_area, dome_area, divided)
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
        datasets=datasets, hu=hu_i, landmarks=landmarks, z_positions=z_abs, lung_area_mm2=lung_area,
        dome_area_mm2=dome_area, carina_z=carina + z_offset, seed=int(seed),
        airway_divided=divided, pixel_spacing=spacing, slice_thickness=float(slice_thickness),
        info={"noise_hu": float(anatomy.noise), "fibrosis": float(anatomy.fibrosis), "fov_mm": fov,
              "styled": float(style is not None), "slice_spacing": float(spacing_z),
              **(airway_info(airway) if airway is not None else {})},
    )


def _thickness_and_spacing(
    slice_thickness: float | None, style: ChestCTStyle | None, airway: AirwayStyle | None,
) -> tuple[float, float]:
    """Slice thickness and spacing (mm): as given, else the airway style's, else the style's, else 4."""
    if slice_thickness is not None:
        return slice_thickness, float(slice_thickness)
    if airway is not None:
        return airway.slice_thickness, airway.slice_thickness
    if style is None:
        return 4.0, 4.0
    return style.slice_thickness, float(style.slice_thickness * style.spacing_ratio)


def apply_airway_style(anatomy: Anatomy, airway: AirwayStyle) -> None:
    """Give a family-A patient the airway style's wall (thickness, HU) and bronchus angles."""
    anatomy.airway_wall, anatomy.airway_wall_hu = airway.wall_mm, airway.wall_hu
    anatomy.bronchus_angle = np.radians(np.array(airway.bronchus_angle))


def _render_slices(
    body: Body, heights: np.ndarray, size: int, fov: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each slice as the mean of its sub-slices (at ``heights``, ``(n, k)``), with the largest
    lung and dome areas seen."""
    n = len(heights)
    hu = np.empty((n, size, size), dtype=np.float32)
    lung_area = np.zeros(n)
    dome_area = np.zeros(n)
    texture_rng = np.random.default_rng(body.texture_seed)
    for i, row in enumerate(heights):
        acc = np.zeros((size, size), dtype=np.float32)
        texture = _smooth_noise(texture_rng, (size, size), cells=max(8, int(fov / 10)))
        for h in row:
            sub, la, da = body.render(float(h), texture)
            acc += sub
            lung_area[i] = max(lung_area[i], la)
            dome_area[i] = max(dome_area[i], da)
        hu[i] = acc / len(row)
    return hu, lung_area, dome_area


def _scanner(
    hu: np.ndarray, rng: np.random.Generator, anatomy: Anatomy, style: ChestCTStyle | None,
    slice_thickness: float, X: np.ndarray, Y: np.ndarray, fov: float,
) -> np.ndarray:
    """Blur (and sharpening), correlated noise, HU offset and the reconstruction circle; int16."""
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
    return np.clip(np.rint(hu), min(outside, -1024.0), 3071).astype(np.int16)


def _add_table(hu: np.ndarray, X: np.ndarray, Y: np.ndarray, a: Anatomy) -> None:
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



def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ainode phantom chest-ct``."""
    parser.add_argument("--out", type=Path, required=True, help="folder for the DICOM files and truth.json")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same phantom)")
    parser.add_argument("--slice-thickness", type=float, default=None,
                        help="mm (default 4, or the style's 3-5 mm with --styles, 5 mm with --airway-style)")
    parser.add_argument("--size", type=int, default=None, help="matrix size (default 256, or the style's with --styles)")
    parser.add_argument("--styles", action="store_true",
                        help="randomised scanner and patient style of the seed (noise, sharpness, slices, field of view,"
                             " matrix, patient size and position, airway angles and carina, contrast)")
    parser.add_argument("--airway-style", action="store_true",
                        help="the seed's airway style, for both families: airway wall thickness, bronchus angles,"
                             " 5 mm slices with their partial volume, respiratory motion; the truth follows it"
                             " (default: off)")
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

        thickness = args.slice_thickness or (None if args.airway_style else 4.0)
        phantom = generate_chest_ct_b(
            seed=args.seed, slice_thickness=thickness, size=args.size or 256, airway_style=args.airway_style,
            patient_name=args.patient_name, patient_id=args.patient_id,
        )
    else:
        phantom = generate_chest_ct(
            seed=args.seed, slice_thickness=args.slice_thickness, size=args.size, styles=args.styles,
            airway_style=args.airway_style, patient_name=args.patient_name, patient_id=args.patient_id,
        )
    files = write_phantom(phantom, args.out)
    marks = ", ".join(f"{k} {v}" for k, v in phantom.landmarks.items())
    print(f"wrote {len(files)} files to {args.out} ({len(phantom.datasets)} slices; truth: {marks})")
    return 0
