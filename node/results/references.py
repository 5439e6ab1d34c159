"""References to result objects that are not built yet, and source headers cheap to send.

A report built aside (:mod:`node.results.aside`) cites the SEG or overlays the worker is
still building: it gets :func:`evidence_reference` stand-ins for them, and the source
images as :func:`headers_only` copies. :func:`check_cited_as` then checks that each
object built is the one its stand-in said.
"""
from __future__ import annotations

from typing import Sequence

from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

__all__ = ["check_cited_as", "evidence_reference", "headers_only"]

_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Float, Double Float and (integer) Pixel Data: left out of :func:`headers_only`."""


def headers_only(ds: Dataset) -> Dataset:
    """A copy of ``ds`` without its pixel data (the source's elements, not re-decoded), cheap to send."""
    header = Dataset({tag: ds.get_item(tag) for tag in ds.keys() if tag not in _PIXEL_TAGS})
    implicit_vr, little_endian = ds.original_encoding
    if implicit_vr is not None and little_endian is not None:
        header.set_original_encoding(implicit_vr, little_endian, ds.original_character_set)
    return header


def evidence_reference(*, sop_class_uid: str, sop_instance_uid: str, series_instance_uid: str,
                       study_instance_uid: str, modality: str, segment_numbers: Sequence[int] = ()) -> Dataset:
    """A stand-in for a result object not built yet: what a report needs to cite it as evidence.

    For a SEG, ``segment_numbers`` gives its Segment Sequence (numbers only), so that a
    report can reference a segment of it.
    """
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyInstanceUID = study_instance_uid
    ds.Modality = modality
    if segment_numbers:
        items = []
        for number in segment_numbers:
            item = Dataset()
            item.SegmentNumber = int(number)
            items.append(item)
        ds.SegmentSequence = DicomSequence(items)
    return ds


def check_cited_as(built: Dataset, cited: Dataset) -> None:
    """Fail if ``built`` is not the object its stand-in ``cited`` (:func:`evidence_reference`)
    says it is: class, instance, series and segment numbers."""
    segments = [int(item.SegmentNumber) for item in built.get("SegmentSequence", [])]
    expected = [int(item.SegmentNumber) for item in cited.get("SegmentSequence", [])]
    if (built.SOPClassUID, built.SOPInstanceUID, built.SeriesInstanceUID, segments) != (
        cited.SOPClassUID, cited.SOPInstanceUID, cited.SeriesInstanceUID, expected
    ):
        raise ValueError("the report would cite another object than the one built")
