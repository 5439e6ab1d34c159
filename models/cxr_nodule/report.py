"""DICOM result objects of the CXR nodule model.

For one analysed radiograph series the model writes, in the source study:

- when nodules are detected, a BINARY Segmentation with one segment "Nodule" holding
  every detected nodule (Series Number = base); none for a radiograph without nodules;
- always a Comprehensive 3D SR (TID 1500, Series Number = base + 1): one planar ROI
  group (TID 1410) per detected nodule, with tracking identifier "Nodule k" and its own
  Tracking UID, an ELLIPSE (circle of the nodule's diameter) on the radiograph, the
  finding site (lung, right or left), the diameter in mm and the detection score; or,
  without detections, one group "Lung nodules" with the evaluation "Absent".
"""
from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes

from models.cxr_nodule.findings import NoduleFindings
from models.cxr_nodule.preprocess import measured_spacing
from models.cxr_nodule.radiograph import patient_side
from node.pipeline import ResultContext
from node.results import build_binary_seg
from node.results.planar_sr import PlanarFindingGroup, build_planar_report, ellipse_points

__all__ = ["CHEST_RADIOGRAPH", "NODULE", "NODULE_SCORE", "NOT_MEASURED", "write_results"]

MORPHOLOGICALLY_ABNORMAL_STRUCTURE = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
NODULE = hd.sr.CodedConcept("27925004", "SCT", "Nodule")
LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")
DIAMETER = hd.sr.CodedConcept("81827009", "SCT", "Diameter")
MILLIMETRE = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
CHEST_RADIOGRAPH = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
NODULE_SCORE = hd.sr.CodedConcept("AIN-CXR-0001", "99AINODE", "Nodule detection score")
"""Private concept: the highest U-Net nodule probability inside the detection (0..1)."""

NOT_MEASURED = "(no pixel spacing: not measured in mm)"
"""Appended to the Tracking Identifier of a finding on an image without usable pixel spacing."""

_SIDES = {"right": codes.SCT.Right, "left": codes.SCT.Left}


def write_results(series: Sequence[Dataset], findings: NoduleFindings, context: ResultContext) -> list[Dataset]:
    """Build the SEG (only with detections) and the SR for one analysed series.

    Returns
    -------
    list[pydicom.Dataset]
        ``[seg, sr]`` with detections, ``[sr]`` without.
    """
    if not isinstance(findings, NoduleFindings):
        raise TypeError(f'Argument "findings" must be NoduleFindings, not {type(findings).__name__}.')
    if not isinstance(context, ResultContext):
        raise TypeError(f'Argument "context" must be a ResultContext, not {type(context).__name__}.')
    series = list(series)
    detections = findings.detections
    if len(detections) != len(series):
        raise ValueError(f"findings cover {len(detections)} images, the series has {len(series)}.")
    algorithm = context.algorithm
    base = int(context.series_number_base)

    objects: list[Dataset] = []
    seg = None
    if findings.count:
        mask = np.zeros((len(series), int(series[0].Rows), int(series[0].Columns)), dtype=bool)
        for i, dets in enumerate(detections):
            for det in dets:
                mask[i] |= det.mask
        seg = build_binary_seg(
            series, mask,
            segment_label="Nodule",
            category=MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
            segment_type=NODULE,
            algorithm=algorithm,
            series_number=base,
            series_description="AI lung nodule segmentation",
        )
        if "PatientOrientation" in series[0] and "PatientOrientation" not in seg:
            seg.PatientOrientation = series[0].PatientOrientation
        objects.append(seg)

    groups: list[PlanarFindingGroup] = []
    number = 0
    for ds, dets in zip(series, detections):
        spacing = measured_spacing(ds)
        for det in dets:
            number += 1
            score = (NODULE_SCORE, round(det.score, 4), NO_UNITS)
            if spacing is not None and det.measured:
                radius_mm = det.diameter_mm / 2.0
                identifier = f"Nodule {number}"
                measurements: tuple = ((DIAMETER, round(det.diameter_mm, 1), MILLIMETRE), score)
                radii = (radius_mm / spacing[0], radius_mm / spacing[1])
            else:
                identifier = f"Nodule {number} {NOT_MEASURED}"
                measurements = (score,)
                radii = (det.diameter_px / 2.0, det.diameter_px / 2.0)
            groups.append(PlanarFindingGroup(
                tracking_identifier=identifier,
                finding=NODULE,
                finding_site=hd.sr.FindingSite(LUNG, laterality=_SIDES[patient_side(ds, det.col)]),
                measurements=measurements,
                image=ds,
                graphic_type="ELLIPSE",
                graphic_data=ellipse_points(det.row, det.col, *radii),
            ))
    if not groups:
        unmeasured = any(measured_spacing(ds) is None for ds in series)
        groups.append(PlanarFindingGroup(
            tracking_identifier="Lung nodules" + (f" {NOT_MEASURED}" if unmeasured else ""),
            finding=NODULE,
            finding_site=LUNG,
            qualitative_evaluations=((NODULE, codes.SCT.Absent),),
            image=series[0],
        ))
    sr = build_planar_report(
        series, groups,
        algorithm=algorithm,
        series_number=base + 1,
        series_description="AI lung nodule report",
        evidence=[seg] if seg is not None else [],
        procedure_reported=CHEST_RADIOGRAPH,
    )
    objects.append(sr)
    return objects
