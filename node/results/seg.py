"""Binary Segmentation (SEG) result objects."""
from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.coding import Code

from node.pipeline import AlgorithmInfo
from node.results.equipment import (
    add_processing_algorithm,
    algorithm_identification,
    check_algorithm,
    check_source_images,
    copy_patient_and_study,
    _check_positive_int,
    _check_text,
    _uid_or_new,
)

__all__ = ["build_binary_seg"]

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
        (:func:`node.pipeline.sort_slices`).
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
        source_images=list(source_images),
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
        specific_character_set=first.get("SpecificCharacterSet"),
    )
    copy_patient_and_study(seg, first)
    add_processing_algorithm(seg, algorithm)
    return seg


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
