"""Files every phantom writes: its DICOM instances and its truth (``truth.json``, ``truth.npz``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from pydicom import Dataset

__all__ = ["write_instances", "write_truth_json", "write_truth_npz"]


def write_instances(datasets: Iterable[Dataset], folder: Path) -> list[Path]:
    """Save each dataset as ``<InstanceNumber:04d>.dcm`` in ``folder`` (made if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for ds in datasets:
        path = folder / f"{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_truth_json(out_dir: Path, truth: dict[str, Any]) -> Path:
    """Write ``truth`` as ``out_dir/truth.json`` (indented, newline-terminated)."""
    json_path = Path(out_dir) / "truth.json"
    json_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return json_path


def write_truth_npz(out_dir: Path, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` as ``out_dir/truth.npz`` (compressed)."""
    npz_path = Path(out_dir) / "truth.npz"
    np.savez_compressed(npz_path, **arrays)
    return npz_path
