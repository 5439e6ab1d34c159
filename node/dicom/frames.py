"""Frames: one view per image plane, whether the source is single-frame or multi-frame.

Model packs read a series as a list of single-frame images (``Rows``, ``Columns``,
``ImagePositionPatient``, ``PixelSpacing``, Rescale Slope/Intercept and a
``pixel_array``). An enhanced multi-frame object (Enhanced CT/MR, Legacy Converted
Enhanced) keeps those per frame in its functional groups. :func:`expand_frames` turns
such an object into one *frame view* per frame: a dataset with the object's own
attributes, the frame's functional-group attributes lifted to the top level, and the
frame's decoded pixels (uncompressed). Single-frame images are returned as they are.

Result writers reference frames correctly with :func:`frame_source`: a frame view
knows the multi-frame object it came from and its (1-based) frame number, so a SEG
derives from the multi-frame object and an SR/SC reference carries Referenced Frame
Number.

highdicom 0.28's :func:`highdicom.imread` / ``Image.get_volume`` were evaluated for
this: they need regularly spaced frames with full plane geometry and return a
volume, not images, so radiographs, unevenly spaced or geometry-less series (and the
packs' per-slice references) would need a second path. Frame views keep one path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

__all__ = ["FrameSource", "expand_frames", "expand_series", "frame_number", "frame_numbers", "frame_source", "number_of_frames"]

_FRAME_SOURCE = "_ainode_frame_source"

_LIFTED: dict[str, tuple[str, ...]] = {
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth"),
}
"""Functional group → the attributes lifted from its first item into a frame view."""

_DROPPED = (
    "PixelData", "FloatPixelData", "DoubleFloatPixelData", "NumberOfFrames", "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence", "FrameIncrementPointer", "DimensionIndexSequence",
    "DimensionOrganizationSequence", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
)


@dataclass(frozen=True)
class FrameSource:
    """The multi-frame object a frame view came from, and the view's frame number (1-based)."""

    dataset: Dataset
    frame_number: int


def number_of_frames(ds: Dataset) -> int:
    """Number of Frames of ``ds`` (1 when absent or unreadable)."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def frame_source(ds: Dataset) -> FrameSource | None:
    """Where the frame view ``ds`` came from; ``None`` for an ordinary single-frame image."""
    return ds.__dict__.get(_FRAME_SOURCE)


def frame_number(ds: Dataset) -> int | None:
    """Referenced Frame Number of ``ds`` in its source object (``None`` for single-frame images)."""
    source = frame_source(ds)
    return source.frame_number if source is not None else None


def frame_numbers(ds: Dataset) -> list[int] | None:
    """``[n]`` for a frame view (the argument highdicom's image references take), else ``None``."""
    number = frame_number(ds)
    return None if number is None else [number]


def expand_frames(ds: Dataset) -> list[Dataset]:
    """One image per frame of ``ds``: ``[ds]`` for a single-frame image, frame views otherwise.

    The pixels of every frame are decoded once (any transfer syntax pydicom's plugins
    decode); each view holds its frame uncompressed, in Explicit VR Little Endian.
    """
    frames = number_of_frames(ds)
    if frames == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        return [ds]
    pixels = np.asarray(ds.pixel_array)
    if frames == 1:
        pixels = pixels[np.newaxis]
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    top = Dataset()
    for element in ds:
        if element.keyword not in _DROPPED:
            top.add(element)
    views = []
    for index in range(frames):
        view = Dataset()
        view.update(top)
        for groups in (shared, _first(per_frame[index:index + 1])):
            _lift(view, groups)
        frame = np.ascontiguousarray(pixels[index])
        if samples > 1:
            view.PhotometricInterpretation = "RGB"
            view.PlanarConfiguration = 0
        view.PixelData = frame.tobytes()
        view.file_meta = FileMetaDataset()
        view.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        view.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        view.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        view.__dict__[_FRAME_SOURCE] = FrameSource(ds, index + 1)
        views.append(view)
    return views


def expand_series(datasets: Sequence[Dataset]) -> list[Dataset]:
    """Every frame of every dataset of a series, as images (see :func:`expand_frames`)."""
    return [view for ds in datasets for view in expand_frames(ds)]


def _first(sequence: Sequence[Dataset] | None) -> Dataset | None:
    return sequence[0] if sequence else None


def _lift(view: Dataset, groups: Dataset | None) -> None:
    if groups is None:
        return
    for sequence_keyword, keywords in _LIFTED.items():
        item = _first(groups.get(sequence_keyword))
        if item is None:
            continue
        for keyword in keywords:
            if keyword in item:
                view[item[keyword].tag] = item[keyword]
