"""Synthetic axial brain MR (T1-like post-contrast or heavy-T2-like) with label volumes.

Anatomy (mm, patient coordinates LPS, varied per seed: size, shape, position, in-plane
rotation, ventricle size, vessel paths, slice coverage): scalp (skin and fat), a skull
with diploe, a subarachnoid CSF rim with sulci, the cerebrum (cortex over white matter,
deep grey nuclei), the cerebellum (folia texture) beneath the tentorium, the brainstem
tilting backwards as it descends, the lateral, third and fourth ventricles, and major
vessels: basilar artery, both middle cerebral arteries, the anterior cerebral arteries
and the superior sagittal sinus. An optional tumour (9-20 mm, irregular margins, an
enhancing rim around a necrotic core when large) lies in the cerebrum with peritumoral
oedema in the white matter around it.

Two contrasts of the same anatomy, written as separate series of one study and one
frame of reference:

* ``T1``: T1-weighted after gadolinium: white matter brighter than grey, CSF dark,
  vessels and the tumour rim bright (enhancing), oedema hypointense;
* ``T2``: heavy T2: CSF very bright, vessels dark (flow voids), tumour and oedema bright.

Then a smooth multiplicative intensity inhomogeneity (bias field, ±15-30 %), in-plane
blur and Rician noise. Matrix 128², ~1.6 mm pixels, 32 slices of 4 mm (defaults).

Randomised styles (``styles=True``, :class:`BrainMRStyle`, drawn from a random stream of
their own so that plain phantoms are unchanged): field of view, slice thickness (3-5 mm),
noise level, bias field strength, blur, tissue contrast and the scanner's gain, and the
head's size, position and in-plane rotation.

Truth (``labels``, one value per voxel at the slice centre) uses
:data:`TRUTH_CLASSES` (the brain MR pack maps them to its classes by name): background
(air, scalp, skull, CSF outside the ventricles), cerebrum (oedema included), cerebellum,
brainstem, ventricles, vessels, tumour.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom import Dataset
from pydicom.uid import MRImageStorage, generate_uid
from scipy import ndimage

from models.phantoms.ct_series import Patient, SeriesSpec, Study, build_series
from models.phantoms.nifti import write_nifti

__all__ = [
    "CONTRASTS",
    "TRUTH_CLASSES",
    "BrainMRPhantom",
    "BrainMRStyle",
    "add_cli_arguments",
    "generate_brain_mr",
    "random_style",
    "run_cli",
    "write_phantom",
    "default_patient_id",
]

CONTRASTS: tuple[str, ...] = ("T1", "T2")
"""Contrasts the phantom renders."""

TRUTH_CLASSES: tuple[str, ...] = (
    "background", "cerebrum", "cerebellum", "brainstem", "ventricles", "vessels", "tumor",
)
"""The phantom's label values 0..6 (``labels``), by name."""

_BG, _CER, _CBL, _BST, _VEN, _VES, _TUM = range(7)
_SLICE_MM = 4.0
_FOV_MM = 205.0

# Tissue intensities (arbitrary units) per contrast.
_TISSUES = ("air", "skin", "fat", "bone", "diploe", "csf", "gm", "wm", "deep", "cbl_gm",
            "cbl_wm", "stem", "vessel", "rim", "core", "solid", "edema")
