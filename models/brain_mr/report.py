"""DICOM result objects of the brain MR model.

For one analysed series the model writes, all in the source study and frame of
reference:

- a BINARY Segmentation with one segment per structure found (cerebrum, cerebellum,
  brain stem, ventricles, vessels; SNOMED CT codes, category "Anatomical Structure")
  and the tumour (SCT "Neoplasm", category "Morphologically Abnormal Structure"), over
  every slice of the series (Series Number = base);
- a Comprehensive 3D SR (TID 1500) with one volumetric ROI group (TID 1411) per segment:
  its volume in mL, referencing the SEG segment, with the segment's tracking UID, and a
  planar group with the same tracking UID: the outline of the structure's largest region
  on the slice where it is largest, with its area there in mm2 (so that a viewer draws
  each structure where it is); when no tumour is found, a group "Tumor" with the finding
  absent, drawn around the whole middle slice (Series Number = base + 1);
- when a tumour is found, an Encapsulated STL of its surface (marching tetrahedra of the
  tumour mask, vertices in patient mm) (Series Number = base + 2).
"""
from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes

from models.brain_mr.classes import CLASS_CODES, TUMOR
from models.brain_mr.findings import BrainMRFindings
from models.brain_mr.mesh import marching_tetrahedra, voxel_affine
from node.packs.protocol import ResultContext
from node.results import FindingGroup, Placement, Segment, build_measurement_report, build_segmentation
from node.results.checks import check_argument_type
from node.results.cross_section import largest_cross_section
from node.results.outline import whole_image_outline
from node.results.stl import build_encapsulated_stl, encode_binary_stl

__all__ = ["BRAIN", "BRAIN_MRI", "MILLILITER", "VOLUME", "series_affine", "tumor_surface", "write_results"]

BRAIN = hd.sr.CodedConcept("12738006", "SCT", "Brain")
BRAIN_MRI = hd.sr.CodedConcept("24590-2", "LN", "Brain MRI")
VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
MILLILITER = hd.sr.CodedConcept("mL", "UCUM", "milliliter")


def write_results(series: Sequence[Dataset], findings: BrainMRFindings, context: ResultContext) -> list[Dataset]:
    """Build the SEG, the SR and (with a tumour) the STL for one analysed series.

    Returns
    -------
    list[pydicom.Dataset]
        ``[seg, sr]`` or ``[seg, sr, stl]``; no SEG (``[sr]``) when nothing at all was
        segmented.

    Raises
    ------
    TypeError
        When ``findings`` or ``context`` has the wrong type.
    ValueError
        When the series and the findings disagree (slice count, matrix size).
    """
    check_argument_type(findings, BrainMRFindings, "findings")
    check_argument_type(context, ResultContext, "context")
    series = list(series)
    labels = findings.labels
    if labels.shape != (len(series), int(series[0].Rows), int(series[0].Columns)):
        raise ValueError(f"findings have shape {labels.shape}, the series is {len(series)} slices of "
                         f"{series[0].Rows}x{series[0].Columns}")
    algorithm = context.algorithm
    base = int(context.series_number_base)
    present = findings.present()
    segments = {c: _segment(c) for c in present}
    volumes = findings.volumes_ml()

    seg = None
    if present:
        seg = build_segmentation(
            series,
            [labels == c for c in present],
            list(segments.values()),
            Placement(algorithm, base, "AI brain structures and tumor"),
            content_description="Brain structures and tumor",
        )
    groups = []
    for number, c in enumerate(present, start=1):
        segment = segments[c]
        site = BRAIN if c == TUMOR else None
        groups.append(FindingGroup(
            tracking_identifier=segment.label,
            tracking_uid=segment.tracking_uid,
            finding=segment.segment_type,
            finding_site=site,
            qualitative_evaluations=((segment.segment_type, codes.SCT.Present),) if c == TUMOR else (),
            measurements=((VOLUME, round(volumes[c], 3), MILLILITER),),
            segmentation=seg,
            segment_number=number,
        ))
        groups.append(largest_cross_section(series, labels == c, segment, finding_site=site))
    if TUMOR not in present:
        _, neoplasm, label = CLASS_CODES[TUMOR]
        middle = series[len(series) // 2]
        groups.append(FindingGroup(
            tracking_identifier=f"{label} absent", finding=neoplasm, finding_site=BRAIN,
            qualitative_evaluations=((neoplasm, codes.SCT.Absent),),
            image=middle, graphic_type="POLYLINE", graphic_data=whole_image_outline(middle),
        ))
    stl = None
    if TUMOR in present:
        triangles = tumor_surface(series, labels == TUMOR)
        stl = build_encapsulated_stl(
            series,
            encode_binary_stl(triangles, header="ainode brain-mr tumor surface, patient LPS mm"),
            Placement(algorithm, base + 2, "AI tumor surface (STL)"),
            document_title="Tumor surface",
            source_instances=[seg],
        )
    evidence = [d for d in (seg, stl) if d is not None]
    sr = build_measurement_report(
        series, groups, Placement(algorithm, base + 1, "AI brain volumes report"),
        evidence=evidence, procedure_reported=BRAIN_MRI,
    )
    return [d for d in (seg, sr, stl) if d is not None]


def _segment(label_value: int) -> Segment:
    """The SEG segment of one label value (codes and label of :data:`CLASS_CODES`), with a fresh tracking UID."""
    category, prop, label = CLASS_CODES[label_value]
    return Segment(label, category, prop)


def series_affine(series: Sequence[Dataset]) -> np.ndarray:
    """4x4 voxel ``(column, row, slice)`` → patient mm matrix of a sorted series."""
    first = series[0]
    iop = np.asarray(first.ImageOrientationPatient, dtype=float)
    origin = np.asarray(first.ImagePositionPatient, dtype=float)
    if len(series) > 1:
        last = np.asarray(series[-1].ImagePositionPatient, dtype=float)
        step = (last - origin) / (len(series) - 1)
    else:
        thickness = float(getattr(first, "SpacingBetweenSlices", None) or first.SliceThickness)
        step = np.cross(iop[:3], iop[3:]) * thickness
    return voxel_affine(origin, iop[:3], iop[3:], step, [float(v) for v in first.PixelSpacing])


def tumor_surface(series: Sequence[Dataset], mask: np.ndarray) -> np.ndarray:
    """Triangles ``(n, 3, 3)`` of the tumour surface in patient mm (marching tetrahedra)."""
    return marching_tetrahedra(mask, series_affine(series))
