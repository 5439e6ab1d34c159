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
from models.cxr_nodule.radiograph import patient_side
from node.pipeline import ResultContext
from node.results import build_binary_seg
from node.results.planar_sr import PlanarFindingGroup, build_planar_report, ellipse_points

__all__ = ["CHEST_RADIOGRAPH", "NODULE", "NODULE_SCORE", "write_results"]

MORPHOLOGICALLY_ABNORMAL_STRUCTURE = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
NODULE = hd.sr.CodedConcept("27925004", "SCT", "Nodule")
LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")
DIAMETER = hd.sr.CodedConcept("81827009", "SCT", "Diameter")
MILLIMETRE = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
CHEST_RADIOGRAPH = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
NODULE_SCORE = hd.sr.CodedConcept("AIN-CXR-0001", "99AINODE", "Nodule detection score")
"""Private concept: the highest U-Net nodule probability inside the detection (0..1)."""

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
    for ds, dets, spacing in zip(series, detections, findings.pixel_spacing_mm):
        row_spacing, col_spacing = _spacing(ds, spacing)
        for det in dets:
            number += 1
            radius_mm = det.diameter_mm / 2.0
            groups.append(PlanarFindingGroup(
                tracking_identifier=f"Nodule {number}",
                finding=NODULE,
                finding_site=hd.sr.FindingSite(LUNG, laterality=_SIDES[patient_side(ds, det.col)]),
                measurements=(
                    (DIAMETER, round(det.diameter_mm, 1), MILLIMETRE),
                    (NODULE_SCORE, round(det.score, 4), NO_UNITS),
                ),
                image=ds,
                graphic_type="ELLIPSE",
                graphic_data=ellipse_points(det.row, det.col, radius_mm / row_spacing, radius_mm / col_spacing),
            ))
    if not groups:
        groups.append(PlanarFindingGroup(
            tracking_identifier="Lung nodules",
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


def _spacing(ds: Dataset, mean_spacing: float) -> tuple[float, float]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    return mean_spacing, mean_spacing