_INTENSITY = {
    "T1": dict(air=0, skin=450, fat=900, bone=60, diploe=650, csf=180, gm=520, wm=780,
               deep=600, cbl_gm=540, cbl_wm=760, stem=720, vessel=1150, rim=1100, core=300,
               solid=1000, edema=560),
    "T2": dict(air=0, skin=350, fat=450, bone=40, diploe=300, csf=1400, gm=520, wm=330,
               deep=480, cbl_gm=560, cbl_wm=340, stem=380, vessel=60, rim=700, core=1200,
               solid=800, edema=850),
}
_SEQUENCE = {
    "T1": dict(ScanningSequence="SE", SequenceVariant="SP", ScanOptions="", MRAcquisitionType="2D",
               RepetitionTime="500", EchoTime="12", EchoTrainLength=1, ContrastBolusAgent="Gadolinium",
               description="T1 SE post-contrast 4mm phantom", window=(700.0, 1400.0), number=3),
    "T2": dict(ScanningSequence="SE", SequenceVariant=["SK", "SP"], ScanOptions="", MRAcquisitionType="2D",
               RepetitionTime="4000", EchoTime="250", EchoTrainLength=128, ContrastBolusAgent=None,
               description="Heavy T2 TSE 4mm phantom", window=(700.0, 1400.0), number=2),
}


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
class BrainMRPhantom:
    """A synthetic brain MR study and its ground truth.

    Attributes
    ----------
    series:
        Contrast (``"T1"``/``"T2"``) → its MR Image datasets, inferior to superior. All
        series share the study and the frame of reference.
    images:
        Contrast → ``(n, size, size)`` uint16 stored pixel values (every contrast when
        DICOM is written, else the requested ones).
    labels:
        ``(n, size, size)`` uint8 label volume (see the module docs).
    pixel_spacing:
        Pixel spacing in mm (rows = columns).
    slice_spacing:
        Distance between slice centres in mm.
    seed:
        The seed it was made from.
    style:
        The randomised style (``None`` for a plain phantom).
    """

    series: dict[str, list[Dataset]]
    images: dict[str, np.ndarray]
    labels: np.ndarray
    pixel_spacing: float
    slice_spacing: float
    seed: int
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    contrasts: tuple[str, ...] = field(default=("T1",))
    style: BrainMRStyle | None = None

    @property
    def datasets(self) -> list[Dataset]:
        """The series of the first requested contrast."""
        return self.series[self.contrasts[0]]

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL."""
        return self.pixel_spacing ** 2 * self.slice_spacing / 1000.0

    @property
    def has_tumor(self) -> bool:
        return bool((self.labels == _TUM).any())

    def volumes_ml(self) -> dict[str, float]:
        """Volume of every class except background, in mL."""
        counts = np.bincount(self.labels.ravel(), minlength=len(TRUTH_CLASSES))
        return {name: float(counts[i] * self.voxel_ml) for i, name in enumerate(TRUTH_CLASSES) if i}

    def affine(self) -> np.ndarray:
        """4x4 matrix from voxel index ``(column, row, slice, 1)`` to LPS patient mm."""
        a = np.eye(4)
        a[0, 0] = a[1, 1] = self.pixel_spacing
        a[2, 2] = self.slice_spacing
        a[:3, 3] = self.origin
        return a


def default_patient_id(seed: int) -> str:
    """The Patient ID of this kind's phantom of ``seed`` (``BRAINMR-<seed>``): phantoms of
    different kinds or seeds, whose names, sexes and birth dates differ, are never one patient."""
    return f"BRAINMR-{seed}"


def generate_brain_mr(
    seed: int = 0,
    tumor: bool = True,
    *,
    contrasts: Sequence[str] = ("T1",),
    slices: int = 32,
    size: int = 128,
    dicom: bool = True,
    patient_name: str = "Phantom^Brain",
    patient_id: str | None = None,
    styles: bool = False,
) -> BrainMRPhantom:
    """Generate one brain MR study.

    Parameters
    ----------
    seed:
        Seed of everything random except the UIDs (always fresh).
    tumor:
        Whether to add a tumour (always at least 1 mL and fully inside the slab).
    contrasts:
        Contrasts written as DICOM series (``"T1"``, ``"T2"``); the first is
        :attr:`BrainMRPhantom.datasets`.
    slices:
        Number of 4 mm slices (the slab covers the posterior fossa to the vertex at 32).
    size:
        Matrix size; the field of view stays ~205 mm.
    dicom:
        Build the DICOM datasets (``False`` for training, which needs arrays only).
    patient_name, patient_id:
        Patient's Name and ID (``patient_id`` defaults to ``BRAINMR-<seed>``, so phantoms of
        different kinds or seeds are different patients).
    styles:
        Draw a :class:`BrainMRStyle` (:func:`random_style`): field of view, slice thickness,
        noise, bias field, blur, tissue contrast and gain, head size, position and rotation.
    """
    contrasts = tuple(contrasts)
    if not contrasts or any(c not in CONTRASTS for c in contrasts):
        raise ValueError(f"contrasts must be taken from {CONTRASTS}, got {contrasts}")
    if slices < 4 or size < 32:
        raise ValueError("need at least 4 slices and a 32-pixel matrix")
    rng = np.random.default_rng(seed)
    style = random_style(seed) if styles else None
    spacing = _FOV_MM / size * rng.uniform(0.95, 1.05)
    slice_mm = _SLICE_MM
    if style is not None:
        spacing, slice_mm = style.fov_mm / size, style.slice_mm
    z_span = slices * slice_mm
    z_first = -0.45 * z_span + rng.uniform(-4.0, 4.0)
    origin = (-(size - 1) / 2.0 * spacing, -(size - 1) / 2.0 * spacing, z_first)
    grid = _Grid(size, slices, spacing, origin, slice_mm)
    for _ in range(10):
        geometry = _Geometry.random(rng)
        if style is not None:
            geometry.styled(style)
        labels, tissue = _anatomy(grid, geometry, rng, tumor)
        if not tumor or _tumor_ok(labels, grid):
            break
    images = {}
    for c in CONTRASTS:  # both contrasts draw from rng, so each one's noise is fixed by the seed
        image = _render(tissue, c, rng, grid, style) if c in contrasts or dicom else None
        if image is not None:
            images[c] = image
    phantom = BrainMRPhantom({}, images, labels, spacing, slice_mm, seed, origin, contrasts, style)
    if dicom:
        phantom.series = _write_series(phantom, seed, patient_name, patient_id)
    return phantom


def write_phantom(phantom: BrainMRPhantom, out_dir: Path) -> list[Path]:
    """Write the series, the label volume and the truth.

    Files: ``<contrast>/<InstanceNumber:04d>.dcm`` per written contrast,
    ``labels.nii.gz`` (the label volume as NIfTI-1, RAS affine of the slab),
    ``truth.npz`` (``labels``) and ``truth.json`` (volumes in mL, UIDs, geometry).

    Returns
    -------
    list[Path]
        All files written, DICOM first.
    """

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for contrast, datasets in phantom.series.items():
        folder = out_dir / contrast
        folder.mkdir(exist_ok=True)
        for ds in datasets:
            path = folder / f"{int(ds.InstanceNumber):04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    nifti_path = out_dir / "labels.nii.gz"
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    write_nifti(nifti_path, phantom.labels.transpose(2, 1, 0), lps_to_ras @ phantom.affine())
    first = phantom.datasets[0] if phantom.series else None
    truth = {
        "seed": phantom.seed,
        "classes": list(TRUTH_CLASSES),
        "has_tumor": phantom.has_tumor,
        "volumes_ml": {k: round(v, 3) for k, v in phantom.volumes_ml().items()},
        "pixel_spacing_mm": phantom.pixel_spacing,
        "slice_spacing_mm": phantom.slice_spacing,
        "series": {
            c: {"series_instance_uid": str(ds[0].SeriesInstanceUID),
                "sop_instance_uids": [str(d.SOPInstanceUID) for d in ds]}
            for c, ds in phantom.series.items()
        },
        "study_instance_uid": str(first.StudyInstanceUID) if first else None,
        "frame_of_reference_uid": str(first.FrameOfReferenceUID) if first else None,
        "style": asdict(phantom.style) if phantom.style else None,
    }
    json_path = out_dir / "truth.json"
    json_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    npz_path = out_dir / "truth.npz"
    np.savez_compressed(npz_path, labels=phantom.labels)
    return paths + [nifti_path, json_path, npz_path]


# --------------------------------------------------------------------------- geometry


@dataclass
class _Grid:
    size: int
    slices: int
    spacing: float
    origin: tuple[float, float, float]
    slice_mm: float = _SLICE_MM

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
class _Geometry:
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
    def random(cls, rng: np.random.Generator) -> "_Geometry":
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


def _ellipsoid(u, v, w, centre, semi) -> np.ndarray:
    semi = [semi[0], semi[1], semi[2]]
    return (((u - centre[0]) / semi[0]) ** 2 + ((v - centre[1]) / semi[1]) ** 2
            + ((w - centre[2]) / semi[2]) ** 2) <= 1.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[int, ...]) -> np.ndarray:
    coarse = rng.standard_normal(cells)
    zoom = [s / c for s, c in zip(shape, cells)]
    out = ndimage.zoom(coarse, zoom, order=3, mode="nearest")
    return out[tuple(slice(0, s) for s in shape)].astype(np.float32)


def _tube(u, v, w, points: np.ndarray, radius: float) -> np.ndarray:
    """Voxels within ``radius`` of the polyline ``points`` (local coordinates)."""
    mask = np.zeros(u.shape, dtype=bool)
    for a, b in zip(points[:-1], points[1:]):
        d = b - a
        length2 = float(d @ d) or 1e-6
        t = np.clip(((u - a[0]) * d[0] + (v - a[1]) * d[1] + (w - a[2]) * d[2]) / length2, 0, 1)
        dist2 = (u - a[0] - t * d[0]) ** 2 + (v - a[1] - t * d[1]) ** 2 + (w - a[2] - t * d[2]) ** 2
        mask |= dist2 <= radius ** 2
    return mask


def _anatomy(grid: _Grid, g: _Geometry, rng: np.random.Generator, tumor: bool) -> tuple[np.ndarray, np.ndarray]:
    """Label volume and tissue-index volume (indices into :data:`_TISSUES`)."""
    x, y, z = grid.coordinates()
    u, v, w = g.local(x, y, z)
    shape = u.shape
    T = {name: i for i, name in enumerate(_TISSUES)}
    tissue = np.zeros(shape, dtype=np.uint8)
    labels = np.zeros(shape, dtype=np.uint8)

    inner = np.array([67.0, 85.0, 78.0])
    lump = _smooth_noise(rng, shape, (4, 6, 6)) * 1.5
    head = _ellipsoid(u, v, w, (0, 0, 0), [a + g.skull + 6.0 + lump * 0.3 for a in inner])
    fat = _ellipsoid(u, v, w, (0, 0, 0), inner + g.skull + 4.5)
    skull_outer = _ellipsoid(u, v, w, (0, 0, 0), inner + g.skull)
    diploe = _ellipsoid(u, v, w, (0, 0, 0), inner + g.skull * 0.7) & ~_ellipsoid(u, v, w, (0, 0, 0), inner + g.skull * 0.3)
    base = (w < -26.0) & (v < 2.0 - 0.3 * (w + 26.0))  # skull base, orbits and sinuses
    intracranial = _ellipsoid(u, v, w, (0, 0, 0), inner) & ~base
    tissue[head] = T["skin"]
    tissue[fat] = T["fat"]
    tissue[skull_outer] = T["bone"]
    tissue[skull_outer & diploe] = T["diploe"]
    tissue[skull_outer & base] = T["diploe"]
    tissue[intracranial] = T["csf"]

    brain = _ellipsoid(u, v, w, (0, 0, 0), [a - g.csf + lump for a in inner]) & intracranial
    stem_v = 14.0 - 0.25 * w
    stem = ((u / 12.5) ** 2 + ((v - stem_v) / 11.5) ** 2 <= 1.0) & (w < -4.0) & (w > -95.0)
    cbl_centre = np.array([0.0, 46.0, -30.0]) + g.jitter[0] * np.array([0.3, 0.6, 0.5])
    cerebellum = _ellipsoid(u, v, w, cbl_centre, (54.0, 33.0, 21.0)) & brain & ~stem
    tentorium = _ellipsoid(u, v, w, cbl_centre, (56.5, 35.5, 23.5))
    cerebrum = brain & ~tentorium & ~stem & (w > -30.0 + 0.12 * np.maximum(v, 0))
    cerebrum &= ~((v > 25.0) & (w < cbl_centre[2] + 20.0))

    # Cortex over white matter, sulci as CSF intrusions, deep grey nuclei.
    depth = ndimage.distance_transform_edt(cerebrum, sampling=grid.sampling)
    sulci = (_smooth_noise(rng, shape, (8, 20, 20)) > 0.9) & (depth < g.cortex + 1.0)
    cerebrum &= ~sulci
    labels[cerebrum] = _CER
    tissue[cerebrum] = T["wm"]
    tissue[cerebrum & (depth < g.cortex)] = T["gm"]
    for side in (-1, 1):
        nucleus = _ellipsoid(u, v, w, (side * 18.0, 2.0, 6.0) + g.jitter[1] * 0.3, (9.0, 15.0, 10.0))
        tissue[nucleus & cerebrum] = T["deep"]

    labels[cerebellum] = _CBL
    folia = np.sin((w - cbl_centre[2]) * 1.6 + 0.4 * u + lump * 2.0) > 0.2
    cbl_core = _ellipsoid(u, v, w, cbl_centre + (0, -6, 2), (24.0, 12.0, 9.0))
    tissue[cerebellum] = np.where(folia[cerebellum], T["cbl_gm"], T["cbl_wm"])
    tissue[cerebellum & cbl_core] = T["cbl_wm"]
    labels[stem & brain] = _BST
    tissue[stem & brain] = T["stem"]

    a = g.ventricle
    ventricles = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        body = _ellipsoid(u, v, w, (side * (3.5 + 5.0 * a), 0.0 + g.jitter[2, 1] * 0.4, 16.0),
                          (4.0 * a + 1.5, 24.0, 6.0 * a + 2.0))
        horn = _ellipsoid(u, v, w, (side * (4.0 + 6.0 * a), 20.0, 10.0), (3.0 * a + 1.5, 10.0, 7.0 * a + 2.0))
        ventricles |= body | horn
    ventricles |= _ellipsoid(u, v, w, (0.0, 4.0, 1.0), (1.2 + 0.8 * a, 11.0, 7.0))
    fourth_v = 14.0 - 0.25 * cbl_centre[2] + 12.5
    ventricles |= _ellipsoid(u, v, w, (0.0, fourth_v, cbl_centre[2] - 2.0), (5.0, 3.0, 6.0))
    ventricles &= brain
    labels[ventricles] = _VEN
    tissue[ventricles] = T["csf"]

    if tumor:
        _add_tumor(labels, tissue, u, v, w, grid, rng, T)

    vessels = _vessels(u, v, w, g, inner) & intracranial
    labels[vessels] = _VES
    tissue[vessels] = T["vessel"]
    return labels, tissue


def _vessels(u, v, w, g: _Geometry, inner: np.ndarray) -> np.ndarray:
    j = g.jitter
    r = g.vessel_radius
    basilar = np.array([[0.0, 14.0 + 0.25 * 70 - 14.0, -70.0], [0.0, 0.0, -35.0], [0.0, -1.0, -10.0]])
    mask = _tube(u, v, w, basilar, r)
    for side in (-1, 1):
        mca = np.array([
            [side * 2.0, -6.0, -9.0],
            [side * 25.0, -8.0 + j[3, 1] * 0.4, -8.0 + j[3, 2] * 0.3],
            [side * 45.0, -4.0 + j[4, 1] * 0.6, 0.0 + j[4, 2] * 0.6],
            [side * 55.0, 10.0 + j[5, 1], 20.0 + j[5, 2]],
        ])
        mask |= _tube(u, v, w, mca, r * 0.9)
    aca = np.array([[0.0, -6.0, -9.0], [1.0, -35.0, 0.0 + j[6, 2] * 0.5],
                    [0.0, -45.0 + j[6, 1], 30.0], [-1.0, -15.0, 55.0 + j[7, 2] * 0.5]])
    mask |= _tube(u, v, w, aca, r * 0.8)
    t = np.linspace(-1.2, 2.0, 24)
    sinus = np.stack([np.zeros_like(t), (inner[1] - 3.5) * np.sin(t), (inner[2] - 3.5) * np.cos(t)], axis=1)
    mask |= _tube(u, v, w, sinus, r * 1.35)
    return mask


def _add_tumor(labels, tissue, u, v, w, grid: _Grid, rng: np.random.Generator, T: dict) -> None:
    """Paint a tumour with oedema into the cerebrum, in place."""
    cerebrum = labels == _CER
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
    wobble = _smooth_noise(rng, labels.shape, (6, 10, 10)) * 0.12
    lesion = (dist + wobble <= 1.0) & (labels != _BG)
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
    labels[lesion] = _TUM


def _tumor_ok(labels: np.ndarray, grid: _Grid) -> bool:
    tumor = labels == _TUM
    voxel_ml = grid.spacing ** 2 * grid.slice_mm / 1000.0
    return tumor.sum() * voxel_ml >= 1.0 and not tumor[0].any() and not tumor[-1].any()


def _render(tissue: np.ndarray, contrast: str, rng: np.random.Generator, grid: _Grid,
            style: BrainMRStyle | None = None) -> np.ndarray:
    """Stored values of one contrast (the scanner's part in ``style``'s way when given)."""
    jitter, blur = (style.contrast_jitter, style.blur) if style else (0.08, 0.6)
    table = np.array([_INTENSITY[contrast][name] for name in _TISSUES], dtype=np.float32)
    table *= rng.uniform(1.0 - jitter, 1.0 + jitter, size=table.shape).astype(np.float32)
    table[0] = 0.0
    image = table[tissue]
    image *= 1.0 + 0.06 * _smooth_noise(rng, image.shape, (8, 24, 24))  # tissue texture
    image = ndimage.gaussian_filter(image, sigma=(0, blur, blur))
    # the plain draws are made with a style too, so that the random stream stays the plain one's
    amplitude = rng.uniform(0.15, 0.3)
    bias = 1.0 + (style.bias if style else amplitude) * np.tanh(_smooth_noise(rng, image.shape, (3, 3, 3)))
    image *= bias
    sigma = rng.uniform(0.02, 0.04) * 800.0
    if style is not None:
        sigma = style.noise * 800.0
    real = image + rng.normal(0.0, sigma, image.shape)
    imag = rng.normal(0.0, sigma, image.shape)
    magnitude = np.sqrt(real ** 2 + imag ** 2)
    if style is not None:
        magnitude *= style.gain
    return np.clip(np.rint(magnitude), 0, 4095).astype(np.uint16)


def _write_series(phantom: BrainMRPhantom, seed: int, name: str, patient_id: str | None) -> dict[str, list[Dataset]]:
    study = Study(
        instance_uid=generate_uid(),
        date="20260120",
        time=f"{8 + seed % 10:02d}{seed % 60:02d}00",
        accession_number=f"MR{seed % 10**12:012d}"[:16],
        study_id=str(seed % 10**8),
        description="MR BRAIN W WO CONTRAST",
    )
    patient = Patient(
        name=name,
        id=patient_id if patient_id is not None else default_patient_id(seed),
        birth_date=f"{1945 + seed % 50}0{1 + seed % 9}20",
        sex="FM"[seed % 2],
    )
    frame_uid = generate_uid()
    out: dict[str, list[Dataset]] = {}
    for contrast in phantom.contrasts:
        seq = dict(_SEQUENCE[contrast])
        description, window, number = seq.pop("description"), seq.pop("window"), seq.pop("number")
        extra = {k: val for k, val in seq.items() if val is not None}
        extra.update(MagneticFieldStrength="3", ImagingFrequency="127.7", ImagedNucleus="1H",
                     PatientOrientation=["L", "P"])
        spec = SeriesSpec(
            modality="MR",
            sop_class_uid=MRImageStorage,
            body_part="BRAIN",
            series_number=number,
            description=description,
            image_type=("ORIGINAL", "PRIMARY", "M", "NONE"),
            rescale=None,
            window=window,
            kvp=None,
            frame_of_reference_uid=frame_uid,
            extra=extra,
        )
        out[contrast] = build_series(
            phantom.images[contrast].astype(np.int32),
            (phantom.pixel_spacing, phantom.pixel_spacing),
            phantom.slice_spacing,
            z_origin=phantom.origin[2],
            xy_origin=phantom.origin[:2],
            patient=patient,
            study=study,
            series=spec,
        )
    return out


# --------------------------------------------------------------------------- CLI


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ainode phantom brain-mr``."""
    parser.add_argument("--out", type=Path, required=True, help="folder for the DICOM files and the truth")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same phantom)")
    parser.add_argument("--slices", type=int, default=32, help="axial slices")
    parser.add_argument("--tumor", action=argparse.BooleanOptionalAction, default=True, help="draw a tumour")
    parser.add_argument("--contrast", choices=("T1", "T2", "both"), default="T1",
                        help="series to write (both: two series, same study and frame of reference)")
    parser.add_argument("--patient-name", default="Phantom^Brain", help="Patient's Name written into the series")
    parser.add_argument("--patient-id", default=None, help="Patient ID (default BRAINMR-<seed>)")
    parser.add_argument("--styles", action=argparse.BooleanOptionalAction, default=False,
                        help="randomised scanner and patient style drawn from the seed")


def run_cli(args: argparse.Namespace) -> int:
    """``ainode phantom brain-mr``: write a synthetic brain MR study with its label volume."""
    contrasts = CONTRASTS if args.contrast == "both" else (args.contrast,)
    phantom = generate_brain_mr(
        seed=args.seed, tumor=args.tumor, contrasts=contrasts, slices=args.slices,
        patient_name=args.patient_name, patient_id=args.patient_id, styles=args.styles,
    )
    files = write_phantom(phantom, args.out)
    tumor_ml = phantom.volumes_ml()["tumor"]
    print(f"wrote {len(files)} files to {args.out} (tumour: {tumor_ml:.1f} mL)")
    return 0
