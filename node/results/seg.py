"""Binary Segmentation (SEG) result objects."""
from __future__ import annotations

import logging
from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..dicom.frames import frame_source
from ..logs import log

from .algorithm import AlgorithmInfo
from .equipment import (
    highdicom_character_set,
    add_processing_algorithm,
    algorithm_identification,
    check_algorithm,
    check_source_images,
    copy_patient_and_study,
    _check_positive_int,
    _check_text,
    _uid_or_new,
)

__all__ = ["build_binary_seg", "seg_sources"]

_logger = logging.getLogger("ainode.results")

_MAX_LO = 64


def build_binary_seg(
    source_images: Sequence[Dataset],
    mask: np.ndarray,
    *,
    segment_label: str,
    category: hd.sr.CodedConcept | Code,
    segment_type: hd.sr.CodedConcept | Code,
    algorithm: AlgorithmInfo,
    series_number: int,
    instance_number: int = 1,
    series_description: str,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    tracking_uid: str | None = None,
) -> Dataset:
    """Build a BINARY Segmentation with one segment over a series of images.

    Frame ``i`` of the segmentation pairs with ``source_images[i]``; empty frames
    are kept (one frame per source image), since viewers such as OHIF have drawn
    slices in the wrong place when empty frames were omitted.

    Parameters
    ----------
    source_images:
        Single-frame images of one series, sorted along the slice normal
        (:func:`node.packs.protocol.sort_slices`).
    mask:
        ``(n, rows, cols)`` bool array, ``n == len(source_images)`` and
        ``rows``/``cols`` those of the images.
    segment_label:
        Segment Label (0062,0005), e.g. ``"Hemorrhage"``.
    category:
        Segmented Property Category (CID 7150), e.g. SCT "Morphologically
        Abnormal Structure".
    segment_type:
        Segmented Property Type (CID 7151), e.g. SCT "Hemorrhage".
    algorithm:
        The model: Algorithm Identification of the segment (algorithm type
        AUTOMATIC), equipment attributes and the Processing Algorithm item.
    series_number:
        Series Number of the new series (positive).
    instance_number:
        Instance Number (positive).
    series_description:
        Series Description (at most 64 characters).
    series_instance_uid:
        UID of the new series; a fresh UID when omitted.
    sop_instance_uid:
        UID of the instance; a fresh UID when omitted.
    tracking_uid:
        Tracking UID of the segment (give the SR finding group's Tracking
        Unique Identifier to link the two); a fresh UID when omitted.

    Returns
    -------
    pydicom.Dataset
        A :class:`highdicom.seg.Segmentation` in the study of the source images,
        with their character set and patient/study attributes.

    Raises
    ------
    TypeError
        When an argument has the wrong type.
    ValueError
        When an argument has a wrong value; the message names it.
    """
    check_source_images(source_images, "source_images")
    check_algorithm(algorithm)
    _check_mask(mask, source_images)
    _check_text(segment_label, "segment_label", "SegmentLabel")
    _check_text(series_description, "series_description", "SeriesDescription")
    for name, value in (("category", category), ("segment_type", segment_type)):
        if not isinstance(value, (hd.sr.CodedConcept, Code)):
            raise TypeError(
                f'Argument "{name}" must be a CodedConcept or Code, not {type(value).__name__}.'
            )
    _check_positive_int(series_number, "series_number", "SeriesNumber")
    _check_positive_int(instance_number, "instance_number", "InstanceNumber")
    series_instance_uid = _uid_or_new(series_instance_uid, "series_instance_uid")
    sop_instance_uid = _uid_or_new(sop_instance_uid, "sop_instance_uid")
    tracking_uid = _uid_or_new(tracking_uid, "tracking_uid")

    first = source_images[0]
    sources, mask = seg_sources(source_images, mask)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label,
        segmented_property_category=category,
        segmented_property_type=segment_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(algorithm),
        tracking_uid=tracking_uid,
        tracking_id=segment_label,
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.ascontiguousarray(mask, dtype=bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        device_serial_number=algorithm.device_uid,
        omit_empty_frames=False,
        series_description=series_description,
        content_description=f"{segment_label} segmented by {algorithm.name}"[:_MAX_LO],
        specific_character_set=highdicom_character_set(first),
    )
    copy_patient_and_study(seg, first)
    add_processing_algorithm(seg, algorithm)
    return seg


