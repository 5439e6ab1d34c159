"""Reading a job's series: its files' images, repaired and placed in slice order."""
from __future__ import annotations

from typing import Sequence

import pydicom

from ..dicom.frames import expand_frames
from ..dicom.placement import place_slices
from ..packs.protocol import ModelPack
from ..results.demographics import repair_demographics
from .slice_cache import CachedFile

__all__ = ["load_series", "read_images"]


def load_series(paths: Sequence[str], pack: ModelPack, taken: dict[str, CachedFile] | None = None,
                ) -> tuple[list[pydicom.Dataset], list[tuple[str, str]]]:
    """The series in slice order, and the slices left out (only if the pack can do without them).

    Files in ``taken`` (read ahead) are not read again.
    """
    if not paths:
        raise ValueError("series has no instances")
    images = [image for path in paths
              for image in (taken[path].images if taken and path in taken else read_images(path))]
    placed = place_slices(images)
    if placed.excluded and not pack.tolerates_excluded_slices:
        first_uid, first_reason = placed.excluded[0]
        raise ValueError(f"{len(placed.excluded)} of {len(images)} slices cannot be placed (first: {first_uid}:"
                         f" {first_reason}); this model needs the whole volume")
    if not placed.slices:
        raise ValueError("no slice of the series can be placed")
    return placed.slices, placed.excluded


def read_images(path: str) -> list[pydicom.Dataset]:
    """The images of one source file (every frame), its patient and study attributes made valid."""
    ds = pydicom.dcmread(path)
    repair_demographics(ds, str(ds.get("SeriesInstanceUID", "")))
    return expand_frames(ds)
