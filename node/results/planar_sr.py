"""Comprehensive 3D SR measurement reports (TID 1500) whose findings are 2D image regions.

:mod:`node.results.sr` writes findings as whole-image groups (TID 1501) or segment
references (TID 1411). Findings on a projection radiograph are better drawn on the
image: this module writes each :class:`PlanarFindingGroup` that has a region as a
planar ROI group (TID 1410) whose Image Region is a 2D SCOORD (ELLIPSE, CIRCLE or
POLYLINE, in the image's pixel coordinates: column, row, with (0, 0) the top-left corner
of the top-left pixel) on one source image; a group without a region becomes a TID 1501
group. Everything else (observer device, Image Library, evidence, Processing Algorithm
item, private coding schemes) is as in :func:`node.results.sr.build_measurement_report`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from ..dicom.frames import frame_numbers
from .checks import check_concept, check_region, check_every_finding_drawn, check_evidence, check_groups, check_source_images, uid_or_new
from .placement import Placement
from .report_document import GroupContent, assemble_report, group_arguments, private_schemes, unique_instances

__all__ = ["GRAPHIC_TYPES", "PlanarFindingGroup", "build_planar_report", "ellipse_points"]

_Concept = hd.sr.CodedConcept | Code

GRAPHIC_TYPES: tuple[str, ...] = ("ELLIPSE", "CIRCLE", "POLYLINE", "POINT")
"""Graphic types a planar ROI (TID 1410) region may have here."""


@dataclass(frozen=True)
class PlanarFindingGroup(GroupContent):
    """One finding of a report, optionally outlined on one image: the fields of
    :class:`~node.results.report_document.GroupContent`, and

    Parameters
    ----------
    image:
        The image the region is drawn on (required with ``graphic_type``).
    graphic_type:
        ``ELLIPSE``, ``CIRCLE`` or ``POLYLINE``; ``None`` for a group without a region.
    graphic_data:
        ``(n, 2)`` (column, row) points in pixel coordinates of ``image``.
    """

    image: Dataset | None = None
    graphic_type: str | None = None
    graphic_data: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_region(self.graphic_type, self.image, self.graphic_data, GRAPHIC_TYPES)


def ellipse_points(row: float, col: float, radius_rows: float, radius_cols: float) -> np.ndarray:
    """ELLIPSE graphic data (major axis end points, then minor) around a pixel centre.

    ``row``/``col`` are pixel indices (centre of pixel (0, 0) = 0, 0); the returned
    (column, row) points are in DICOM image coordinates (that centre = 0.5, 0.5).
    """
    x, y = col + 0.5, row + 0.5
    if radius_cols >= radius_rows:
        points = [(x - radius_cols, y), (x + radius_cols, y), (x, y - radius_rows), (x, y + radius_rows)]
    else:
        points = [(x, y - radius_rows), (x, y + radius_rows), (x - radius_cols, y), (x + radius_cols, y)]
    return np.asarray(points, dtype=float)


def build_planar_report(
    source_images: Sequence[Dataset],
    groups: Sequence[PlanarFindingGroup],
    placement: Placement,
    *,
    evidence: Sequence[Dataset] = (),
    procedure_reported: _Concept = codes.SCT.ImagingProcedure,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """Build a Comprehensive 3D SR (TID 1500) with planar ROI groups.

    Parameters
    ----------
    source_images:
        The analysed images (Image Library; every region's image must be one of them).
    groups:
        At least one group.
    placement:
        Series, Instance Number and the model (device observer, equipment attributes,
        Processing Algorithm item).
    evidence:
        Further datasets of the same study the report is about (SEG, SC ...).
    procedure_reported:
        Procedure Reported.
    sop_instance_uid:
        UID of the instance; a fresh one when omitted.

    Returns
    -------
    pydicom.Dataset
        A :class:`highdicom.sr.Comprehensive3DSR` in the source study.

    Raises
    ------
    TypeError, ValueError
        When an argument is wrong; the message names it.
    """
    check_source_images(source_images, "source_images")
    check_groups(groups, PlanarFindingGroup)
    check_every_finding_drawn(groups)
    source_uids = {str(ds.SOPInstanceUID) for ds in source_images}
    for i, group in enumerate(groups):
        if group.image is not None and str(group.image.SOPInstanceUID) not in source_uids:
            raise ValueError(f'The image of group {i} is not one of "source_images".')
    check_evidence(evidence, source_images)
    check_concept(procedure_reported, "procedure_reported")
    sop_instance_uid = uid_or_new(sop_instance_uid, "sop_instance_uid")

    return assemble_report(
        source_images,
        lambda algorithm_id: [_group_template(g, algorithm_id) for g in groups],
        placement,
        library=source_images,
        evidence=unique_instances([*source_images, *evidence]),
        private_schemes=private_schemes(groups, procedure_reported),
        procedure_reported=procedure_reported,
        sop_instance_uid=sop_instance_uid,
    )


def _group_template(
    group: PlanarFindingGroup, algorithm_id: hd.sr.AlgorithmIdentification
) -> hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """Turn one :class:`PlanarFindingGroup` into its highdicom template."""
    common = group_arguments(group, algorithm_id)
    frames = frame_numbers(group.image) if group.image is not None else None
    if group.graphic_type is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            **common,
            source_images=[
                hd.sr.SourceImageForMeasurementGroup.from_source_image(group.image, referenced_frame_numbers=frames)
            ] if group.image is not None else None,
        )
    region = hd.sr.ImageRegion(
        graphic_type=group.graphic_type,
        graphic_data=np.asarray(group.graphic_data, dtype=float),
        source_image=hd.sr.SourceImageForRegion.from_source_image(group.image, referenced_frame_numbers=frames),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(**common, referenced_region=region)