def seg_sources(source_images: Sequence[Dataset], mask: np.ndarray) -> tuple[list[Dataset], np.ndarray]:
    """The images a SEG derives from, and the mask in their frame order.

    Frame views of one multi-frame object (:mod:`node.dicom.frames`) become that object, with
    one mask frame per source frame (frames not analysed stay empty), so that the SEG
    references the object and its frame numbers. Sources without a Frame of Reference
    UID get one derived from their series (logged), since a SEG of cross-sectional
    images needs one.
    """
    origins = [frame_source(ds) for ds in source_images]
    if any(origin is not None for origin in origins):
        parents = {id(origin.dataset): origin.dataset for origin in origins if origin is not None}
        if len(parents) != 1 or any(origin is None for origin in origins):
            raise ValueError('Argument "source_images" mixes frames of several objects; a SEG derives from one.')
        parent = next(iter(parents.values()))
        full = np.zeros((int(parent.NumberOfFrames), *mask.shape[1:]), dtype=bool)
        for origin, frame in zip(origins, mask):
            full[origin.frame_number - 1] = frame  # type: ignore[union-attr]
        sources, mask = [parent], full
    else:
        sources = list(source_images)
    if any("FrameOfReferenceUID" not in ds for ds in sources) and any("ImagePositionPatient" in ds
                                                                      or "SharedFunctionalGroupsSequence" in ds
                                                                      for ds in sources):
        derived = generate_uid(entropy_srcs=[str(sources[0].get("SeriesInstanceUID", "")), "frame-of-reference"])
        log(_logger, logging.WARNING, "source images lack FrameOfReferenceUID; the SEG carries one derived from the series",
            series_uid=str(sources[0].get("SeriesInstanceUID", "")))
        repaired = []
        for ds in sources:
            ds = _shallow_copy(ds)
            if "FrameOfReferenceUID" not in ds:
                ds.FrameOfReferenceUID = derived
            repaired.append(ds)
        sources = repaired
    return [_without_zero_spacing(ds) for ds in sources], mask


def _without_zero_spacing(ds: Dataset) -> Dataset:
    """``ds``, or a copy without its Pixel Spacing when that is not two positive numbers (e.g. CR ``0\\0``)."""
    spacing = ds.get("PixelSpacing")
    if spacing is None:
        return ds
    try:
        usable = len(spacing) == 2 and all(float(v) > 0 for v in spacing)
    except (TypeError, ValueError):
        usable = False
    if usable:
        return ds
    ds = _shallow_copy(ds)
    del ds.PixelSpacing
    return ds


def _shallow_copy(ds: Dataset) -> Dataset:
    """A dataset with the elements of ``ds`` (shared) whose own elements can be added and removed.

    ``copy.copy`` of a pydicom Dataset shares its element dictionary: deleting from the
    copy would delete from the source.
    """
    new = Dataset()
    new.update(ds)
    if hasattr(ds, "file_meta"):
        new.file_meta = ds.file_meta
    return new


def _check_mask(mask: np.ndarray, source_images: Sequence[Dataset]) -> None:
    if not isinstance(mask, np.ndarray):
        raise TypeError(f'Argument "mask" must be a numpy array, not {type(mask).__name__}.')
    if mask.dtype != bool:
        raise TypeError(f'Argument "mask" must have dtype bool, not {mask.dtype}.')
    if mask.ndim != 3:
        raise ValueError(
            f'Argument "mask" must have 3 dimensions (slices, rows, columns), not {mask.ndim}.'
        )
    if mask.shape[0] != len(source_images):
        raise ValueError(
            f'Argument "mask" has {mask.shape[0]} slices but "source_images" has '
            f"{len(source_images)} images."
        )
    for i, ds in enumerate(source_images):
        if (int(ds.Rows), int(ds.Columns)) != mask.shape[1:]:
            raise ValueError(
                f'Argument "mask" has {mask.shape[1]}x{mask.shape[2]} pixels per slice but '
                f"source image {i} has Rows x Columns {ds.Rows}x{ds.Columns}."
            )
