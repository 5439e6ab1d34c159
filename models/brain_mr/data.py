"""The user's own training data: DICOM MR series with NIfTI or DICOM SEG label volumes.

Layout: one folder per case (or a single case folder) holding the DICOM files of one MR
series (any depth) and its labels, either

* ``labels.nii`` / ``labels.nii.gz`` (any ``*.nii*`` file): a NIfTI-1 label volume
  whose values are those of :data:`CLASS_NAMES` (0 background .. 6 tumour) and
  :data:`UNLABELLED` (255) for voxels nobody annotated — mark the slices you did not
  annotate with 255 to train on every k-th slice. It is sampled at the DICOM voxel
  centres through its sform/qform (nearest neighbour), so it may have any orientation;
  DICOM voxels outside it are unlabelled; or
* a DICOM SEG (Modality ``SEG``) of that series: each segment is mapped to a class by
  its Segmented Property Type (the codes of :data:`CLASS_CODES`) or, failing that, by
  its Segment Label (a class name such as "cerebellum" or "tumor"). Every slice of a SEG
  counts as annotated (a slice without a frame is background).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom import Dataset

from models.brain_mr.classes import CLASS_CODES, CLASS_NAMES, UNLABELLED
from models.brain_mr.nifti import read_nifti
from models.brain_mr.preprocess import series_geometry, series_volume
from models.brain_mr.train import Case
from node.packs.protocol import sort_slices

__all__ = ["labels_from_nifti", "labels_from_seg", "load_case", "load_cases"]

_SEG = "1.2.840.10008.5.1.4.1.1.66.4"


def load_cases(root: Path) -> list[Case]:
    """Every case under ``root``: its sub-folders, or ``root`` itself when it holds DICOM files."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if any(p.is_file() for p in root.iterdir() if p.suffix.lower() in (".dcm", "")) or not folders:
        folders = [root]
    return [load_case(folder) for folder in folders]


def load_case(folder: Path) -> Case:
    """The MR series in ``folder`` and its label volume (NIfTI or DICOM SEG).

    Raises
    ------
    ValueError
        When the folder has no image series, several, or no labels.
    """
    folder = Path(folder)
    images: dict[str, list[Dataset]] = {}
    segs: list[Path] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if ".nii" in path.name:
            continue
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            continue
        if str(ds.get("SOPClassUID", "")) == _SEG:
            segs.append(path)
        elif "PixelData" in ds:
            images.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    if len(images) != 1:
        raise ValueError(f"{folder}: expected one image series, found {len(images)}")
    series = sort_slices(next(iter(images.values())))
    volume = series_volume(series)
    niftis = sorted(folder.rglob("*.nii*"))
    if niftis:
        labels = labels_from_nifti(niftis[0], series)
    elif segs:
        labels = labels_from_seg(segs[0], series)
    else:
        raise ValueError(f"{folder}: no labels (*.nii, *.nii.gz or a DICOM SEG)")
    row, col, slc = series_geometry(series)
    return Case(volume, labels, row * col * slc / 1000.0, folder.name)


def labels_from_nifti(path: Path, series: list[Dataset]) -> np.ndarray:
    """Sample a NIfTI label volume at the voxel centres of a sorted DICOM series."""
    data, affine = read_nifti(path)
    data = np.rint(np.asarray(data)).astype(np.int64)
    bad = np.setdiff1d(np.unique(data), [*range(len(CLASS_NAMES)), UNLABELLED])
    if bad.size:
        raise ValueError(f"{path}: label values {bad.tolist()} are neither classes 0..6 nor 255")
    rows, cols = int(series[0].Rows), int(series[0].Columns)
    jj, ii = np.meshgrid(np.arange(cols), np.arange(rows))
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    to_index = np.linalg.inv(affine) @ lps_to_ras
    out = np.full((len(series), rows, cols), UNLABELLED, dtype=np.uint8)
    for k, ds in enumerate(series):
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        origin = np.asarray(ds.ImagePositionPatient, dtype=float)
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        points = origin + jj[..., None] * iop[:3] * col_mm + ii[..., None] * iop[3:] * row_mm
        homogeneous = np.concatenate([points, np.ones(points.shape[:2] + (1,))], axis=-1)
        index = np.rint(homogeneous @ to_index.T)[..., :3].astype(np.int64)
        inside = np.all((index >= 0) & (index < np.array(data.shape)), axis=-1)
        i, j, kk = (index[..., n][inside] for n in range(3))
        out[k][inside] = data[i, j, kk]
    return out


def labels_from_seg(path: Path, series: list[Dataset]) -> np.ndarray:
    """Label volume from a DICOM SEG of a sorted series (segments mapped to classes)."""
    import highdicom as hd

    seg = hd.seg.segread(path)
    by_code = {str(prop.value): c for c, (_, prop, _) in CLASS_CODES.items()}
    mapping: dict[int, int] = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        code = str(item.SegmentedPropertyTypeCodeSequence[0].CodeValue)
        label = str(getattr(item, "SegmentLabel", "")).lower()
        cls = by_code.get(code)
        if cls is None:
            cls = next((c for c, name in enumerate(CLASS_NAMES) if c and (name in label or name.rstrip("s") in label)), None)
        if cls is not None:
            mapping[number] = cls
    if not mapping:
        raise ValueError(f"{path}: no segment maps to a class of {CLASS_NAMES[1:]}")
    numbers = sorted(mapping, key=lambda n: mapping[n])
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(ds.SOPInstanceUID) for ds in series],
        segment_numbers=numbers,
        combine_segments=False,
        assert_missing_frames_are_empty=True,
    )
    out = np.zeros(pixels.shape[:3], dtype=np.uint8)
    for n, number in enumerate(numbers):
        out[pixels[..., n] > 0] = mapping[number]
    return out
