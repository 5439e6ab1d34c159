"""DICOM result objects of the head CT hematoma model.

For one analysed series the model writes, all in the source study:

- a BINARY Segmentation with one segment "Hemorrhage": the hematoma patches
  (16x16 pixels each) over every slice of the series (Series Number = base);
- a Comprehensive 3D SR (TID 1500, Series Number = base + 1). With hematoma patches:
  one volumetric group "Intracranial hemorrhage" (present, the number of hematoma
  patches and of affected slices, the SEG segment, the segment's Tracking UID) and one
  planar group per region of hematoma patches on each affected slice (its outline as a
  POLYLINE on that slice, its area in mm2); the largest region's group shares the
  finding's Tracking UID, so a viewer that merges groups by Tracking UID (OHIF) draws
  the finding there. Without: one group "Intracranial hemorrhage" absent, drawn
  around the whole middle slice;
- one RGB Secondary Capture per slice with hematoma patches: the slice in a
  0-80 HU window, the patch grid drawn faintly and the hematoma patches in red
  (Series Number = base + 2, one series).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SecondaryCaptureImageStorage, SegmentationStorage

from models.head_ct_hematoma.findings import HematomaFindings
from models.head_ct_hematoma.overlay import WINDOW_HU, render_overlay
from models.head_ct_hematoma.preprocess import patches_to_pixels
from node.results.aside import EncodedObject
from node.results.references import check_cited_as, evidence_reference, headers_only
from node.packs.protocol import ResultContext
from node.results import (
    FindingGroup,
    OverlaySeries,
    Placement,
    build_binary_seg,
    build_measurement_report,
)
from node.results.checks import check_argument_type, check_source_images
from node.results.outline import mask_outlines, whole_image_outline

__all__ = [
    "HEMORRHAGE",
    "INTRACRANIAL_HEMORRHAGE",
    "NUMBER_OF_AFFECTED_SLICES",
    "NUMBER_OF_HEMATOMA_PATCHES",
    "WINDOW_HU",
    "hemorrhage_report",
    "render_overlay",
    "stream_results",
    "write_results",
]

MORPHOLOGICALLY_ABNORMAL_STRUCTURE = hd.sr.CodedConcept(
    "49755003", "SCT", "Morphologically Abnormal Structure"
)
"""Segmented Property Category (CID 7150)."""

HEMORRHAGE = hd.sr.CodedConcept("50960005", "SCT", "Hemorrhage")
"""Segmented Property Type (CID 7151)."""

INTRACRANIAL_HEMORRHAGE = hd.sr.CodedConcept("1386000", "SCT", "Intracranial hemorrhage")
"""Finding of the SR's measurement group."""

BRAIN = hd.sr.CodedConcept("12738006", "SCT", "Brain")
"""Finding site."""

CT_HEAD = hd.sr.CodedConcept("24725-4", "LN", "CT Head")
"""Procedure reported."""

NUMBER_OF_HEMATOMA_PATCHES = hd.sr.CodedConcept(
    "AIN-HCT-0001", "99AINODE", "Number of hematoma patches"
)
"""Private concept: hematoma patches (16x16 pixels) in the series."""

NUMBER_OF_AFFECTED_SLICES = hd.sr.CodedConcept(
    "AIN-HCT-0002", "99AINODE", "Number of slices with hematoma"
)
"""Private concept: slices with at least one hematoma patch."""

AREA = hd.sr.CodedConcept("42798000", "SCT", "Area")
SQUARE_MILLIMETRE = hd.sr.CodedConcept("mm2", "UCUM", "square millimeter")
SQUARE_PIXEL = hd.sr.CodedConcept("{pixels}", "UCUM", "pixels")
PATCHES = hd.sr.CodedConcept("{patches}", "UCUM", "patches")
SLICES = hd.sr.CodedConcept("{slices}", "UCUM", "slices")
SEGMENTATION_STORAGE = str(SegmentationStorage)
SECONDARY_CAPTURE_STORAGE = str(SecondaryCaptureImageStorage)


def write_results(
    series: Sequence[Dataset], findings: HematomaFindings, context: ResultContext
) -> list[Dataset]:
    """Build the SEG, the SR and the SC overlays for one analysed series.

    Parameters
    ----------
    series:
        The analysed CT slices, in the order of ``findings`` (the sorted series).
    findings:
        Per-patch classes of every slice.
    context:
        Algorithm identity and the first Series Number to use.

    Returns
    -------
    list[pydicom.Dataset]
        ``[seg, sr, *overlays]``; one overlay per slice with hematoma patches
        (none for a series without hematoma patches).

    Raises
    ------
    TypeError
        When ``findings`` or ``context`` has the wrong type.
    ValueError
        When the series and the findings disagree (slice count, matrix size).
    """
    objects = list(stream_results(series, findings, context))
    seg, *overlays, sr = objects
    return [seg, sr.dataset() if isinstance(sr, EncodedObject) else sr, *overlays]


