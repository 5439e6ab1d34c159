"""Synthetic PA chest radiograph (DX) with optional lung nodules and pneumonia, and exact truth.

The radiograph is the projection of a 3D chest along the antero-posterior axis: every
pixel holds the line integral of attenuation (in mm of water equivalent) through

- the trunk (an elliptic cylinder whose half-width widens from the neck to the shoulders),
- two lungs (ellipsoids, air-filled, cut from below by the diaphragm domes, the right one
  higher), the heart (an ellipsoid to the patient's left that displaces lung) and the aortic
  knob, the trachea and main bronchi (air),
- bone: the spine (a column of vertebral bodies with disc spaces), posterior and anterior
  ribs and the clavicles (tubes with a dense cortical shell),
- lung vessels (tapering branches from the hila).

The chord of each primitive is computed analytically (ellipsoid / cylinder / tube chord
length), so the image is an exact line integral, not a painted picture. Then detector blur,
quantum-like noise (larger behind dense anatomy) and a log-domain mapping to 12-bit values.

Nodules follow the research (synthetic nodules embedded in radiographs): each nodule is a
union of 2-5 overlapping spheres in 3D (diameter about 5-30 mm), whose projected thickness
is computed by ray casting, blended into the lung field with a random contrast and a slight
edge softening (the "interpolated" appearance). The same radiograph without its nodules is
kept as a twin (:attr:`CXRPhantom.clean`), identical pixel for pixel elsewhere, noise
included. Pneumonia is patchy consolidation (lung air replaced by fluid along part of each
ray), mostly in the lower zones.

Randomised styles (``styles=True``, :class:`CXRStyle`, drawn from a random stream of their
own so that plain phantoms are unchanged): dose (the noise level, whose per-pixel sd then
follows the pixel pitch as a fixed number of quanta per mm² does), noise grain, detector
blur, the value mapping (values per mm, offset, a gamma curve, 12 or 14 bits), the
manufacturer's edge and dynamic-range processing (an unsharp mask of 6-30 mm), and the
patient's size, position and rotation. The nodule-free twin gets the same style, noise and
processing, so that the radiograph minus its twin is still exactly the nodules' signal.

Geometry: the detector is a square of :data:`FIELD_MM` (430 mm) with ``size`` pixels, so
``ImagerPixelSpacing = FIELD_MM / size`` (e.g. 0.84 mm at 512, 0.21 mm at 2048). Column 0
is the patient's right (``PatientOrientation = L\\F``, the usual PA display). MONOCHROME1
inverts the stored values (and the window centre) so that the displayed image, and the
anatomy the node's preprocessing reads, are the same as with MONOCHROME2.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid
from scipy import ndimage

__all__ = [
    "DX_FOR_PRESENTATION",
    "FIELD_MM",
    "CXRPhantom",
    "CXRStyle",
    "Nodule",
    "add_cli_arguments",
    "generate_cxr",
    "random_style",
    "run_cli",
    "write_phantom",
    "default_patient_id",
]

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
"""Digital X-Ray Image Storage - For Presentation."""

FIELD_MM = 430.0
"""Edge of the square detector field in mm."""

_BITS = 12
_MAX_VALUE = (1 << _BITS) - 1
_MU_SOFT, _MU_LUNG, _MU_BONE, _MU_MARROW = 1.0, 0.22, 2.2, 1.35
_VALUE_PER_MM = 9.0          # stored value per mm water equivalent (before offset)
_VALUE_OFFSET = 250.0


@dataclass(frozen=True)
class Nodule:
    """Ground truth of one embedded nodule (pixel coordinates of the written image).

    ``row``/``col``: centroid of the projected nodule; ``diameter_mm``: equivalent
    diameter of its projected area; ``radius_px``: half of it in pixels; ``contrast``:
    peak added attenuation in mm water equivalent.
    """

    row: float
    col: float
    diameter_mm: float
    radius_px: float
    contrast: float


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
class CXRPhantom:
    """A synthetic chest radiograph and its truth.

    Attributes
    ----------
    dataset:
        The DX image (with File Meta Information).
    image:
        ``(size, size)`` float32, displayed values (MONOCHROME2 sense: bright = dense),
        with nodules and pneumonia.
    clean:
        The nodule-free twin of ``image`` (same anatomy, noise and pneumonia).
    nodule_mask:
        ``(size, size)`` bool, projected nodules.
    nodules:
        Truth per nodule.
    pneumonia_mask:
        ``(size, size)`` bool, consolidated lung (empty when there is no pneumonia).
    lung_mask:
        ``(size, size)`` bool, projected lung fields.
    pixel_spacing:
        Imager pixel spacing in mm.
    has_pneumonia:
        Whether any lung is consolidated.
    style:
        The randomised style (``None`` for a plain phantom).
    """

    dataset: Dataset
    image: np.ndarray
    clean: np.ndarray
    nodule_mask: np.ndarray
    nodules: list[Nodule]
    pneumonia_mask: np.ndarray
    lung_mask: np.ndarray
    pixel_spacing: float
    has_pneumonia: bool = False
    style: CXRStyle | None = None


def default_patient_id(seed: int) -> str:
    """The Patient ID of this kind's phantom of ``seed`` (``CXR-<seed>``): phantoms of
    different kinds or seeds, whose names, sexes and birth dates differ, are never one patient."""
    return f"CXR-{seed}"


def generate_cxr(
    seed: int = 0,
    *,
    size: int = 512,
    nodules: int = 0,
    pneumonia: bool = False,
    photometric: str = "MONOCHROME2",
    min_diameter_mm: float = 5.0,
    max_diameter_mm: float = 30.0,
    patient_name: str = "Phantom^Chest",
    patient_id: str | None = None,
    study_uid: str | None = None,
    styles: bool = False,
) -> CXRPhantom:
    """Generate one PA chest radiograph.

    Parameters
    ----------
    seed:
        Seed of everything random except the UIDs.
    size:
        Rows = columns; the pixel spacing is ``FIELD_MM / size``.
    nodules:
        Number of nodules to embed (0 for a normal radiograph).
    pneumonia:
        Whether to add patchy consolidation.
    photometric:
        ``MONOCHROME2`` or ``MONOCHROME1`` (stored values inverted).
    min_diameter_mm, max_diameter_mm:
        Range of the nodules' nominal diameters.
    patient_name, patient_id, study_uid:
        Patient and study identity (``patient_id`` defaults to ``CXR-<seed>``, so
        phantoms of different kinds or seeds are different patients).
    styles:
        Draw a :class:`CXRStyle` (:func:`random_style`): dose and noise grain, detector
        blur, value mapping and bits, edge processing, patient size, position and rotation.

    Returns
    -------
    CXRPhantom
    """
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, not {photometric!r}")
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    rng = np.random.default_rng(seed)
    style = random_style(seed) if styles else None
    spacing = FIELD_MM / size
    shift = style.shift_mm if style else (0.0, 0.0)
    # pixel centres in mm (the patient's frame): x to the patient's left (column), z downwards (row)
    coords = (np.arange(size) + 0.5) * spacing - FIELD_MM / 2
    x = coords[np.newaxis, :] - shift[0]
    z = coords[:, np.newaxis] - shift[1]

    anatomy = _Anatomy.random(rng)
    if style is not None:
        anatomy = anatomy.styled(style)
    atten, lung_chord = _project_anatomy(anatomy, x, z, spacing, rng, shift)
    lung_mask = lung_chord > 20.0

    pneu_mask = np.zeros((size, size), dtype=bool)
    if pneumonia:
        fill = _consolidation(rng, anatomy, x, z, lung_chord, spacing)
        atten = atten + (_MU_SOFT - _MU_LUNG) * lung_chord * fill
        pneu_mask = (fill > 0.12) & lung_mask

    nodule_atten = np.zeros((size, size), dtype=np.float64)
    truths: list[Nodule] = []
    nodule_mask = np.zeros((size, size), dtype=bool)
    for _ in range(nodules):
        placed = _place_nodule(rng, lung_chord, nodule_mask, x, z, spacing, min_diameter_mm, max_diameter_mm)
        if placed is None:
            continue
        added, mask, truth = placed
        nodule_atten += added
        nodule_mask |= mask
        truths.append(truth)

    noise = rng.standard_normal((size, size))
    clean = _detector(atten, noise, spacing, style)
    image = _detector(atten + nodule_atten, noise, spacing, style)
    dataset = _dataset(image, spacing, photometric, seed, patient_name,
                       patient_id if patient_id is not None else default_patient_id(seed), study_uid, style)
    return CXRPhantom(
        dataset=dataset,
        image=image.astype(np.float32),
        clean=clean.astype(np.float32),
        nodule_mask=nodule_mask,
        nodules=truths,
        pneumonia_mask=pneu_mask,
        lung_mask=lung_mask,
        pixel_spacing=spacing,
        has_pneumonia=bool(pneu_mask.any()),
        style=style,
    )


def write_phantom(phantom: CXRPhantom, out_dir: Path) -> list[Path]:
    """Write ``image.dcm``, ``truth.json`` (nodules, pneumonia, UIDs) and ``truth.npz`` (masks).

    Returns
    -------
    list[Path]
        The files written, the DICOM file first.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dcm = out_dir / "image.dcm"
    phantom.dataset.save_as(dcm, enforce_file_format=True)
    truth = {
        "pixel_spacing_mm": phantom.pixel_spacing,
        "photometric": str(phantom.dataset.PhotometricInterpretation),
        "has_pneumonia": phantom.has_pneumonia,
        "nodules": [vars(n) for n in phantom.nodules],
        "sop_instance_uid": str(phantom.dataset.SOPInstanceUID),
        "series_instance_uid": str(phantom.dataset.SeriesInstanceUID),
        "study_instance_uid": str(phantom.dataset.StudyInstanceUID),
        "style": asdict(phantom.style) if phantom.style else None,
    }
    json_path = out_dir / "truth.json"
    json_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    npz = out_dir / "truth.npz"
    np.savez_compressed(
        npz, nodule_mask=phantom.nodule_mask, pneumonia_mask=phantom.pneumonia_mask,
        lung_mask=phantom.lung_mask, clean=phantom.clean,
    )
    return [dcm, json_path, npz]


