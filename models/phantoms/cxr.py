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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset

from models.phantoms.cxr_anatomy import FIELD_MM, MU_LUNG, MU_SOFT, Anatomy, CXRStyle, random_style
from models.phantoms.cxr_detector import detector
from models.phantoms.cxr_dicom import DX_FOR_PRESENTATION, dx_dataset
from models.phantoms.cxr_lesions import Nodule, consolidation, place_nodule
from models.phantoms.cxr_projection import project_anatomy
from models.phantoms.writing import write_truth_json, write_truth_npz

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
    """Patient ID of this kind's phantom of ``seed`` (``CXR-<seed>``; kinds and seeds never share one)."""
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

    anatomy = Anatomy.random(rng)
    if style is not None:
        anatomy = anatomy.styled(style)
    atten, lung_chord = project_anatomy(anatomy, x, z, spacing, rng, shift)
    lung_mask = lung_chord > 20.0

    pneu_mask = np.zeros((size, size), dtype=bool)
    if pneumonia:
        fill = consolidation(rng, anatomy, x, z, lung_chord, spacing)
        atten = atten + (MU_SOFT - MU_LUNG) * lung_chord * fill
        pneu_mask = (fill > 0.12) & lung_mask

    nodule_atten = np.zeros((size, size), dtype=np.float64)
    truths: list[Nodule] = []
    nodule_mask = np.zeros((size, size), dtype=bool)
    for _ in range(nodules):
        placed = place_nodule(rng, lung_chord, nodule_mask, x, z, spacing, min_diameter_mm, max_diameter_mm)
        if placed is None:
            continue
        added, mask, truth = placed
        nodule_atten += added
        nodule_mask |= mask
        truths.append(truth)

    noise = rng.standard_normal((size, size))
    clean = detector(atten, noise, spacing, style)
    image = detector(atten + nodule_atten, noise, spacing, style)
    dataset = dx_dataset(image, spacing, photometric, seed, patient_name,
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
    json_path = write_truth_json(out_dir, truth)
    npz = write_truth_npz(
        out_dir, nodule_mask=phantom.nodule_mask, pneumonia_mask=phantom.pneumonia_mask,
        lung_mask=phantom.lung_mask, clean=phantom.clean,
    )
    return [dcm, json_path, npz]


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
