"""Synthetic non-contrast head CT with optional intracerebral hematomas and exact truth.

Anatomy (all sizes in mm, varied per seed): an ellipsoidal head, tilted in-plane and
shifted off the isocentre; scalp (skin, subcutaneous fat, galea); a skull of varying
thickness with dense outer/inner tables and diploe; petrous ridges in the lowest slices;
a subarachnoid CSF rim and sulci; cortex (grey, ~38 HU) over white matter (~28 HU) with
texture; lateral and third ventricles (CSF, ~5 HU) whose cross-section changes with the
slice; the falx and optional calcifications (pineal, choroid plexus) as hard negatives;
a plastic head holder behind the head. Hematomas (1-3) are unions of ellipsoids with
noise-perturbed (irregular) margins, 10-60 mm, 50-90 HU, sometimes with a fluid level or
a hypodense part, with a thin perilesional oedema rim; their partial volume across the
5 mm slice is modelled. Then in-plane blur, correlated Gaussian noise (4-8 HU) and the
reconstruction circle (-1024 outside).

Randomised styles (``styles=True``, :class:`HeadCTStyle`, drawn from a random stream of
their own so that plain phantoms are unchanged): field of view (pixel spacing), noise
level and grain, reconstruction blur or an edge-enhancing kernel, a calibration offset
of the HU scale, the value outside the reconstruction circle, and the head's size,
position and in-plane rotation.

Pixel truth (``pixel_labels``) uses :data:`TRUTH_CLASSES`: air, scalp and head holder are
background; skull is bone; brain, CSF and ventricles are brain; hematoma is hematoma
(a pixel is hematoma when at least half of its slice thickness is).

Patch rule (``patch_labels``, the training target): the slice is cut into 16x16-pixel
patches; a patch is **hematoma** when hematoma pixels cover at least 25 % of it
(:data:`HEMATOMA_PATCH_FRACTION`); otherwise it takes the majority class among
background / brain / bone, hematoma pixels counting as brain (ties go to the class
listed first).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.phantoms.ct_series import Patient, SeriesSpec, Study, build_series

__all__ = [
    "HEMATOMA_PATCH_FRACTION",
    "PATCH_SIZE",
    "HeadCTPhantom",
    "TRUTH_CLASSES",
    "HeadCTStyle",
    "add_cli_arguments",
    "generate_head_ct",
    "run_cli",
    "patch_labels_from_pixels",
    "random_style",
    "write_phantom",
    "default_patient_id",
]

PATCH_SIZE = 16
"""Patch edge in pixels."""

HEMATOMA_PATCH_FRACTION = 0.25
"""Minimum fraction of a patch covered by hematoma for the patch to be "hematoma"."""

TRUTH_CLASSES: tuple[str, ...] = ("background", "brain", "hematoma", "bone")
"""The phantom's pixel and patch label values 0..3, by name."""

_BG, _BRAIN, _HEM, _BONE = (TRUTH_CLASSES.index(c) for c in ("background", "brain", "hematoma", "bone"))
_SLICE_MM = 5.0
_FOV_MM = 230.0


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
class HeadCTPhantom:
    """A synthetic head CT series and its ground truth.

    Attributes
    ----------
    datasets:
        One CT Image dataset per slice, sorted inferior to superior.
    hu:
        ``(n, size, size)`` int16 Hounsfield units.
    pixel_labels:
        ``(n, size, size)`` uint8, classes in :data:`TRUTH_CLASSES` order.
    patch_labels:
        ``(n, size // 16, size // 16)`` uint8, the training target (see module docs).
    has_hematoma:
        Whether any patch is hematoma.
    style:
        The randomised style (``None`` for a plain phantom).
    """

    datasets: list[Dataset]
    hu: np.ndarray
    pixel_labels: np.ndarray
    patch_labels: np.ndarray
    has_hematoma: bool
    style: HeadCTStyle | None = None


