"""DICOM result objects of the chest CT landmark model.

For one analysed series the model writes, in the source study:

- a Key Object Selection Document (title ``(113000, DCM, "Of Interest")`` of CID 7010)
  referencing the three marker slices (apex, carina, diaphragm) and the representative
  lung slices derived from them (Series Number = base);
- a Comprehensive 3D SR (TID 1500) with one measurement group per marker and per
  representative slice: tracking identifier and UID, the finding (a private
  "position marker slice" / "representative lung slice" concept), the finding site
  (SCT apex of lung, carina, diaphragm; upper / middle / lower zone of lung), the
  referenced slice outlined (the body's outline on it, a POLYLINE, so that viewers
  draw the marker and jump to the slice), the model's score (a probability), the
  representative slice's position between apex and diaphragm in %, Algorithm
  Identification, and the KOS as further evidence (Series Number = base + 1).

Both carry the IHE AIR "Processing Algorithm" item in ContributingEquipmentSequence.
"""
from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.sr.codedict import codes

from models.chest_ct_landmarks.findings import LANDMARKS, LandmarkFindings
from node.packs.protocol import ResultContext
from node.results import FindingGroup, Placement, build_measurement_report
from node.results.checks import check_argument_type
from node.results.outline import mask_outlines, whole_image_outline
from node.results.ko import OF_INTEREST, build_key_object_selection

__all__ = [
    "CT_CHEST",
    "FINDING_SITES",
    "LANDMARK_SCORE",
    "POSITION_MARKER_SLICE",
    "REPRESENTATIVE_LUNG_SLICE",
    "TRACKING_IDENTIFIERS",
    "write_results",
]

CT_CHEST = hd.sr.CodedConcept("24627-2", "LN", "CT Chest")
"""Procedure reported."""

POSITION_MARKER_SLICE = hd.sr.CodedConcept("AIN-CCT-0001", "99AINODE", "Position marker slice")
"""Private finding: the slice a landmark classifier picked."""

REPRESENTATIVE_LUNG_SLICE = hd.sr.CodedConcept("AIN-CCT-0002", "99AINODE", "Representative lung slice")
"""Private finding: a lung-parenchyma slice placed between the apex and diaphragm markers."""

LANDMARK_SCORE = hd.sr.CodedConcept("AIN-CCT-0003", "99AINODE", "Landmark classifier score")
"""Private concept: the classifier's sigmoid output for the picked slice (0..1)."""

FRACTION_APEX_TO_DIAPHRAGM = hd.sr.CodedConcept(
    "AIN-CCT-0004", "99AINODE", "Fraction of apex-to-diaphragm distance"
)
"""Private concept: where a representative slice lies, 0 % at the apex, 100 % at the diaphragm."""

PROBABILITY_UNIT = hd.sr.CodedConcept("{probability}", "UCUM", "probability")
PERCENT = hd.sr.CodedConcept("%", "UCUM", "percent")

BODY_HU = -500.0
"""Pixels above this HU are the body whose outline marks a marker slice."""

FINDING_SITES: dict[str, hd.sr.CodedConcept] = {
    "apex": hd.sr.CodedConcept("86598002", "SCT", "Apex of Lung"),
    "carina": hd.sr.CodedConcept("28700002", "SCT", "Carina"),
    "diaphragm": hd.sr.CodedConcept("5798000", "SCT", "Diaphragm"),
}
"""Finding site of each marker group."""

TRACKING_IDENTIFIERS: dict[str, str] = {
    "apex": "Lung apex slice",
    "carina": "Tracheal bifurcation slice",
    "diaphragm": "Upper diaphragm slice",
}

_ZONE_SITES: dict[str, hd.sr.CodedConcept] = {
    "upper zone": hd.sr.CodedConcept("281392002", "SCT", "Upper zone of lung"),
    "middle zone": hd.sr.CodedConcept("281393007", "SCT", "Middle zone of lung"),
    "lower zone": hd.sr.CodedConcept("281394001", "SCT", "Lower zone of lung"),
}
_LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")


def write_results(series: Sequence[Dataset], findings: LandmarkFindings, context: ResultContext) -> list[Dataset]:
    """Build the KOS and the SR for one analysed series.

    Parameters
    ----------
    series:
        The analysed CT slices, sorted as the findings' rows.
    findings:
        Scores, picks and representative slices.
    context:
        Algorithm identity and the first Series Number to use.

    Returns
    -------
    list[pydicom.Dataset]
        ``[kos, sr]``.

    Raises
    ------
    TypeError
        When ``findings`` or ``context`` has the wrong type.
    ValueError
        When the findings do not fit the series.
    """
    check_argument_type(findings, LandmarkFindings, "findings")
    check_argument_type(context, ResultContext, "context")
    series = list(series)
    if findings.scores.shape[0] != len(series):
        raise ValueError(f"findings have {findings.scores.shape[0]} slices, the series {len(series)}.")
    algorithm = context.algorithm
    base = int(context.series_number_base)

    selected = [series[i] for i in findings.selected_indices]
    marks = ", ".join(
        f"{TRACKING_IDENTIFIERS[n].lower()} #{series[findings.picks[n]].get('InstanceNumber', '?')}" for n in LANDMARKS
    )
    zones = ", ".join(f"{r.label} #{series[r.index].get('InstanceNumber', '?')}" for r in findings.representative)
    kos = build_key_object_selection(
        selected,
        Placement(algorithm, base, "AI chest CT key slices"),
        title=OF_INTEREST,
        description=(f"Position markers by {algorithm.name} {algorithm.version}: {marks}"
                     + (f"; representative lung slices: {zones}" if zones else "")
                     + ". Labels per slice are in the accompanying SR.")[:1024],
    )

    groups = [
        FindingGroup(
            tracking_identifier=TRACKING_IDENTIFIERS[name],
            finding=POSITION_MARKER_SLICE,
            finding_site=FINDING_SITES[name],
            measurements=((LANDMARK_SCORE, round(findings.score(name), 6), PROBABILITY_UNIT),),
            **_slice_region(series[findings.picks[name]]),
        )
        for name in LANDMARKS
    ]
    for rep in findings.representative:
        groups.append(
            FindingGroup(
                tracking_identifier=f"Representative lung slice, {rep.label}",
                finding=REPRESENTATIVE_LUNG_SLICE,
                finding_site=_ZONE_SITES.get(rep.label, _LUNG),
                measurements=((FRACTION_APEX_TO_DIAPHRAGM, round(100.0 * rep.fraction, 4), PERCENT),),
                **_slice_region(series[rep.index]),
            )
        )
    sr = build_measurement_report(
        series,
        groups,
        Placement(algorithm, base + 1, "AI chest CT landmarks"),
        evidence=[kos],
        procedure_reported=CT_CHEST,
    )
    return [kos, sr]


def _slice_region(ds: Dataset) -> dict:
    """The region of a group about a whole slice: the body's outline on it (its largest region
    of pixels above :data:`BODY_HU`), or the whole image when its pixels cannot be read or
    show no body."""
    try:
        body = apply_modality_lut(ds.pixel_array, ds) > BODY_HU
    except Exception:  # noqa: BLE001 - headers only, or pixels that do not decode: outline the image
        body = None
    outlines = mask_outlines(body, max_regions=1) if body is not None else []
    outline = outlines[0][0] if outlines else whole_image_outline(ds)
    return {"image": ds, "graphic_type": "POLYLINE", "graphic_data": outline}
