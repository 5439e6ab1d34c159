"""DICOM result objects of the CXR nodule model.

For one analysed radiograph series the model writes, in the source study:

- when nodules are detected, a BINARY Segmentation with one segment "Nodule" holding
  every detected nodule (Series Number = base); none for a radiograph without nodules;
- always a Comprehensive 3D SR (TID 1500, Series Number = base + 1): one planar ROI
  group (TID 1410) per detected nodule, with tracking identifier "Nodule k" and its own
  Tracking UID, an ELLIPSE (circle of the nodule's diameter) on the radiograph, the
  finding site (lung, right or left), the diameter in mm and the detection score (a
  probability); or, without detections, one group "Lung nodules absent" with the
  evaluation "Absent", drawn around the whole radiograph (viewers such as OHIF need a
  region in every group).

:func:`stream_results` yields them one by one: the report is started first, aside
(``ResultContext.aside``: in the worker's helper process, from the images' headers and
the detections as plain numbers), the SEG is built and handed over meanwhile, and the
report is taken last. On a CR with 33 detections the report costs about twice the SEG,
so the SEG reaches the PACS that much sooner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage

from models.cxr_nodule.findings import NoduleFindings
from models.cxr_nodule.preprocess import measured_spacing
from models.radiograph import patient_side
from node.results.aside import EncodedObject
from node.results.references import check_cited_as, evidence_reference, headers_only
from node.packs.protocol import ResultContext
from node.results import Placement, build_binary_seg
from node.results.checks import check_argument_type
from node.results.outline import whole_image_outline
from node.results.planar_sr import PlanarFindingGroup, build_planar_report, ellipse_points

__all__ = [
    "CHEST_RADIOGRAPH", "NODULE", "NODULE_SCORE", "NOT_MEASURED", "ReportedNodule", "nodule_report", "stream_results",
    "write_results",
]

MORPHOLOGICALLY_ABNORMAL_STRUCTURE = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
NODULE = hd.sr.CodedConcept("27925004", "SCT", "Nodule")
LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")
DIAMETER = hd.sr.CodedConcept("81827009", "SCT", "Diameter")
MILLIMETRE = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
PROBABILITY_UNIT = hd.sr.CodedConcept("{probability}", "UCUM", "probability")
CHEST_RADIOGRAPH = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
NODULE_SCORE = hd.sr.CodedConcept("AIN-CXR-0001", "99AINODE", "Nodule detection score")
"""Private concept: the highest U-Net nodule probability inside the detection (0..1)."""

NOT_MEASURED = "(no pixel spacing: not measured in mm)"
"""Appended to the Tracking Identifier of a finding on an image without usable pixel spacing."""

_SIDES = {"right": codes.SCT.Right, "left": codes.SCT.Left}


@dataclass(frozen=True)
class ReportedNodule:
    """What the report says of one detection (plain numbers: it crosses to the helper process)."""

    image_index: int
    row: float
    col: float
    diameter_mm: float
    diameter_px: float
    score: float
    measured: bool


def write_results(series: Sequence[Dataset], findings: NoduleFindings, context: ResultContext) -> list[Dataset]:
    """Build the SEG (only with detections) and the SR for one analysed series.

    Returns
    -------
    list[pydicom.Dataset]
        ``[seg, sr]`` with detections, ``[sr]`` without.
    """
    return [obj.dataset() if isinstance(obj, EncodedObject) else obj
            for obj in stream_results(series, findings, context)]


def stream_results(
    series: Sequence[Dataset], findings: NoduleFindings, context: ResultContext
) -> Iterator[Dataset | EncodedObject]:
    """The objects of :func:`write_results`, each yielded as soon as it is built: the SEG
    (with detections), then the SR that cites it (encoded, when it was built in a helper
    process: see :meth:`node.results.aside.Aside.submit_encoded`)."""
    check_argument_type(findings, NoduleFindings, "findings")
    check_argument_type(context, ResultContext, "context")
    series = list(series)
    detections = findings.detections
    if len(detections) != len(series):
        raise ValueError(f"findings cover {len(detections)} images, the series has {len(series)}.")
    algorithm = context.algorithm
    base = int(context.series_number_base)
    nodules = [
        ReportedNodule(i, float(det.row), float(det.col), float(det.diameter_mm), float(det.diameter_px),
                       float(det.score), det.measured)
        for i, dets in enumerate(detections) for det in dets
    ]

    segmentation = None
    if nodules:
        segmentation = evidence_reference(
            sop_class_uid=str(SegmentationStorage), sop_instance_uid=str(hd.UID()),
            series_instance_uid=context.series_uid_for(base), study_instance_uid=str(series[0].StudyInstanceUID),
            modality="SEG", segment_numbers=(1,),
        )
    # the report cites the SEG by its UIDs alone: it is built aside while the SEG is built here
    report = context.aside.submit_encoded(
        nodule_report,
        [headers_only(ds) for ds in series],
        nodules,
        segmentation=segmentation,
        placement=Placement(
            algorithm, base + 1, "AI lung nodule report", series_instance_uid=context.series_uid_for(base + 1)
        ),
    )

    if segmentation is not None:
        mask = np.zeros((len(series), int(series[0].Rows), int(series[0].Columns)), dtype=bool)
        for i, dets in enumerate(detections):
            for det in dets:
                mask[i] |= det.mask
        seg = build_binary_seg(
            series, mask,
            Placement(algorithm, base, "AI lung nodule segmentation",
                      series_instance_uid=str(segmentation.SeriesInstanceUID)),
            segment_label="Nodule",
            category=MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
            segment_type=NODULE,
            sop_instance_uid=str(segmentation.SOPInstanceUID),
        )
        check_cited_as(seg, segmentation)
        if "PatientOrientation" in series[0] and "PatientOrientation" not in seg:
            seg.PatientOrientation = series[0].PatientOrientation
        yield seg

    yield report.result()


def nodule_report(
    series: Sequence[Dataset],
    nodules: Sequence[ReportedNodule],
    *,
    segmentation: Dataset | None,
    placement: Placement,
) -> Dataset:
    """The TID 1500 report of one series: a planar ROI group per nodule, or "Absent".

    ``series`` may be headers only (:func:`node.results.aside.headers_only`); ``segmentation`` the
    SEG or a stand-in for it (:func:`node.results.aside.evidence_reference`), cited as evidence.
    """
    groups: list[PlanarFindingGroup] = []
    for number, nodule in enumerate(nodules, start=1):
        ds = series[nodule.image_index]
        spacing = measured_spacing(ds)
        score = (NODULE_SCORE, round(nodule.score, 4), PROBABILITY_UNIT)
        if spacing is not None and nodule.measured:
            radius_mm = nodule.diameter_mm / 2.0
            identifier = f"Nodule {number}"
            measurements: tuple = ((DIAMETER, round(nodule.diameter_mm, 1), MILLIMETRE), score)
            radii = (radius_mm / spacing[0], radius_mm / spacing[1])
        else:
            identifier = f"Nodule {number} {NOT_MEASURED}"
            measurements = (score,)
            radii = (nodule.diameter_px / 2.0, nodule.diameter_px / 2.0)
        groups.append(PlanarFindingGroup(
            tracking_identifier=identifier,
            finding=NODULE,
            finding_site=hd.sr.FindingSite(LUNG, laterality=_SIDES[patient_side(ds, nodule.col)]),
            measurements=measurements,
            image=ds,
            graphic_type="ELLIPSE",
            graphic_data=ellipse_points(nodule.row, nodule.col, *radii),
        ))
    if not groups:
        unmeasured = any(measured_spacing(ds) is None for ds in series)
        groups.append(PlanarFindingGroup(
            tracking_identifier="Lung nodules absent" + (f" {NOT_MEASURED}" if unmeasured else ""),
            finding=NODULE,
            finding_site=LUNG,
            qualitative_evaluations=((NODULE, codes.SCT.Absent),),
            image=series[0],
            graphic_type="POLYLINE",
            graphic_data=whole_image_outline(series[0]),
        ))
    return build_planar_report(
        series, groups, placement,
        evidence=[segmentation] if segmentation is not None else [],
        procedure_reported=CHEST_RADIOGRAPH,
    )