def default_patient_id(seed: int) -> str:
    """The Patient ID of this kind's phantom of ``seed`` (``HEADCT-<seed>``): phantoms of
    different kinds or seeds, whose names, sexes and birth dates differ, are never one patient."""
    return f"HEADCT-{seed}"


def generate_head_ct(
    seed: int = 0,
    slices: int = 24,
    hematoma: bool = True,
    *,
    patient_name: str = "Phantom^Head",
    patient_id: str | None = None,
    size: int = 512,
    styles: bool = False,
) -> HeadCTPhantom:
    """Generate one head CT series.

    Parameters
    ----------
    seed:
        Seed of everything random except the UIDs (which are always fresh).
    slices:
        Number of 5 mm slices, from the vertex downwards.
    hematoma:
        Whether to add hematomas. A requested hematoma is always visible in at least one
        hematoma patch.
    patient_name, patient_id:
        Patient's Name and ID (``patient_id`` defaults to ``HEADCT-<seed>``, so phantoms of
        different kinds or seeds are different patients).
    size:
        Matrix size (a multiple of 16); the field of view stays ~230 mm (the style's with
        ``styles``).
    styles:
        Draw a :class:`HeadCTStyle` (:func:`random_style`): field of view, noise level and
        grain, blur or sharpening, HU offset, outside value, head size, position and rotation.

    Returns
    -------
    HeadCTPhantom
    """
    if size % PATCH_SIZE or size < 64:
        raise ValueError(f"size must be a multiple of {PATCH_SIZE} and >= 64, got {size}")
    if slices < 1:
        raise ValueError(f"slices must be >= 1, got {slices}")
    rng = np.random.default_rng(seed)
    style = random_style(seed) if styles else None
    spacing = _FOV_MM / size * rng.uniform(0.93, 1.07)
    if style is not None:
        spacing = style.fov_mm / size
    head = _Head.random(rng, slices, spacing)
    if style is not None:
        head.styled(style)
    hu, labels = _render(head, rng, size, spacing, slices, hematoma, style)
    for _ in range(8):
        # A requested hematoma must show in at least one patch; redraw the lesions if not.
        if not hematoma or _patch_count(labels) > 0:
            break
        hu, labels = _render(head, rng, size, spacing, slices, hematoma, style)
    patches = patch_labels_from_pixels(labels)
    has_hem = bool((patches == _HEM).any())
    study = Study(
        date="20260115",
        time=f"{8 + seed % 10:02d}{seed % 60:02d}00",
        accession_number=f"PH{seed % 10**12:012d}"[:16],
        study_id=str(seed % 10**8),
        description="CT HEAD WO CONTRAST",
    )
    series = SeriesSpec(
        modality="CT",
        body_part="HEAD",
        series_number=2,
        description="Head 5mm phantom",
        window=(40.0, 80.0),
        kvp=120.0,
        extra={"ConvolutionKernel": "H30s", "PatientOrientation": ["L", "P"]},
    )
    patient = Patient(
        name=patient_name,
        id=patient_id if patient_id is not None else default_patient_id(seed),
        birth_date=f"{1940 + seed % 50}0{1 + seed % 9}15",
        sex="MF"[seed % 2],
    )
    datasets = build_series(
        hu,
        (spacing, spacing),
        _SLICE_MM,
        z_origin=head.z_first,
        patient=patient,
        study=study,
        series=series,
    )
    return HeadCTPhantom(datasets, hu, labels, patches, has_hem, style)


