"""Reading a job's series: its files' images, checked, repaired and placed in slice order.

Every file is checked before its pixels are decoded (:func:`node.dicom.attributes.check_file`)
and every image against the attributes the pack declares (``pack.required_attributes``):
an image the pack cannot use is left out when the pack tolerates missing slices, and fails
the job otherwise, with an :class:`~node.dicom.attributes.InputError` naming the attribute
(name and tag) and what is wrong with it.
"""
from __future__ import annotations

import os
from typing import Sequence

import pydicom

from ..dicom.attributes import InputError, check_file, check_image, check_series, input_error_from
from ..dicom.frames import expand_frames, frame_number
from ..dicom.placement import place_slices
from ..packs.protocol import ModelPack
from ..results.demographics import repair_demographics
from .slice_cache import CachedFile

__all__ = ["load_series", "read_images"]


def load_series(paths: Sequence[str], pack: ModelPack, taken: dict[str, CachedFile] | None = None,
                ) -> tuple[list[pydicom.Dataset], list[tuple[str, str]]]:
    """The series in slice order, and the slices left out (only if the pack can do without them).

    Files in ``taken`` (read ahead) are not read again.

    Raises
    ------
    InputError
        When an image lacks an attribute the pack needs, or has one it cannot use (and the
        pack needs every slice, or no slice is left).
    """
    if not paths:
        raise ValueError("series has no instances")
    attributes = tuple(getattr(pack, "required_attributes", ()) or ())
    images: list[pydicom.Dataset] = []
    rejected: list[tuple[str, InputError]] = []
    for path in paths:
        try:
            file_images = taken[path].images if taken and path in taken else read_images(path)
        except InputError as exc:
            rejected.append((os.path.basename(path), exc))
            continue
        for image in file_images:
            try:
                check_image(image, attributes)
            except InputError as exc:
                rejected.append((_image_name(image), exc))
                continue
            images.append(image)
    total = len(images) + len(rejected)
    if rejected and (not pack.tolerates_excluded_slices or not images):
        where, first = rejected[0]
        raise first.at(f"{where}; {len(rejected)} of {total} images unusable")
    check_series(images, attributes)
    placed = place_slices(images)
    excluded = [(where, str(exc)) for where, exc in rejected] + list(placed.excluded)
    if placed.excluded and not pack.tolerates_excluded_slices:
        first_uid, first_reason = placed.excluded[0]
        raise ValueError(f"{len(placed.excluded)} of {len(images)} slices cannot be placed (first: {first_uid}:"
                         f" {first_reason}); this model needs the whole volume")
    if not placed.slices:
        raise ValueError("no slice of the series can be placed")
    return placed.slices, excluded


def read_images(path: str) -> list[pydicom.Dataset]:
    """The images of one source file (every frame), its patient and study attributes made valid.

    Raises :class:`InputError` when the file's pixel attributes or pixel data cannot be
    used, or when an attribute cannot even be parsed.
    """
    try:
        ds = pydicom.dcmread(path)
        check_file(ds)
        repair_demographics(ds, str(ds.get("SeriesInstanceUID", "")))
        return expand_frames(ds)
    except InputError:
        raise
    except Exception as exc:  # pydicom raises on a broken element when it is first accessed
        error = input_error_from(exc)
        if error is None:
            raise
        raise error from None


def _image_name(image: pydicom.Dataset) -> str:
    try:
        uid = str(image.get("SOPInstanceUID", "?"))
    except Exception:
        uid = "?"
    number = frame_number(image)
    return uid if number is None else f"{uid} frame {number}"
