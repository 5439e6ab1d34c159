"""The NIfTI-1 reader and writer, kept importable here; it lives in :mod:`models.phantoms.nifti`."""
from __future__ import annotations

from models.phantoms.nifti import read_nifti, write_nifti

__all__ = ["read_nifti", "write_nifti"]