def patch_labels_from_pixels(pixel_labels: np.ndarray, patch: int = PATCH_SIZE) -> np.ndarray:
    """Apply the patch rule to ``(n, rows, cols)`` pixel labels.

    A patch is hematoma when hematoma covers >= 25 % of it; otherwise the majority of
    background / brain (hematoma counted as brain) / bone, ties to the first listed.

    Returns
    -------
    np.ndarray
        ``(n, rows // patch, cols // patch)`` uint8.
    """
    n, rows, cols = pixel_labels.shape
    blocks = pixel_labels.reshape(n, rows // patch, patch, cols // patch, patch)
    counts = np.stack([(blocks == c).sum(axis=(2, 4)) for c in range(len(TRUTH_CLASSES))], -1)
    hem = counts[..., _HEM] >= HEMATOMA_PATCH_FRACTION * patch * patch
    majority = np.stack(
        [counts[..., _BG], counts[..., _BRAIN] + counts[..., _HEM], counts[..., _BONE]], -1
    ).argmax(-1)
    classes = np.array([_BG, _BRAIN, _BONE], dtype=np.uint8)[majority]
    return np.where(hem, _HEM, classes).astype(np.uint8)


def write_phantom(phantom: HeadCTPhantom, out_dir: Path) -> list[Path]:
    """Write the slices as DICOM files plus ``truth.json`` and ``truth.npz``.

    Files: ``<InstanceNumber:04d>.dcm`` per slice; ``truth.json`` with ``has_hematoma``,
    per-slice hematoma patch counts and SOP Instance UIDs (in slice order);
    ``truth.npz`` with ``patch_labels``.

    Returns
    -------
    list[Path]
        All files written, DICOM first.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for ds in phantom.datasets:
        path = out_dir / f"{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    counts = (phantom.patch_labels == _HEM).sum(axis=(1, 2))
    truth = {
        "has_hematoma": phantom.has_hematoma,
        "classes": list(TRUTH_CLASSES),
        "patch_size": PATCH_SIZE,
        "hematoma_patch_fraction": HEMATOMA_PATCH_FRACTION,
        "hematoma_patches_per_slice": [int(c) for c in counts],
        "hematoma_patches": int(counts.sum()),
        "sop_instance_uids": [str(ds.SOPInstanceUID) for ds in phantom.datasets],
        "series_instance_uid": str(phantom.datasets[0].SeriesInstanceUID),
        "study_instance_uid": str(phantom.datasets[0].StudyInstanceUID),
        "style": asdict(phantom.style) if phantom.style else None,
    }
    json_path = out_dir / "truth.json"
    json_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    npz_path = out_dir / "truth.npz"
    np.savez_compressed(npz_path, patch_labels=phantom.patch_labels)
    return paths + [json_path, npz_path]


# --------------------------------------------------------------------------- geometry


@dataclass
class _Head:
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
    def random(rng: np.random.Generator, slices: int, spacing: float) -> "_Head":
        axes = np.array([rng.uniform(68, 78), rng.uniform(86, 98), rng.uniform(78, 92)])
        centre = np.array([rng.uniform(-8, 8), rng.uniform(-8, 8), 0.0])
        top = centre[2] + axes[2] - rng.uniform(3, 9)
        return _Head(
            axes=axes,
            centre=centre,
            angle=float(rng.uniform(-0.18, 0.18)),
            scalp=float(rng.uniform(4.0, 7.0)),
            skull=float(rng.uniform(5.0, 7.5)),
            skull_mod=rng.uniform(-1.0, 1.0, size=4),
            csf_rim=float(rng.uniform(1.0, 3.0)),
            z_first=float(top - (slices - 1) * _SLICE_MM),
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


def _render(
    head: _Head, rng: np.random.Generator, size: int, spacing: float, slices: int, hematoma: bool,
    style: HeadCTStyle | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render HU and pixel labels of the whole volume (the scanner's part in ``style``'s way)."""
    coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * spacing
    X, Y = np.meshgrid(coords, coords)  # X: columns (patient left is +x), Y: rows (posterior +y)
    c, s = np.cos(head.angle), np.sin(head.angle)
    xr = (X - head.centre[0]) * c + (Y - head.centre[1]) * s
    yr = -(X - head.centre[0]) * s + (Y - head.centre[1]) * c
    zs = (head.z_first + _SLICE_MM * np.arange(slices) - head.centre[2]).astype(np.float32)
    a, b, cz = head.axes

    # Normalised radius of the skin ellipsoid and the radial distance below the skin.
    r2_xy = (xr / a) ** 2 + (yr / b) ** 2
    rho2_xy = xr**2 + yr**2
    r = np.sqrt(r2_xy[None] + (zs[:, None, None] / cz) ** 2)
    rho = np.sqrt(rho2_xy[None] + zs[:, None, None] ** 2)
    depth = (1.0 - r) * rho / np.maximum(r, 1e-3)

    # Direction-dependent skull thickness.
    ux = xr / np.sqrt(np.maximum(rho2_xy, 1e-6))
    uy = yr / np.sqrt(np.maximum(rho2_xy, 1e-6))
    m = head.skull_mod
    mod_xy = m[0] * ux + m[1] * uy + m[2] * (ux * ux - uy * uy) + m[3] * ux * uy
    skull_t = head.skull * (1.0 + 0.22 * mod_xy)[None] + 1.2 * np.abs(uy)[None]
    skull_out = head.scalp
    skull_in = head.scalp + skull_t
    brain_top = skull_in + head.csf_rim

    hu = np.full((slices, size, size), -1000.0, dtype=np.float32)
    labels = np.zeros((slices, size, size), dtype=np.uint8)

    # Head holder: a plastic shell behind the head.
    r_xy = np.sqrt(r2_xy)
    shell = (r_xy > 1.09) & (r_xy < 1.09 + 3.0 / b) & (yr > 0.45 * b)
    hu[:, shell] = 140.0

    # Scalp: skin, fat, galea.
    scalp = (depth >= 0) & (depth < skull_out)
    fat = scalp & (depth > 1.4) & (depth < skull_out - 1.3)
    hu[scalp] = 40.0
    hu[fat] = -85.0

    # Skull: dense tables and diploe.
    bone = (depth >= skull_out) & (depth < skull_in)
    frac = (depth - skull_out) / np.maximum(skull_t, 1e-3)
    table = np.abs(frac - 0.5) * 2.0  # 1 at tables, 0 mid-diploe
    bone_hu = 750.0 + 700.0 * table**2
    hu[bone] = bone_hu[bone]
    labels[bone] = _BONE

    # Intracranial contents.
    inside = depth >= skull_in
    hu[inside] = 6.0
    labels[inside] = _BRAIN
    tex = _smooth_noise(rng, (slices, size, size), cells=20)
    sulci_noise = _smooth_noise(rng, (slices, size, size), cells=40)
    brain_depth = depth - brain_top
    parenchyma = inside & (brain_depth >= 0)
    cortex_t = 3.5 + 1.2 * tex
    grey_w = np.clip(1.0 - (brain_depth - cortex_t) / 1.5, 0.0, 1.0)
    tissue = head.white + (head.grey - head.white) * grey_w + 1.8 * tex
    hu[parenchyma] = tissue[parenchyma]
    sulci = parenchyma & (brain_depth < 9.0) & (sulci_noise > 0.9 + brain_depth / 9.0)
    hu[sulci] = 7.0

    # Falx above the ventricles.
    falx = parenchyma & (np.abs(xr)[None] < 0.9) & (zs[:, None, None] > head.vent_z - head.centre[2] + 14)
    hu[falx] = 52.0

    # Petrous ridges in the lowest part of the head.
    for side in (-1.0, 1.0):
        e = _ellipsoid(xr, yr, zs, (side * 0.55 * a, 0.15 * b, -0.32 * cz), (0.32 * a, 9.0, 11.0), side * 0.6)
        ridge = e & inside
        hu[ridge] = 1100.0
        labels[ridge] = _BONE

    # Ventricles.
    vs = head.vent_scale
    vz = head.vent_z - head.centre[2]
    ventricle = np.zeros_like(inside)
    for side in (-1.0, 1.0):
        ventricle |= _ellipsoid(xr, yr, zs, (side * 7 * vs, -8.0, vz), (5.5 * vs, 24.0 * vs ** 0.5, 13.0), side * 0.25)
        ventricle |= _ellipsoid(xr, yr, zs, (side * 12 * vs, 20.0, vz - 10), (5.0 * vs, 14.0, 12.0), -side * 0.35)
    ventricle |= _ellipsoid(xr, yr, zs, (0.0, 2.0, vz - 22), (1.5 * vs, 13.0, 10.0), 0.0)
    ventricle &= parenchyma
    hu[ventricle] = 4.0 + 1.5 * tex[ventricle]

    if head.calcified:
        calc = _ellipsoid(xr, yr, zs, (0.0, 22.0, vz - 18), (2.5, 2.5, 3.0), 0.0)
        for side in (-1.0, 1.0):
            calc |= _ellipsoid(xr, yr, zs, (side * 12 * vs, 22.0, vz - 8), (2.5, 3.5, 3.0), 0.0)
        calc &= parenchyma
        hu[calc] = 180.0

    if hematoma:
        allowed = parenchyma & (brain_depth > 1.0)
        _add_hematomas(rng, head, hu, labels, allowed, xr, yr, zs, spacing)

    # Scanner: blur (or an edge-enhancing kernel), correlated noise, reconstruction circle.
    blur, grain = (style.blur, style.noise_grain) if style else (0.7, 0.6)
    hu = ndimage.gaussian_filter(hu, sigma=(0.0, blur, blur), truncate=3.0)
    if style is not None and style.sharpen > 0:
        hu += style.sharpen * (hu - ndimage.gaussian_filter(hu, sigma=(0.0, 1.5, 1.5), truncate=3.0))
    sigma_n = rng.uniform(4.0, 8.0)  # drawn with a style too: the random stream stays the plain one's
    if style is not None:
        sigma_n = style.noise
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0.0, grain, grain), truncate=3.0)
    noise *= sigma_n / max(float(noise[0].std()), 1e-6)
    hu += noise
    if style is not None:
        hu += style.hu_offset
    circle = (X**2 + Y**2) > (size / 2 * spacing) ** 2
    outside = style.outside if style else -1024.0
    hu[:, circle] = outside
    hu_i = np.clip(np.rint(hu), min(outside, -1024.0), 3071).astype(np.int16)
    return hu_i, labels


