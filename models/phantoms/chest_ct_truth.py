"""What both chest CT phantom families share: the landmark names and rules, the phantom
record, the truth slices from the rendered areas, and the writing of series and truth.json.

The definitions of the three landmarks are in :mod:`models.phantoms.chest_ct`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.phantoms.ct_series import CTPhantom

__all__ = [
    "LANDMARKS",
    "MIN_LUMEN_AREA_MM2",
    "MIN_VISIBLE_AREA_MM2",
    "ChestCTPhantom",
    "landmark_truth",
    "write_phantom",
]

LANDMARKS: tuple[str, ...] = ("apex", "carina", "diaphragm")
"""The phantom's three landmarks, by name (the chest CT landmark pack maps them to its outputs)."""

MIN_VISIBLE_AREA_MM2 = 30.0
"""Area (mm²) from which lung (apex) or dome (diaphragm) counts as visible in a sub-slice."""

MIN_LUMEN_AREA_MM2 = 4.0
"""Smallest airway lumen (mm²) counted when deciding whether a slice shows the airway divided."""


@dataclass
class ChestCTPhantom(CTPhantom):
    """A synthetic chest CT series (``hu`` slice 0 the most inferior) and its landmark truth.

    Attributes
    ----------
    landmarks:
        Landmark name → truth slice index (into ``datasets``).
    z_positions:
        ``(n,)`` slice centre z (mm, Image Position Patient).
    lung_area_mm2, dome_area_mm2:
        ``(n,)`` the largest visible lung / dome area over each slice's sub-slices.
    airway_divided:
        ``(n,)`` whether the slice shows the airway as two or more lumens.
    carina_z:
        z (mm) of the spur between the main bronchi, where the lumen divides.
    seed:
        The seed.
    """

    landmarks: dict[str, int]
    z_positions: np.ndarray
    lung_area_mm2: np.ndarray
    dome_area_mm2: np.ndarray
    carina_z: float
    seed: int
    airway_divided: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    pixel_spacing: float = 1.0
    slice_thickness: float = 4.0
    info: dict[str, float] = field(default_factory=dict)



def landmark_truth(lung_area: np.ndarray, dome_area: np.ndarray, divided: np.ndarray) -> dict[str, int]:
    """Truth slice indices from the rendered areas and the airway division (see module docs)."""
    lung_rows = np.flatnonzero(lung_area >= MIN_VISIBLE_AREA_MM2)
    dome_rows = np.flatnonzero(dome_area >= MIN_VISIBLE_AREA_MM2)
    divided_rows = np.flatnonzero(divided)
    if lung_rows.size == 0 or dome_rows.size == 0 or divided_rows.size == 0:
        raise RuntimeError("phantom has no visible lung, dome or airway division")
    apex = int(lung_rows.max())
    diaphragm = int(dome_rows.max()) + 1
    carina_idx = int(divided_rows.max())
    if not (diaphragm < carina_idx < apex):
        raise RuntimeError(f"landmarks out of order: {diaphragm}, {carina_idx}, {apex}")
    return {"apex": apex, "carina": carina_idx, "diaphragm": diaphragm}



def write_phantom(phantom: ChestCTPhantom, out_dir: Path) -> list[Path]:
    """Write the series (``0001.dcm`` ...) and ``truth.json`` to ``out_dir``.

    ``truth.json`` gives, per landmark, the slice index (0 = most inferior), the
    Instance Number, the SOP Instance UID and the slice z.

    Returns
    -------
    list[Path]
        The DICOM files in slice order, then ``truth.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(phantom.datasets, start=1):
        path = out_dir / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    landmarks = {
        name: {
            "index": index,
            "instance_number": int(phantom.datasets[index].InstanceNumber),
            "sop_instance_uid": str(phantom.datasets[index].SOPInstanceUID),
            "z": float(phantom.z_positions[index]),
        }
        for name, index in phantom.landmarks.items()
    }
    truth = {
        "seed": phantom.seed,
        "slices": len(phantom.datasets),
        "slice_thickness": phantom.slice_thickness,
        "definitions": {
            "apex": f"most superior slice with >= {MIN_VISIBLE_AREA_MM2:g} mm2 of lung in a sub-slice",
            "carina": "most superior slice whose slab-averaged airway lumen shows two separate lumens",
            "diaphragm": f"slice above the highest slice with >= {MIN_VISIBLE_AREA_MM2:g} mm2 of dome in a lung field",
        },
        "landmarks": landmarks,
        "carina_z": phantom.carina_z,
        "series_instance_uid": str(phantom.datasets[0].SeriesInstanceUID),
        "study_instance_uid": str(phantom.datasets[0].StudyInstanceUID),
        "sop_instance_uids": [str(ds.SOPInstanceUID) for ds in phantom.datasets],
    }
    json_path = out_dir / "truth.json"
    json_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return paths + [json_path]