def stream_results(
    series: Sequence[Dataset], findings: HematomaFindings, context: ResultContext
) -> Iterator[Dataset | EncodedObject]:
    """The objects of :func:`write_results`, each yielded as soon as it is built (the report
    encoded, when it was built in a helper process: see :meth:`node.results.aside.Aside.submit_encoded`).

    The SEG first, then the overlays, then the SR that references them all: the node
    saves and delivers each while the next is built. The SR is started first, aside
    (``context.aside``), and taken last.
    """
    check_argument_type(findings, HematomaFindings, "findings")
    check_argument_type(context, ResultContext, "context")
    series = list(series)
    check_source_images(series, "series")  # before anything reads their UIDs: a clear reason
    mask = _pixel_mask(series, findings)
    algorithm = context.algorithm
    base = int(context.series_number_base)
    study_uid = str(series[0].StudyInstanceUID)
    tracking_uid = hd.UID()  # shared by the SEG segment and the SR finding group
    affected = [int(i) for i in findings.affected_slices]
    seg_uid, seg_series_uid = hd.UID(), context.series_uid_for(base)
    overlay_uids, overlay_series_uid = [hd.UID() for _ in affected], context.series_uid_for(base + 2)

    # the report cites the SEG and the overlays by their UIDs alone: it is built aside
    # (in a helper process when the node has one, which also encodes it) while they are built here
    segmentation = evidence_reference(
        sop_class_uid=SEGMENTATION_STORAGE, sop_instance_uid=seg_uid, series_instance_uid=seg_series_uid,
        study_instance_uid=study_uid, modality="SEG", segment_numbers=(1,),
    )
    report = context.aside.submit_encoded(
        hemorrhage_report,
        [headers_only(ds) for ds in series],
        affected=affected,
        present=bool(findings.present),
        patch_count=int(findings.hematoma_patch_count),
        segmentation=segmentation,
        overlays=[
            evidence_reference(
                sop_class_uid=SECONDARY_CAPTURE_STORAGE, sop_instance_uid=uid,
                series_instance_uid=overlay_series_uid, study_instance_uid=study_uid, modality="OT",
            )
            for uid in overlay_uids
        ],
        placement=Placement(
            algorithm, base + 1, "AI hemorrhage report", series_instance_uid=context.series_uid_for(base + 1)
        ),
        tracking_uid=tracking_uid,
        regions=_regions(series, findings, affected),
    )

    seg = build_binary_seg(
        series,
        mask,
        Placement(algorithm, base, "AI hemorrhage segmentation", series_instance_uid=seg_series_uid),
        segment_label="Hemorrhage",
        category=MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
        segment_type=HEMORRHAGE,
        sop_instance_uid=seg_uid,
        tracking_uid=tracking_uid,
    )
    check_cited_as(seg, segmentation)
    yield seg

    overlays = Placement(algorithm, base + 2, "AI hemorrhage overlay", series_instance_uid=overlay_series_uid)
    yield from _overlays(series, findings, overlays, affected, overlay_uids)
    yield report.result()


def _regions(
    series: Sequence[Dataset], findings: HematomaFindings, affected: Sequence[int]
) -> list[tuple[int, list[list[float]], int]]:
    """``(slice index, outline points, pixels)`` of every region of hematoma patches on the
    affected slices (plain numbers: they cross to the helper process)."""
    regions = []
    for index in affected:
        ds = series[index]
        pixels = patches_to_pixels(findings.hematoma_mask[index], int(ds.Rows), int(ds.Columns))
        for points, count in mask_outlines(pixels):
            regions.append((int(index), points.tolist(), count))
    return regions


def _overlays(
    series: Sequence[Dataset],
    findings: HematomaFindings,
    placement: Placement,
    affected: Sequence[int],
    uids: Sequence[str],
) -> Iterator[Dataset]:
    """The SC overlay of each affected slice, numbered from 1, with the SOP Instance UIDs the report cites."""
    algorithm = placement.algorithm
    overlay_series = OverlaySeries(
        placement,
        derivation_description=(
            f"Window {WINDOW_HU[0]:g} to {WINDOW_HU[1]:g} HU, "
            f"{findings.patch_size}x{findings.patch_size} patch grid, hematoma patches "
            f"in red, by {algorithm.name} {algorithm.version}"
        ),
    )
    for number, (index, uid) in enumerate(zip(affected, uids), start=1):
        overlay = overlay_series.build(
            series[index],
            render_overlay(series[index], findings.hematoma_mask[index], findings.patch_size),
            instance_number=number,
            sop_instance_uid=uid,
        )
        if overlay.SOPClassUID != SECONDARY_CAPTURE_STORAGE:
            raise ValueError(f"the report cites the overlays as {SECONDARY_CAPTURE_STORAGE}, not {overlay.SOPClassUID}")
        yield overlay


