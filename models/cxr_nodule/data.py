"""The user's own labelled radiographs as training/evaluation samples.

A CSV file (UTF-8, header row) lists one nodule per row::

    path,row,col,diameter_mm,mask,twin
    cases/0001.dcm,812,1460,14.5,,
    cases/0002.dcm,,,,cases/0002_mask.npy,
    cases/0003.dcm,,,,,

``path`` is a DICOM radiograph (relative to the CSV's folder). A nodule is given by its
centre (source pixel row, column) and diameter in mm (a disc becomes its mask), or by a
``mask`` file (``.npy`` bool array, or ``.png``, non-zero = nodule, the image's matrix;
its connected components are the nodules). A row with neither marks a normal radiograph.
Rows of the same ``path`` add up. ``twin`` optionally names the same radiograph without
its nodules; the NAC term is used only for samples that have one.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
from scipy import ndimage

from models.cxr_nodule.preprocess import MODEL_SIZE
from models.radiograph import pixel_spacing_mm, read_radiograph, resample

__all__ = ["load_labelled"]


def load_labelled(csv_path: Path, size: int = MODEL_SIZE) -> list:
    """Samples (:class:`models.cxr_nodule.train.Sample`) from a labelled CSV file.

    Raises
    ------
    ValueError
        When a row has neither a complete centre/diameter nor a mask but some of them,
        or a mask does not match its image.
    """
    from models.cxr_nodule.train import Sample, min_radius

    csv_path = Path(csv_path)
    root = csv_path.parent
    cases: dict[str, dict] = {}
    with csv_path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            path = (row.get("path") or "").strip()
            if not path:
                raise ValueError(f"{csv_path}:{number}: empty path")
            case = cases.setdefault(path, {"discs": [], "masks": [], "twin": None})
            centre = [(row.get(k) or "").strip() for k in ("row", "col", "diameter_mm")]
            if any(centre) and not all(centre):
                raise ValueError(f"{csv_path}:{number}: row, col and diameter_mm go together")
            if all(centre):
                case["discs"].append(tuple(float(v) for v in centre))
            if (row.get("mask") or "").strip():
                case["masks"].append(root / row["mask"].strip())
            if (row.get("twin") or "").strip():
                case["twin"] = root / row["twin"].strip()
    samples = []
    for path, case in cases.items():
        ds = pydicom.dcmread(root / path)
        image = read_radiograph(ds)
        spacing = pixel_spacing_mm(ds)
        mask = np.zeros(image.shape, dtype=bool)
        rr, cc = np.ogrid[: image.shape[0], : image.shape[1]]
        for r, c, d in case["discs"]:
            mask |= (rr - r) ** 2 + (cc - c) ** 2 <= (d / 2 / spacing) ** 2
        for mask_path in case["masks"]:
            loaded = _read_mask(mask_path)
            if loaded.shape != image.shape:
                raise ValueError(f"{mask_path}: mask {loaded.shape} does not match image {image.shape}")
            mask |= loaded
        model_image, geometry = resample(image, size)
        low, high = np.percentile(model_image, (1.0, 99.0))
        scale = max(float(high - low), 1e-6)
        twin_image = model_image
        if case["twin"] is not None:
            twin_image, _ = resample(read_radiograph(pydicom.dcmread(case["twin"])), size)
        model_mask, _ = resample(mask.astype(np.float32), size)
        truths, diameters = [], []
        labels, n = ndimage.label(mask)
        for index in range(1, n + 1):
            rows, cols = np.nonzero(labels == index)
            r, c = geometry.to_model(float(rows.mean()), float(cols.mean()))
            diameter_mm = 2 * np.sqrt(len(rows) / np.pi) * spacing
            truths.append((r, c, max(diameter_mm / 2 / spacing * geometry.scale, min_radius(size))))
            diameters.append(float(diameter_mm))
        samples.append(Sample(
            np.clip((model_image - low) / scale, 0, 1).astype(np.float16),
            np.clip((twin_image - low) / scale, 0, 1).astype(np.float16),
            model_mask >= 0.35,
            truths,
            diameters,
            has_twin=case["twin"] is not None,
        ))
    return samples


def _read_mask(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path).astype(bool)
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) > 0