# --------------------------------------------------------------------------- anatomy


@dataclass
class _Anatomy:
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
    def random(rng: np.random.Generator) -> "_Anatomy":
        u = rng.uniform
        lung_az = u(105, 130)
        lung_cz = u(-65, -45)
        dome = lung_cz + lung_az * u(0.55, 0.7)
        return _Anatomy(
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

    def styled(self, style: CXRStyle) -> "_Anatomy":
        """This anatomy scaled about the field centre by the style's patient size, with its rotation."""
        s = style.body_scale
        scaled = {name: (tuple(s * v for v in value) if isinstance(value, tuple) else s * value)
                  for name, value in vars(self).items() if name != "tilt"}
        return _Anatomy(**scaled, tilt=style.tilt)


def _chord_ellipsoid(x, z, cx, cz, ax, ay, az) -> np.ndarray:
    """Chord length along y through an ellipsoid centred at (cx, ·, cz)."""
    q = 1.0 - ((x - cx) / ax) ** 2 - ((z - cz) / az) ** 2
    return 2.0 * ay * np.sqrt(np.clip(q, 0.0, None))


def _tube_chord(distance: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Chord along y through a tube of ``radius`` at in-plane ``distance`` from its axis."""
    return 2.0 * np.sqrt(np.clip(np.asarray(radius) ** 2 - distance ** 2, 0.0, None))


def _project_anatomy(a: _Anatomy, x, z, spacing: float, rng: np.random.Generator,
                     shift: tuple[float, float] = (0.0, 0.0)):
    size = z.shape[0]
    xr = x + a.tilt * z  # slight rotation of the patient
    # trunk: elliptic cylinder, half-width growing from the neck to the shoulders
    t = 1.0 / (1.0 + np.exp(-(z - a.shoulder_z) / 12.0))
    half_width = a.neck_half_width + (a.body_half_width - a.neck_half_width) * t
    half_depth = 55.0 + (a.body_half_depth - 55.0) * t
    body = 2.0 * half_depth * np.sqrt(np.clip(1.0 - (xr / half_width) ** 2, 0.0, None))
    atten = _MU_SOFT * body

    # lungs: ellipsoids cut by the diaphragm domes (soft fade in the costophrenic recesses)
    lung = np.zeros_like(atten)
    for side, sign in ((0, -1.0), (1, 1.0)):
        cx = sign * a.lung_cx
        chord = _chord_ellipsoid(xr, z, cx, a.lung_cz, a.lung_ax, a.lung_ay, a.lung_az)
        dome = a.dome_z[side] + 28.0 * ((xr - cx) / a.lung_ax) ** 2
        chord = chord * np.clip((dome - z) / 18.0, 0.0, 1.0)
        lung += chord
    hx, hz, hax, hay, haz = a.heart
    heart = _chord_ellipsoid(xr, z, hx, hz, hax, hay, haz)
    knob = _chord_ellipsoid(xr, z, 22.0, a.lung_cz - 55.0, 18.0, 18.0, 16.0)
    lung = np.clip(lung - 0.8 * heart - 0.8 * knob, 0.0, None)
    atten -= (_MU_SOFT - _MU_LUNG) * lung

    # trachea and main bronchi (air)
    carina = a.lung_cz - 30.0
    trachea = _tube_chord(np.abs(xr - 0.0), 8.5) * (z < carina)
    atten -= _MU_SOFT * 0.8 * trachea
    for sign in (-1.0, 1.0):
        d = _segment_distance(xr, z, (0.0, carina), (sign * 38.0, carina + 28.0 + 6 * (sign > 0)))
        atten -= _MU_SOFT * 0.5 * _tube_chord(d, 6.0)

    # spine: vertebral bodies and disc spaces
    period = 26.0
    phase = np.mod(z - a.shoulder_z, period) / period
    disc = np.exp(-((phase - 0.5) / 0.08) ** 2)
    vert = _tube_chord(np.abs(xr), 22.0)
    atten += (_MU_BONE - _MU_SOFT) * 0.55 * vert * (1.0 - 0.45 * disc)
    pedicles = sum(_tube_chord(np.hypot(xr - s * 16.0, (phase - 0.3) * period), 5.0) for s in (-1, 1))
    atten += (_MU_BONE - _MU_SOFT) * 0.6 * pedicles

    # bones with a cortical shell: posterior ribs, anterior ribs, clavicles
    for curves in (_posterior_ribs(a), _anterior_ribs(a), _clavicles(a)):
        d, r = _distance_to_curves(curves, size, spacing, shift)
        outer = _tube_chord(d, r)
        inner = _tube_chord(d, 0.7 * r)
        atten += (_MU_BONE - _MU_SOFT) * (outer - inner) + (_MU_MARROW - _MU_SOFT) * inner

    # lung vessels: tapering branches from the hila, inside the lungs only
    vessels = _vessel_curves(rng, a)
    d, r = _distance_to_curves(vessels, size, spacing, shift)
    atten += (_MU_SOFT - _MU_LUNG) * 2.5 * _tube_chord(d, r) * (lung > 5.0)
    # soft low-frequency texture (overlying tissue)
    atten += 6.0 * _smooth_field(rng, (size, size), 8)
    return atten, lung


def _segment_distance(x, z, p0, p1) -> np.ndarray:
    px, pz = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((x - p0[0]) * px + (z - p0[1]) * pz) / (px * px + pz * pz), 0.0, 1.0)
    return np.hypot(x - p0[0] - t * px, z - p0[1] - t * pz)


def _posterior_ribs(a: _Anatomy):
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


def _anterior_ribs(a: _Anatomy):
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


def _clavicles(a: _Anatomy):
    curves = []
    for sign in (-1.0, 1.0):
        t = np.linspace(0.0, 1.0, 60)
        xs = sign * (18.0 + t * 135.0)
        zs = a.rib_top - 2.0 - 12.0 * t + 6.0 * np.sin(2 * np.pi * t)
        curves.append((xs, zs, np.full_like(t, 7.5)))
    return curves


def _vessel_curves(rng: np.random.Generator, a: _Anatomy):
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


def _distance_to_curves(curves, size: int, spacing: float, shift: tuple[float, float] = (0.0, 0.0)):
    """Distance (mm) of every pixel to the nearest curve point, and that point's radius
    (curves in the patient's frame, which sits ``shift`` mm from the field centre)."""
    seeds = np.zeros((size, size), dtype=bool)
    radius_at = np.zeros((size, size), dtype=np.float64)
    for xs, zs, rs in curves:
        # densify so consecutive points are < 1 pixel apart
        n = max(2, int(np.ceil(np.hypot(np.diff(xs), np.diff(zs)).sum() / (0.5 * spacing))))
        t = np.linspace(0, len(xs) - 1, n)
        xi = np.interp(t, np.arange(len(xs)), xs)
        zi = np.interp(t, np.arange(len(zs)), zs)
        ri = np.interp(t, np.arange(len(rs)), rs)
        cols = np.floor((xi + shift[0] + FIELD_MM / 2) / spacing).astype(int)
        rows = np.floor((zi + shift[1] + FIELD_MM / 2) / spacing).astype(int)
        ok = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        seeds[rows[ok], cols[ok]] = True
        radius_at[rows[ok], cols[ok]] = np.maximum(radius_at[rows[ok], cols[ok]], ri[ok])
    if not seeds.any():
        return np.full((size, size), 1e6), np.zeros((size, size))
    dist, (ir, ic) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    return dist * spacing, radius_at[ir, ic]


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells))
    field_ = ndimage.zoom(coarse, (shape[0] / cells, shape[1] / cells), order=3)
    return field_[: shape[0], : shape[1]]


# --------------------------------------------------------------------------- lesions


def _consolidation(rng, a: _Anatomy, x, z, lung_chord, spacing) -> np.ndarray:
    """Fraction of lung air replaced by fluid along each ray (patchy, mostly lower zones)."""
    size = z.shape[0]
    fill = np.zeros((size, size))
    sides = [int(rng.integers(0, 2))] if rng.random() < 0.75 else [0, 1]
    for side in sides:
        sign = -1.0 if side == 0 else 1.0
        lower = rng.random() < 0.8
        top = a.lung_cz - a.lung_az
        bottom = a.dome_z[side]
        span = bottom - top
        cz = bottom - span * rng.uniform(0.12, 0.3) if lower else top + span * rng.uniform(0.35, 0.6)
        cx = sign * a.lung_cx + rng.uniform(-20, 20)
        rx, rz = rng.uniform(30, 50), rng.uniform(30, 48)
        envelope = np.exp(-(((x - cx) / rx) ** 2 + ((z - cz) / rz) ** 2) ** 1.5)
        patches = _smooth_field(rng, (size, size), int(rng.integers(14, 22)))
        patches = np.clip((patches + rng.uniform(0.6, 1.0)) / 1.4, 0.0, 1.0)
        fill = np.maximum(fill, envelope * patches * rng.uniform(0.4, 0.75))
    fill = ndimage.gaussian_filter(fill, 2.0 / spacing)
    return fill * (lung_chord > 5.0)


def _place_nodule(rng, lung_chord, taken, x, z, spacing, dmin, dmax):
    """One nodule: union of overlapping spheres, ray-cast, inside a lung field."""
    size = lung_chord.shape[0]
    inside = ndimage.binary_erosion(lung_chord > 60.0, iterations=max(1, int(12 / spacing)))
    inside &= ~ndimage.binary_dilation(taken, iterations=max(1, int(25 / spacing)))
    candidates = np.argwhere(inside)
    if len(candidates) == 0:
        return None
    row, col = candidates[rng.integers(len(candidates))]
    diameter = float(np.exp(rng.uniform(np.log(dmin), np.log(dmax))))
    radius = diameter / 2.0
    n_spheres = int(rng.integers(2, 6))
    centres = [np.zeros(3)]
    radii = [radius * rng.uniform(0.75, 0.95)]
    for _ in range(n_spheres - 1):
        base = centres[int(rng.integers(len(centres)))]
        offset = rng.normal(0, 1, 3)
        offset *= radius * rng.uniform(0.25, 0.55) / np.linalg.norm(offset)
        centres.append(base + offset)
        radii.append(radius * rng.uniform(0.4, 0.7))
    centres_arr, radii_arr = np.array(centres), np.array(radii)
    extent = np.abs(centres_arr).max() + radii_arr.max() + 2 * spacing
    half = int(np.ceil(extent / spacing)) + 1
    r0, r1 = max(0, row - half), min(size, row + half + 1)
    c0, c1 = max(0, col - half), min(size, col + half + 1)
    # ray casting with 2x2 supersampling in-plane and 0.5 mm steps in depth
    sub = (np.arange(2) + 0.5) / 2 - 0.5
    rows = (np.arange(r0, r1)[:, None] + sub[None, :]).reshape(-1) - row
    cols = (np.arange(c0, c1)[:, None] + sub[None, :]).reshape(-1) - col
    zz, xx = np.meshgrid(rows * spacing, cols * spacing, indexing="ij")
    depth = np.arange(-extent, extent, 0.5)
    inside3d = np.zeros(zz.shape + depth.shape, dtype=bool)
    for (cx_, cy_, cz_), rad in zip(centres_arr, radii_arr):
        inside3d |= ((xx - cx_) ** 2 + (zz - cz_) ** 2)[..., None] + (depth - cy_) ** 2 <= rad ** 2
    thick = inside3d.sum(axis=-1) * 0.5
    thick = thick.reshape(r1 - r0, 2, c1 - c0, 2).mean(axis=(1, 3))
    coverage = (inside3d.any(axis=-1)).reshape(r1 - r0, 2, c1 - c0, 2).mean(axis=(1, 3))
    contrast = rng.uniform(0.45, 1.0)
    soft = ndimage.gaussian_filter(thick, rng.uniform(0.3, 1.0) / spacing * 0.8)
    added = np.zeros_like(lung_chord)
    added[r0:r1, c0:c1] = (_MU_SOFT - _MU_LUNG) * contrast * soft
    mask = np.zeros(lung_chord.shape, dtype=bool)
    mask[r0:r1, c0:c1] = coverage >= 0.5
    if not mask.any():
        return None
    rr, cc = np.nonzero(mask)
    weights = thick[rr - r0, cc - c0] + 1e-6
    area_mm2 = mask.sum() * spacing * spacing
    eq_diameter = float(2.0 * np.sqrt(area_mm2 / np.pi))
    truth = Nodule(
        row=float(np.average(rr, weights=weights)),
        col=float(np.average(cc, weights=weights)),
        diameter_mm=eq_diameter,
        radius_px=eq_diameter / 2.0 / spacing,
        contrast=float(added.max()),
    )
    return added, mask, truth


def _detector(atten: np.ndarray, noise: np.ndarray, spacing: float, style: CXRStyle | None = None) -> np.ndarray:
    """Detector blur, quantum-like noise and the log-domain value mapping (MONOCHROME2).

    With a style: its blur, value mapping and bits; noise of its dose, whose per-pixel sd
    grows as the pixel shrinks (a fixed number of quanta per mm²), correlated by its grain;
    then its unsharp-mask processing.
    """
    if style is None:
        blurred = ndimage.gaussian_filter(atten, 0.35 / spacing)
        values = _VALUE_OFFSET + _VALUE_PER_MM * blurred
        sigma = (6.0 + 0.03 * values) * np.sqrt(spacing / 0.84)
        return np.clip(values + sigma * noise, 0, _MAX_VALUE)
    blurred = np.clip(ndimage.gaussian_filter(atten, style.blur_mm / spacing), 0.0, None)
    reference = 200.0   # mm water equivalent where the gamma curve meets the linear mapping
    curved = reference * (blurred / reference) ** style.gamma
    range_scale = float(1 << (style.bits - _BITS))
    values = style.value_offset + style.value_per_mm * curved
    if style.noise_grain > 0:
        noise = ndimage.gaussian_filter(noise, style.noise_grain)
        noise = noise / max(float(noise.std()), 1e-9)
    sigma = (6.0 + 0.03 * values) * style.dose * (0.84 / spacing)
    image = values + sigma * noise
    if style.processing > 0:
        image = image + style.processing * (image - ndimage.gaussian_filter(image, style.processing_mm / spacing))
    return np.clip(image * range_scale, 0, (1 << style.bits) - 1)


# --------------------------------------------------------------------------- DICOM


def _dataset(image, spacing, photometric, seed, patient_name, patient_id, study_uid,
             style: CXRStyle | None = None) -> Dataset:
    bits = style.bits if style else _BITS
    max_value = (1 << bits) - 1
    floor = (style.value_offset * (1 << (bits - _BITS)) if style else _VALUE_OFFSET) + 50
    stored = np.rint(image).astype(np.uint16)
    low, high = np.percentile(image[image > floor] if (image > floor).any() else image, (2, 99.5))
    center, width = float((low + high) / 2), float(max(high - low, 1.0))
    if photometric == "MONOCHROME1":
        stored = (max_value - stored).astype(np.uint16)
        center = max_value - center

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "AINODE_PHANTOM1"
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    if not patient_name.isascii():
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = "Chest PA"
    ds.Modality = "DX"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = "Chest PA phantom"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.AcquisitionContextSequence = DicomSequence()
    ds.PositionerType = ""
    ds.Manufacturer = "ainode phantom"
    ds.ManufacturerModelName = "digital CXR phantom"
    ds.SoftwareVersions = "1"
    ds.DeviceSerialNumber = f"seed-{seed}"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDate, ds.AcquisitionTime = date, time
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["L", "F"]
    ds.ImageLaterality = "U"
    region = Dataset()
    region.CodeValue = "43799004"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Thorax"
    ds.AnatomicRegionSequence = DicomSequence([region])
    view = Dataset()
    view.CodeValue = "399348003"
    view.CodingSchemeDesignator = "SCT"
    view.CodeMeaning = "postero-anterior"
    ds.ViewCodeSequence = DicomSequence([view])
    ds.PatientPosition = ""
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
    ds.KVP = "120"
    ds.DistanceSourceToDetector = "1800"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME2" else -1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
    ds.WindowCenter = f"{center:.1f}"
    ds.WindowWidth = f"{width:.1f}"
    ds.WindowCenterWidthExplanation = "phantom lung window"
    ds.PixelData = stored.tobytes()
    return ds


# --------------------------------------------------------------------------- CLI


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ainode phantom cxr``."""
    parser.add_argument("--out", type=Path, required=True, help="folder for image.dcm and the truth")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same phantom)")
    parser.add_argument("--size", type=int, default=1024, help="rows = columns (pixel spacing 430 mm / size)")
    parser.add_argument("--nodules", type=int, default=0, help="nodules to embed")
    parser.add_argument("--pneumonia", action=argparse.BooleanOptionalAction, default=False, help="draw a pneumonic opacity")
    parser.add_argument("--photometric", choices=("MONOCHROME1", "MONOCHROME2"), default="MONOCHROME2",
                        help="Photometric Interpretation of the radiograph")
    parser.add_argument("--patient-name", default="Phantom^Chest", help="Patient's Name written into the series")
    parser.add_argument("--patient-id", default=None, help="Patient ID (default CXR-<seed>)")
    parser.add_argument("--styles", action=argparse.BooleanOptionalAction, default=False,
                        help="randomised detector, processing and patient style drawn from the seed")


def run_cli(args: argparse.Namespace) -> int:
    """``ainode phantom cxr``: write one synthetic PA chest radiograph with its truth."""
    phantom = generate_cxr(
        seed=args.seed, size=args.size, nodules=args.nodules, pneumonia=args.pneumonia,
        photometric=args.photometric, patient_name=args.patient_name, patient_id=args.patient_id,
        styles=args.styles,
    )
    files = write_phantom(phantom, args.out)
    print(
        f"wrote {len(files)} files to {args.out} (nodules: {len(phantom.nodules)}, "
        f"pneumonia: {phantom.has_pneumonia}, {args.photometric})"
    )
    return 0