def _add_hematomas(
    rng: np.random.Generator,
    head: _Head,
    hu: np.ndarray,
    labels: np.ndarray,
    allowed: np.ndarray,
    xr: np.ndarray,
    yr: np.ndarray,
    zs: np.ndarray,
    spacing: float,
) -> None:
    """Draw 1-3 hematomas inside ``allowed`` and write them into ``hu`` and ``labels``."""
    a, b, cz = head.axes
    inner = np.array([a - head.scalp - head.skull - 6, b - head.scalp - head.skull - 6, cz - 16])
    z_lo, z_hi = float(zs.min()), float(zs.max())
    for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3]))):
        diameter = rng.uniform(10.0, 60.0) if rng.random() < 0.8 else rng.uniform(10.0, 22.0)
        u = rng.uniform(-1, 1, size=3)
        while np.sum(u**2) > 1:
            u = rng.uniform(-1, 1, size=3)
        centre = u * np.maximum(inner - diameter / 3, 5.0)
        centre[2] = np.clip(centre[2], z_lo + 2, max(z_hi - 10, z_lo + 3))
        parts = []
        for k in range(int(rng.integers(2, 6))):
            off = rng.normal(0, diameter / 6, size=3) if k else np.zeros(3)
            ax = diameter / 2 * rng.uniform(0.4, 0.8, size=3)
            ax[2] = max(ax[2], 3.0)
            parts.append((centre + off, ax, float(rng.uniform(-np.pi, np.pi))))
        density = rng.uniform(55.0, 90.0)
        kind = rng.choice(["plain", "fluid", "hypodense"], p=[0.55, 0.2, 0.25])
        _paint_hematoma(rng, hu, labels, allowed, xr, yr, zs, parts, density, str(kind), spacing)


