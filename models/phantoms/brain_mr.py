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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom import Dataset

from models.phantoms.brain_mr_anatomy import anatomy, tumor_ok
from models.phantoms.brain_mr_geometry import (
    FOV_MM,
    SLICE_MM,
    TRUTH_CLASSES,
    TUMOR,
    BrainMRStyle,
    Geometry,
    Grid,
    random_style,
)
from models.phantoms.brain_mr_scanner import CONTRASTS, render, series_datasets
from models.phantoms.ct_series import Patient
from models.phantoms.nifti import write_nifti
from models.phantoms.writing import write_instances, write_truth_json, write_truth_npz


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
        """Whether any voxel is tumour."""
        return bool((self.labels == TUMOR).any())

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
    """Patient ID of this kind's phantom of ``seed`` (``BRAINMR-<seed>``; kinds and seeds never share one)."""
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
    spacing = FOV_MM / size * rng.uniform(0.95, 1.05)
    slice_mm = SLICE_MM
    if style is not None:
        spacing, slice_mm = style.fov_mm / size, style.slice_mm
    z_span = slices * slice_mm
    z_first = -0.45 * z_span + rng.uniform(-4.0, 4.0)
    origin = (-(size - 1) / 2.0 * spacing, -(size - 1) / 2.0 * spacing, z_first)
    grid = Grid(size, slices, spacing, origin, slice_mm)
    for _ in range(10):
        geometry = Geometry.random(rng)
        if style is not None:
            geometry.styled(style)
        labels, tissue = anatomy(grid, geometry, rng, tumor)
        if not tumor or tumor_ok(labels, grid):
            break
    images = {}
    for c in CONTRASTS:  # both contrasts draw from rng, so each one's noise is fixed by the seed
        image = render(tissue, c, rng, grid, style) if c in contrasts or dicom else None
        if image is not None:
            images[c] = image
    phantom = BrainMRPhantom({}, images, labels, spacing, slice_mm, seed, origin, contrasts, style)
    if dicom:
        phantom.series = series_datasets(images, contrasts, grid, _patient(seed, patient_name, patient_id), seed)
    return phantom


def _patient(seed: int, name: str, patient_id: str | None) -> Patient:
    """The phantom's patient (ID ``BRAINMR-<seed>`` unless given)."""
    return Patient(
        name=name,
        id=patient_id if patient_id is not None else default_patient_id(seed),
        birth_date=f"{1945 + seed % 50}0{1 + seed % 9}20",
        sex="FM"[seed % 2],
    )


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
        paths += write_instances(datasets, out_dir / contrast)
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
    json_path = write_truth_json(out_dir, truth)
    npz_path = write_truth_npz(out_dir, labels=phantom.labels)
    return paths + [nifti_path, json_path, npz_path]


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