def hemorrhage_report(
    series: Sequence[Dataset],
    *,
    affected: Sequence[int],
    present: bool,
    patch_count: int,
    segmentation: Dataset,
    overlays: Sequence[Dataset],
    placement: Placement,
    tracking_uid: str,
    regions: Sequence[tuple[int, Sequence[Sequence[float]], int]] = (),
) -> Dataset:
    """The TID 1500 report of one series: the finding's group cites the affected slices,
    the SEG segment (when there are hematoma patches) and every overlay as evidence; each
    region of hematoma patches (``(slice index, outline, pixels)``, see :func:`_regions`)
    is outlined on its slice, the largest with the finding's Tracking UID.

    ``segmentation`` and ``overlays`` may be stand-ins (:func:`node.results.aside.evidence_reference`)
    of objects built at the same time elsewhere.
    """
    evaluation = ((INTRACRANIAL_HEMORRHAGE, codes.SCT.Present if present else codes.SCT.Absent),)
    counts = (
        (NUMBER_OF_HEMATOMA_PATCHES, patch_count, PATCHES),
        (NUMBER_OF_AFFECTED_SLICES, len(affected), SLICES),
    )
    finding = dict(finding=INTRACRANIAL_HEMORRHAGE, finding_site=BRAIN)
    if not (present and patch_count > 0 and regions):
        middle = series[len(series) // 2]
        group = FindingGroup(
            tracking_identifier="Intracranial hemorrhage" + ("" if present else " absent"), tracking_uid=tracking_uid,
            **finding, qualitative_evaluations=evaluation, measurements=counts,
            image=middle, graphic_type="POLYLINE", graphic_data=whole_image_outline(middle),
        )
        return build_measurement_report(
            series, [group], placement, evidence=[segmentation, *overlays], procedure_reported=CT_HEAD,
        )
    groups = [FindingGroup(
        tracking_identifier="Intracranial hemorrhage", tracking_uid=tracking_uid, **finding,
        qualitative_evaluations=evaluation, measurements=counts,
        referenced_images=tuple(series[i] for i in affected), segmentation=segmentation,
    )]
    largest = max(range(len(regions)), key=lambda k: regions[k][2])
    per_slice: dict[int, int] = {}
    for index, _, _ in regions:
        per_slice[index] = per_slice.get(index, 0) + 1
    seen: dict[int, int] = {}
    for k, (index, points, pixels) in enumerate(regions):
        ds = series[index]
        seen[index] = seen.get(index, 0) + 1
        identifier = f"Intracranial hemorrhage, image {ds.get('InstanceNumber', index + 1)}"
        if per_slice[index] > 1:
            identifier += f", region {seen[index]} of {per_slice[index]}"
        groups.append(FindingGroup(
            tracking_identifier=identifier, tracking_uid=tracking_uid if k == largest else hd.UID(), **finding,
            measurements=(_area(ds, pixels),), image=ds, graphic_type="POLYLINE",
            graphic_data=np.asarray(points, dtype=float),
        ))
    return build_measurement_report(
        series, groups, placement, evidence=[segmentation, *overlays], procedure_reported=CT_HEAD,
    )


def _area(ds: Dataset, pixels: int) -> tuple[hd.sr.CodedConcept, float, hd.sr.CodedConcept]:
    """The area of ``pixels`` pixels of ``ds``: in mm2 with a usable Pixel Spacing, else in pixels."""
    try:
        row, col = (float(v) for v in ds.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        row = col = 0.0
    if row > 0 and col > 0:
        return AREA, round(pixels * row * col, 1), SQUARE_MILLIMETRE
    return AREA, float(pixels), SQUARE_PIXEL


def _pixel_mask(series: Sequence[Dataset], findings: HematomaFindings) -> np.ndarray:
    """The hematoma patches as a ``(n, rows, cols)`` pixel mask on the source matrix."""
    patches = findings.hematoma_mask
    if patches.ndim != 3:
        raise ValueError(
            f"findings.patch_classes must be (slices, grid, grid), not {patches.shape}."
        )
    if patches.shape[0] != len(series):
        raise ValueError(
            f"findings has {patches.shape[0]} slices but the series has {len(series)}."
        )
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in series}
    if len(shapes) != 1:
        raise ValueError(f"the slices differ in Rows x Columns: {sorted(shapes)}.")
    rows, cols = shapes.pop()
    return patches_to_pixels(patches, rows, cols)