def _paint_hematoma(
    rng: np.random.Generator,
    hu: np.ndarray,
    labels: np.ndarray,
    allowed: np.ndarray,
    xr: np.ndarray,
    yr: np.ndarray,
    zs: np.ndarray,
    parts: list[tuple[np.ndarray, np.ndarray, float]],
    density: float,
    kind: str,
    spacing: float,
) -> None:
    """Rasterise one hematoma with partial volume over the slice thickness."""
    centres = np.array([p[0] for p in parts])
    extent = np.array([float(np.max(p[1])) for p in parts])
    x0, x1 = (centres[:, 0] - extent).min() - 6, (centres[:, 0] + extent).max() + 6
    y0, y1 = (centres[:, 1] - extent).min() - 6, (centres[:, 1] + extent).max() + 6
    z0, z1 = (centres[:, 2] - extent).min() - 3, (centres[:, 2] + extent).max() + 3
    box2d = (xr >= x0) & (xr <= x1) & (yr >= y0) & (yr <= y1)
    rows = np.flatnonzero(box2d.any(axis=1))
    cols = np.flatnonzero(box2d.any(axis=0))
    ks = np.flatnonzero((zs + _SLICE_MM / 2 >= z0) & (zs - _SLICE_MM / 2 <= z1))
    if rows.size == 0 or cols.size == 0 or ks.size == 0:
        return
    rs = slice(rows[0], rows[-1] + 1)
    cs = slice(cols[0], cols[-1] + 1)
    bx, by = xr[rs, cs], yr[rs, cs]
    h, w = bx.shape
    margin_noise = _smooth_noise(rng, (ks.size * 3, h, w), cells=max(3, int(max(h, w) * spacing / 6)))
    fill = np.zeros((ks.size, h, w), dtype=np.float32)
    field_mid = np.full((ks.size, h, w), -np.inf, dtype=np.float32)
    for j, k in enumerate(ks):
        for t, dz in enumerate((-_SLICE_MM / 3, 0.0, _SLICE_MM / 3)):
            z = zs[k] + dz
            f = np.full((h, w), -np.inf, dtype=np.float32)
            for centre, ax, ang in parts:
                ca, sa = np.cos(ang), np.sin(ang)
                dx, dy = bx - centre[0], by - centre[1]
                u = (dx * ca + dy * sa) / ax[0]
                v = (-dx * sa + dy * ca) / ax[1]
                f = np.maximum(f, 1.0 - (u * u + v * v + ((z - centre[2]) / ax[2]) ** 2))
            f = f + 0.22 * margin_noise[3 * j + t]
            fill[j] += (f > 0) / 3.0
            if t == 1:
                field_mid[j] = f
    sub_allowed = allowed[ks][:, rs, cs]
    fill *= sub_allowed
    sub_hu = hu[ks][:, rs, cs]
    sub_lab = labels[ks][:, rs, cs]
    # Oedema rim just outside the lesion.
    rim = sub_allowed & (fill == 0) & (field_mid > -0.35)
    sub_hu[rim] -= rng.uniform(4.0, 9.0)
    lesion = np.full(fill.shape, density, dtype=np.float32)
    lesion += 2.5 * _smooth_noise(rng, fill.shape, cells=max(3, int(max(h, w) * spacing / 4)))
    if kind == "fluid":
        level = float(np.quantile(by[None].repeat(ks.size, 0)[fill > 0], rng.uniform(0.3, 0.6))) if (fill > 0).any() else 0.0
        top = np.broadcast_to(by[None] < level, fill.shape)  # non-dependent (anterior) part
        lesion = np.where(top, density - rng.uniform(12.0, 20.0), density + 5.0).astype(np.float32)
        lesion += 2.0 * _smooth_noise(rng, fill.shape, cells=6)
    elif kind == "hypodense":
        pocket = field_mid > rng.uniform(0.45, 0.7)
        lesion = np.where(pocket, density - rng.uniform(10.0, 18.0), lesion)
    lesion = np.maximum(lesion, 46.0)
    sub_hu[:] = sub_hu * (1 - fill) + lesion * fill
    sub_lab[fill >= 0.5] = _HEM
    hu[ks, rs, cs] = sub_hu
    labels[ks, rs, cs] = sub_lab


