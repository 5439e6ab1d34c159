"""Comprehensive 3D SR measurement reports (TID 1500) for model findings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from ..dicom.frames import frame_numbers
from .checks import (
    check_concept, check_every_finding_drawn, check_region, check_evidence, check_groups, check_source_images, uid_or_new,
)
from .placement import Placement
from .report_document import GroupContent, assemble_report, group_arguments, private_schemes, unique_instances

__all__ = ["FindingGroup", "build_measurement_report"]

_Concept = hd.sr.CodedConcept | Code

_IMAGING_PROCEDURE = codes.SCT.ImagingProcedure

_GRAPHIC_TYPES = ("POLYLINE", "POINT", "ELLIPSE", "CIRCLE")


@dataclass(frozen=True)
class FindingGroup(GroupContent):
    """One measurement group of a report: a planar ROI (TID 1410) when it has a region, a
    volumetric ROI (TID 1411) when it has a segment, else TID 1501.

    OHIF (3.13) cannot show a finding none of whose groups (those of one Tracking UID)
    has an image region: give every finding a group with a region (the segment's
    outline on a representative slice, with the Tracking UID of the segment's group).

    Besides the tracking, finding, site, evaluations and measurements of
    :class:`~node.results.report_document.GroupContent`:

    Parameters
    ----------
    referenced_images:
        Source images of the group (e.g. the slices that show the finding); they
        are referenced as the group's source images, or, when a segmentation is
        given, as the source images of the segment.
    segmentation:
        The SEG whose segment ``segment_number`` delineates the finding; the
        group is then a volumetric ROI group (TID 1411) referencing that segment.
    segment_number:
        Segment Number within ``segmentation``. The segment is referenced as a
        whole: the Image Reference macro forbids Referenced Frame Number beside
        Referenced Segment Number.
    image, graphic_type, graphic_data:
        The group's image region (TID 1410): a 2D SCOORD of type ``POLYLINE``,
        ``POINT``, ``ELLIPSE`` or ``CIRCLE`` with ``(n, 2)`` (column, row) points on
        ``image``; not with ``segmentation``.

    Raises
    ------
    TypeError, ValueError
        When a field is wrong; the message names it.
    """

    referenced_images: Sequence[Dataset] = ()
    segmentation: Dataset | None = None
    segment_number: int = 1
    image: Dataset | None = None
    graphic_type: str | None = None
    graphic_data: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.graphic_type is not None and self.segmentation is not None:
            raise ValueError('A group has a region (TID 1410) or a segment (TID 1411), not both.')
        check_region(self.graphic_type, self.image, self.graphic_data, _GRAPHIC_TYPES)
        if self.finding_site is not None:
            check_concept(self.finding_site, "finding_site")
        for i, ds in enumerate(self.referenced_images):
            if not isinstance(ds, Dataset):
                raise TypeError(f"Item {i} of referenced_images must be a pydicom Dataset.")
        if self.segmentation is not None:
            if not isinstance(self.segmentation, Dataset):
                raise TypeError('Field "segmentation" must be a pydicom Dataset.')
            if str(self.segmentation.get("Modality", "")) != "SEG":
                raise ValueError('Field "segmentation" must be a SEG dataset (Modality "SEG").')
            numbers = [
                int(item.SegmentNumber) for item in self.segmentation.get("SegmentSequence", [])
            ]
            if self.segment_number not in numbers:
                raise ValueError(
                    f"segment_number {self.segment_number} is not a SegmentNumber of the "
                    f"segmentation (has {numbers})."
                )


def build_measurement_report(
    source_images: Sequence[Dataset],
    groups: Sequence[FindingGroup],
    placement: Placement,
    *,
    evidence: Sequence[Dataset] = (),
    procedure_reported: _Concept = _IMAGING_PROCEDURE,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """Build a Comprehensive 3D SR Measurement Report (TID 1500).

    The report's observer is the algorithm as a DEVICE (TID 1004: Device
    Observer UID, Name, Manufacturer, Model Name); its Image Library lists the
    images the groups reference (or, when they reference none, the first source
    image: the library needs one entry, and every entry costs time in highdicom);
    each group carries its tracking identifier and UID, the
    finding, the algorithm identification (TID 4019), qualitative evaluations and
    numeric measurements. Every instance the content references is recorded as
    evidence, plus the extra ``evidence`` datasets (such as the SEG).

    Parameters
    ----------
    source_images:
        Images of the analysed series (all recorded as evidence).
    groups:
        The report's finding groups (at least one).
    placement:
        Series, Instance Number and the model (device observer, equipment
        attributes and the Processing Algorithm item).
    evidence:
        Further datasets referenced by, or pertinent to, the report (SEG, SC ...).
    procedure_reported:
        Procedure Reported, e.g. LOINC "CT Head"; SCT "Imaging procedure" when
        omitted.
    sop_instance_uid:
        UID of the instance; a fresh UID when omitted.

    Returns
    -------
    pydicom.Dataset
        A :class:`highdicom.sr.Comprehensive3DSR` in the study of the source
        images, with their character set and patient/study attributes.

    Raises
    ------
    TypeError, ValueError
        When an argument is wrong; the message names it.
    """
    check_source_images(source_images, "source_images")
    check_groups(groups, FindingGroup)
    check_every_finding_drawn(groups)
    check_evidence(evidence, source_images)
    check_concept(procedure_reported, "procedure_reported")
    sop_instance_uid = uid_or_new(sop_instance_uid, "sop_instance_uid")

    all_evidence = unique_instances(
        [
            *source_images,
            *(ds for g in groups for ds in g.referenced_images),
            *(g.image for g in groups if g.image is not None),
            *(g.segmentation for g in groups if g.segmentation is not None),
            *evidence,
        ]
    )
    return assemble_report(
        source_images,
        lambda algorithm_id: [_group_template(g, algorithm_id) for g in groups],
        placement,
        library=_library_images(source_images, groups),
        evidence=all_evidence,
        private_schemes=private_schemes(groups, procedure_reported),
        procedure_reported=procedure_reported,
        sop_instance_uid=sop_instance_uid,
    )


def _group_template(
    group: FindingGroup, algorithm_id: hd.sr.AlgorithmIdentification
) -> (
    hd.sr.MeasurementsAndQualitativeEvaluations
    | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
):
    """Turn one :class:`FindingGroup` into its highdicom template."""
    common = group_arguments(group, algorithm_id)
    if group.graphic_type is not None:
        region = hd.sr.ImageRegion(
            graphic_type=group.graphic_type,
            graphic_data=np.asarray(group.graphic_data, dtype=float),
            source_image=hd.sr.SourceImageForRegion.from_source_image(
                group.image, referenced_frame_numbers=frame_numbers(group.image)
            ),
        )
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(**common, referenced_region=region)
    if group.segmentation is None:
        source_images = [
            hd.sr.SourceImageForMeasurementGroup(
                referenced_sop_class_uid=ds.SOPClassUID,
                referenced_sop_instance_uid=ds.SOPInstanceUID,
                referenced_frame_numbers=frame_numbers(ds),
            )
            for ds in group.referenced_images
        ] or None
        return hd.sr.MeasurementsAndQualitativeEvaluations(**common, source_images=source_images)
    seg = group.segmentation
    if group.referenced_images:
        sources: dict[str, object] = {"source_images": [
            hd.sr.SourceImageForSegmentation(
                referenced_sop_class_uid=ds.SOPClassUID,
                referenced_sop_instance_uid=ds.SOPInstanceUID,
                referenced_frame_numbers=frame_numbers(ds),
            )
            for ds in group.referenced_images
        ]}
    else:
        sources = {"source_series": hd.sr.SourceSeriesForSegmentation(_source_series_uid(seg))}
    segment = hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=group.segment_number,
        **sources,
    )
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(**common, referenced_segment=segment)


def _source_series_uid(seg: Dataset) -> str:
    try:
        return str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    except (AttributeError, IndexError) as error:
        raise ValueError(
            "The segmentation lacks ReferencedSeriesSequence[0].SeriesInstanceUID; "
            "give the group referenced_images instead."
        ) from error


def _library_images(source_images: Sequence[Dataset], groups: Sequence[FindingGroup]) -> list[Dataset]:
    referenced = unique_instances(
        [ds for g in groups for ds in (*g.referenced_images, *((g.image,) if g.image is not None else ()))]
    )
    return referenced or [source_images[0]]
