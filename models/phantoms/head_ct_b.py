"""Synthetic non-contrast head CT, family B: a second, independently written generator.

Written from the head CT research report's description (16x16 patches of 512x512
slices, the brain window 0..80 HU, hematoma sites and markers) and general CT physics,
not from family A's code (:mod:`models.phantoms.head_ct`), so that a model trained on
one family can be tested on the other. Family B has its own head (a radial distance to
the inner table with a real cranial floor, :mod:`models.phantoms.head_ct_b_anatomy`), its
own hematomas of five types at three ages (:mod:`models.phantoms.head_ct_b_lesions`) and
its own scanner (gantry tilt, kernel MTF, FBP noise spectrum, beam hardening, streaks,
calibration: :mod:`models.phantoms.head_ct_b_scanner`).

Partial volume: every 5 mm slice averages three thin sub-slices (so the skull base, the
vertex and the lesions' edges blur across the slice); a pixel is hematoma when at least
two of the three are. The anatomy is drawn at half the matrix and interpolated to it
before the scanner's kernel and noise are applied at the full matrix. Truth and patch labels use the shared vocabulary and patch rule of
:mod:`models.phantoms.head_ct_truth`, so both families train the same classifier.

Seeds are drawn through ``default_rng([seed, 0xB])``: a family-B phantom shares nothing
with family A's phantom of the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.phantoms.ct_series import Patient, SeriesSpec, Study, build_series
from models.phantoms.head_ct_b_anatomy import HeadB, Plane, tissue
from models.phantoms.head_ct_b_lesions import TYPES, Bleed, draw_bleeds, paint_bleed
from models.phantoms.head_ct_b_scanner import ScannerB, acquire
from models.phantoms.head_ct_truth import BONE, HEMATOMA, PATCH_SIZE, TRUTH_CLASSES, patch_labels_from_pixels
from models.phantoms.writing import write_instances, write_truth_json, write_truth_npz

__all__ = ["SLICE_MM", "TYPES", "HeadCTBPhantom", "default_patient_id", "generate_head_ct_b", "write_phantom_b"]

SLICE_MM = 5.0
SUB_SLICES = (-5.0 / 3.0, 0.0, 5.0 / 3.0)
"""Offsets (mm) of the thin sub-slices averaged into one 5 mm slice."""
RENDER_STEP = 2
"""The anatomy is drawn on every second pixel and interpolated (the kernel and noise are applied at
full resolution); it keeps a phantom to a few seconds on a small CPU."""


@dataclass
class HeadCTBPhantom:
    """A family-B head CT series and its truth (the same fields as family A's, plus the lesions)."""

    datasets: list[Dataset]
    hu: np.ndarray
    pixel_labels: np.ndarray
    patch_labels: np.ndarray
    has_hematoma: bool
    bleeds: list[Bleed]
    scanner: ScannerB

    @property
    def hematoma_types(self) -> list[str]:
        """Types of the drawn hematomas, the first one first."""
        return [b.kind for b in self.bleeds]


def default_patient_id(seed: int) -> str:
    """Patient ID of family B's phantom of ``seed``."""
    return f"HEADCTB-{seed}"


def generate_head_ct_b(
    seed: int = 0,
    slices: int = 24,
    hematoma: bool = True,
    *,
    patient_name: str = "Phantom^HeadB",
    patient_id: str | None = None,
    size: int = 512,
    kind: str | None = None,
) -> HeadCTBPhantom:
    """Generate one family-B head CT series (slice 0 most inferior).

    ``kind`` picks the first hematoma's type (one of :data:`TYPES`; random when ``None``).
    A requested hematoma always shows in at least one hematoma patch.
    """
    if size % PATCH_SIZE or size < 64:
        raise ValueError(f"size must be a multiple of {PATCH_SIZE} and >= 64, got {size}")
    if slices < 1:
        raise ValueError(f"slices must be >= 1, got {slices}")
    if kind is not None and kind not in TYPES:
        raise ValueError(f"kind must be one of {TYPES}, got {kind!r}")
    rng = np.random.default_rng([int(seed), 0xB])
    head = HeadB.random(rng)
    scanner = ScannerB.random(rng)
    spacing = scanner.fov_mm / size
    vertex = head.semi[2] + head.skull + head.scalp
    z_top = vertex - float(rng.uniform(5.0, 12.0))
    zs = z_top - SLICE_MM * np.arange(slices)[::-1]
    bleeds: list[Bleed] = []
    for _ in range(8):
        if hematoma:
            bleeds = draw_bleeds(rng, float(zs[0]), float(zs[-1]), kind)
        true_hu, labels, base = _render(head, bleeds, zs, size, spacing, scanner.tilt_deg, rng)
        patches = patch_labels_from_pixels(labels)
        if not hematoma or (patches == HEMATOMA).any():
            break
    hu = acquire(true_hu, base, scanner, rng)
    datasets = _datasets(hu, seed, spacing, zs, scanner, patient_name, patient_id)
    return HeadCTBPhantom(datasets, hu, labels, patches, bool((patches == HEMATOMA).any()), bleeds, scanner)


def _render(
    head: HeadB, bleeds: list[Bleed], zs: np.ndarray, size: int, spacing: float, tilt_deg: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True HU (float32), pixel labels and each slice's skull-base weight, four sub-slices a slice."""
    n, coarse = len(zs), size // RENDER_STEP
    hu = np.zeros((n, size, size), dtype=np.float32)
    labels = np.zeros((n, size, size), dtype=np.uint8)
    base = np.zeros(n, dtype=np.float32)
    cos_t, sin_t = float(np.cos(np.radians(tilt_deg))), float(np.sin(np.radians(tilt_deg)))
    axis = ((np.arange(coarse) - (coarse - 1) / 2.0) * spacing * RENDER_STEP).astype(np.float32)
    v, u = np.meshgrid(axis, axis, indexing="ij")
    cos_y, sin_y = float(np.cos(head.yaw)), float(np.sin(head.yaw))
    dx, dy = u - head.centre[0], v * cos_t - head.centre[1]
    hx, hy = cos_y * dx + sin_y * dy, -sin_y * dx + cos_y * dy
    shared: dict = {}
    for i, z in enumerate(zs):
        votes = np.zeros((len(TRUTH_CLASSES), coarse, coarse), dtype=np.uint8)
        slab = np.zeros((coarse, coarse), dtype=np.float32)
        for dz in SUB_SLICES:
            hz = (float(z) + dz - head.centre[2]) - v * sin_t
            plane = tissue(head, Plane(hx, hy, hz, shared=shared), rng)
            for bleed in bleeds:
                paint_bleed(bleed, head, plane)
            slab += plane.hu / len(SUB_SLICES)
            for c in range(len(TRUTH_CLASSES)):
                votes[c] += plane.label == c
        hem = votes[HEMATOMA] * 2 >= len(SUB_SLICES)
        votes[HEMATOMA] = 0
        coarse_labels = np.where(hem, HEMATOMA, votes.argmax(axis=0)).astype(np.uint8)
        hu[i] = ndimage.zoom(slab, RENDER_STEP, order=1, grid_mode=True, mode="nearest")
        labels[i] = coarse_labels.repeat(RENDER_STEP, 0).repeat(RENDER_STEP, 1)
        base[i] = float(np.clip((-float(z) - 15.0) / 20.0, 0.0, 1.0)) if (coarse_labels == BONE).mean() > 0.05 else 0.0
    return hu, labels, base


def _datasets(
    hu: np.ndarray, seed: int, spacing: float, zs: np.ndarray, scanner: ScannerB, patient_name: str,
    patient_id: str | None,
) -> list[Dataset]:
    """DICOM CT Image datasets, tilted planes: Image Orientation (Patient) carries the gantry tilt."""
    n, size, _ = hu.shape
    series = SeriesSpec(
        modality="CT", body_part="HEAD", series_number=3, description="Head 5mm phantom B", window=(35.0, 80.0),
        kvp=float(np.random.default_rng([seed, 0xB, 1]).choice([100.0, 120.0])),
        rescale=(-1024.0, 1.0) if scanner.outside > -1100 else (-2048.0, 1.0),
        extra={"ConvolutionKernel": {"soft": "J30", "standard": "J40", "sharp": "J45e"}[scanner.kernel],
               "GantryDetectorTilt": round(scanner.tilt_deg, 2), "Manufacturer": "AINODE PHANTOM B"},
    )
    study = Study(date="20260212", time=f"{7 + seed % 12:02d}{seed % 60:02d}30",
                  accession_number=f"PB{seed % 10**12:012d}"[:16], study_id=str(seed % 10**8),
                  description="CT HEAD WITHOUT CONTRAST")
    patient = Patient(name=patient_name, id=patient_id if patient_id is not None else default_patient_id(seed),
                      birth_date=f"{1935 + seed % 60}{1 + seed % 12:02d}0{1 + seed % 9}", sex="FM"[seed % 2])
    datasets = build_series(hu, (spacing, spacing), SLICE_MM, z_origin=float(zs[0]), patient=patient, study=study,
                            series=series)
    cos_t, sin_t = np.cos(np.radians(scanner.tilt_deg)), np.sin(np.radians(scanner.tilt_deg))
    first = -(size - 1) / 2.0 * spacing
    for ds, z in zip(datasets, zs):
        ds.ImageOrientationPatient = [1, 0, 0, 0, _ds(cos_t), _ds(-sin_t)]
        ds.ImagePositionPatient = [_ds(first), _ds(first * cos_t), _ds(z - first * sin_t)]
    return datasets


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{float(value):.6g}"
    return text if len(text) <= 16 else f"{float(value):.8e}"[:16]


def write_phantom_b(phantom: HeadCTBPhantom, out_dir: Path) -> list[Path]:
    """Write the slices (``<InstanceNumber:04d>.dcm``), ``truth.json`` (with each hematoma's type,
    age, HU and site, and the scanner) and ``truth.npz`` (``patch_labels``)."""
    paths = write_instances(phantom.datasets, out_dir)
    counts = (phantom.patch_labels == HEMATOMA).sum(axis=(1, 2))
    truth = {
        "family": "b",
        "has_hematoma": phantom.has_hematoma,
        "hematomas": [b.describe() for b in phantom.bleeds],
        "classes": list(TRUTH_CLASSES),
        "patch_size": PATCH_SIZE,
        "hematoma_patches_per_slice": [int(c) for c in counts],
        "hematoma_patches": int(counts.sum()),
        "sop_instance_uids": [str(ds.SOPInstanceUID) for ds in phantom.datasets],
        "series_instance_uid": str(phantom.datasets[0].SeriesInstanceUID),
        "scanner": phantom.scanner.as_dict(),
    }
    return paths + [write_truth_json(out_dir, truth), write_truth_npz(out_dir, patch_labels=phantom.patch_labels)]