def _ellipsoid(
    xr: np.ndarray,
    yr: np.ndarray,
    zs: np.ndarray,
    centre: tuple[float, float, float],
    axes: tuple[float, float, float],
    angle: float,
) -> np.ndarray:
    """Boolean ``(n, rows, cols)`` mask of an ellipsoid rotated by ``angle`` about z."""
    ca, sa = np.cos(angle), np.sin(angle)
    dx, dy = xr - centre[0], yr - centre[1]
    q = ((dx * ca + dy * sa) / axes[0]) ** 2 + ((-dx * sa + dy * ca) / axes[1]) ** 2
    qz = ((zs - centre[2]) / axes[2]) ** 2
    mask = np.zeros((zs.size,) + xr.shape, dtype=bool)
    for k in np.flatnonzero(qz < 1.0):
        mask[k] = q < 1.0 - qz[k]
    return mask


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], cells: int) -> np.ndarray:
    """Unit-variance-ish smooth noise: a coarse random grid upsampled per slice."""
    n, h, w = shape
    coarse = rng.standard_normal((n, cells + 1, cells + 1)).astype(np.float32)
    return _lerp_matrix(h, cells + 1) @ coarse @ _lerp_matrix(w, cells + 1).T / 0.6


def _lerp_matrix(out_size: int, in_size: int) -> np.ndarray:
    """``(out_size, in_size)`` matrix of linear interpolation weights."""
    pos = np.linspace(0.0, in_size - 1.0, out_size)
    lo = np.minimum(pos.astype(int), in_size - 2) if in_size > 1 else np.zeros(out_size, int)
    frac = (pos - lo).astype(np.float32)
    m = np.zeros((out_size, in_size), dtype=np.float32)
    m[np.arange(out_size), lo] = 1.0 - frac
    if in_size > 1:
        m[np.arange(out_size), lo + 1] = frac
    return m


