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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.phantoms.ct_series import CTPhantom, Patient, SeriesSpec, Study, build_series
from models.phantoms.head_ct_anatomy import FOV_MM, SLICE_MM, Head, HeadCTStyle, random_style
from models.phantoms.head_ct_render import render
from models.phantoms.head_ct_truth import (
    HEMATOMA,
    HEMATOMA_PATCH_FRACTION,
    PATCH_SIZE,
    TRUTH_CLASSES,
    hematoma_patch_count,
    patch_labels_from_pixels,
)
from models.phantoms.writing import write_instances, write_truth_json, write_truth_npz

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


@dataclass
class HeadCTPhantom(CTPhantom):
    """A synthetic head CT series (:class:`~models.phantoms.ct_series.CTPhantom`) and its ground truth.

    Attributes
    ----------
    pixel_labels:
        ``(n, size, size)`` uint8, classes in :data:`TRUTH_CLASSES` order.
    patch_labels:
        ``(n, size // 16, size // 16)`` uint8, the training target (see module docs).
    has_hematoma:
        Whether any patch is hematoma.
    style:
        The randomised style (``None`` for a plain phantom).
    """

    pixel_labels: np.ndarray
    patch_labels: np.ndarray
    has_hematoma: bool
    style: HeadCTStyle | None = None


def default_patient_id(seed: int) -> str:
    """Patient ID of this kind's phantom of ``seed`` (``HEADCT-<seed>``; kinds and seeds never share one)."""
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
    spacing = FOV_MM / size * rng.uniform(0.93, 1.07)
    if style is not None:
        spacing = style.fov_mm / size
    head = Head.random(rng, slices, spacing)
    if style is not None:
        head.styled(style)
    hu, labels = render(head, rng, size, spacing, slices, hematoma, style)
    for _ in range(8):
        # A requested hematoma must show in at least one patch; redraw the lesions if not.
        if not hematoma or hematoma_patch_count(labels) > 0:
            break
        hu, labels = render(head, rng, size, spacing, slices, hematoma, style)
    patches = patch_labels_from_pixels(labels)
    has_hem = bool((patches == HEMATOMA).any())
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
        SLICE_MM,
        z_origin=head.z_first,
        patient=patient,
        study=study,
        series=series,
    )
    return HeadCTPhantom(datasets, hu, labels, patches, has_hem, style)


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
    paths = write_instances(phantom.datasets, out_dir)
    counts = (phantom.patch_labels == HEMATOMA).sum(axis=(1, 2))
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
    json_path = write_truth_json(out_dir, truth)
    npz_path = write_truth_npz(out_dir, patch_labels=phantom.patch_labels)
    return paths + [json_path, npz_path]


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
    parser.add_argument("--family", choices=("a", "b"), default="a",
                        help="phantom family: a (this module) or b (written independently from the research's "
                             "description: models/phantoms/head_ct_b.py)")
    parser.add_argument("--type", dest="hematoma_type", default=None,
                        help="family b: the hematoma's type (epidural, subdural, intraparenchymal, subarachnoid, "
                             "intraventricular; default random)")


def run_cli(args: argparse.Namespace) -> int:
    """``ainode phantom head-ct``: write one synthetic head CT series with its truth."""
    if args.family == "b":
        return _run_family_b(args)
    phantom = generate_head_ct(
        seed=args.seed, slices=args.slices, hematoma=args.hematoma,
        patient_name=args.patient_name, patient_id=args.patient_id, styles=args.styles,
    )
    files = write_phantom(phantom, args.out)
    print(f"wrote {len(files)} files to {args.out} (hematoma: {phantom.has_hematoma})")
    return 0


def _run_family_b(args: argparse.Namespace) -> int:
    """``ainode phantom head-ct --family b``."""
    from models.phantoms.head_ct_b import generate_head_ct_b, write_phantom_b

    if args.styles:
        raise SystemExit("--styles is for family a; family b draws its own scanner and patient per seed")
    phantom = generate_head_ct_b(
        seed=args.seed, slices=args.slices, hematoma=args.hematoma, kind=args.hematoma_type if args.hematoma else None,
        patient_name=args.patient_name, patient_id=args.patient_id,
    )
    files = write_phantom_b(phantom, args.out)
    kinds = ", ".join(phantom.hematoma_types) or "none"
    print(f"wrote {len(files)} files to {args.out} (family b, hematoma: {phantom.has_hematoma}; types: {kinds})")
    return 0