def _patch_count(labels: np.ndarray) -> int:
    """Number of hematoma patches of ``labels``."""
    return int((patch_labels_from_pixels(labels) == _HEM).sum())


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ainode phantom head-ct``."""
    parser.add_argument("--out", type=Path, required=True, help="folder for the DICOM files and the truth")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same phantom)")
    parser.add_argument("--slices", type=int, default=24, help="axial slices")
    parser.add_argument("--hematoma", action=argparse.BooleanOptionalAction, default=True, help="draw a hematoma")
    parser.add_argument("--patient-name", default="Phantom^Head", help="Patient's Name written into the series")
    parser.add_argument("--patient-id", default=None, help="Patient ID (default HEADCT-<seed>)")
    parser.add_argument("--styles", action=argparse.BooleanOptionalAction, default=False,
                        help="randomised scanner and patient style drawn from the seed")


def run_cli(args: argparse.Namespace) -> int:
    """``ainode phantom head-ct``: write one synthetic head CT series with its truth."""
    phantom = generate_head_ct(
        seed=args.seed, slices=args.slices, hematoma=args.hematoma,
        patient_name=args.patient_name, patient_id=args.patient_id, styles=args.styles,
    )
    files = write_phantom(phantom, args.out)
    print(f"wrote {len(files)} files to {args.out} (hematoma: {phantom.has_hematoma})")
    return 0
