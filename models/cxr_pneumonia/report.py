"""DICOM result objects of the CXR pneumonia model.

For each analysed radiograph the model writes, in the source study:

- an RGB Secondary Capture (Series Number = base): the radiograph (1st..99th percentile
  grey scale, dense = white whatever the source's photometric interpretation) with the
  class activation map blended in: colour map "jet" (blue → cyan → yellow → red as the
  map rises), opacity ``0.5 x`` the normalised map, nothing drawn where the map is below
  0.2 (:data:`MAX_OPACITY`, :data:`MIN_HEAT`); it references its source image;
- a Comprehensive 3D SR (TID 1500, Series Number = base + 1) with one group per image:
  tracking identifier "Pneumonia (heatmap: right lower zone)", finding Pneumonia,
  Present/Absent, the probability; when present, the finding site (zone of lung, right
  or left) and a POLYLINE around the heatmap's hot region on the radiograph; when absent,
  a POLYLINE around the whole radiograph (the classification is of the whole image, and
  viewers such as OHIF need a region in every group). The SC is in the SR's evidence.
"""
from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes

from models.radiograph import normalise, read_radiograph
from models.cxr_pneumonia.findings import PneumoniaFinding, PneumoniaFindings
from node.packs.protocol import ResultContext
from node.results import Placement, build_overlay_sc
from node.results.checks import check_argument_type
from node.results.outline import whole_image_outline
from node.results.planar_sr import PlanarFindingGroup, build_planar_report

__all__ = ["MAX_OPACITY", "MIN_HEAT", "PNEUMONIA", "PROBABILITY", "jet", "render_overlay", "write_results"]

PNEUMONIA = hd.sr.CodedConcept("233604007", "SCT", "Pneumonia")
PROBABILITY = hd.sr.CodedConcept("122157", "DCM", "Probability")
PROBABILITY_UNIT = hd.sr.CodedConcept("{probability}", "UCUM", "probability")
CHEST_RADIOGRAPH = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
ZONES = {
    "upper": hd.sr.CodedConcept("281392002", "SCT", "Upper zone of lung"),
    "middle": hd.sr.CodedConcept("281393007", "SCT", "Middle zone of lung"),
    "lower": hd.sr.CodedConcept("281394001", "SCT", "Lower zone of lung"),
}
SIDES = {"right": codes.SCT.Right, "left": codes.SCT.Left}

MAX_OPACITY = 0.5
"""Opacity of the heatmap where the normalised CAM is 1."""
MIN_HEAT = 0.2
"""Below this normalised CAM value nothing is drawn."""


def jet(values: np.ndarray) -> np.ndarray:
    """The "jet" colour map: ``(...)`` values in 0..1 → ``(..., 3)`` float RGB 0..255."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    anchors = np.array([0.0, 0.35, 0.5, 0.65, 1.0])
    colours = np.array([[0, 0, 160], [0, 200, 255], [120, 255, 120], [255, 220, 0], [200, 0, 0]], dtype=float)
    out = np.empty(v.shape[:-1] + (3,))
    for channel in range(3):
        out[..., channel] = np.interp(v[..., 0], anchors, colours[:, channel])
    return out


def render_overlay(image: Dataset, heatmap: np.ndarray) -> np.ndarray:
    """``(rows, cols, 3)`` uint8: the radiograph in grey with the heatmap blended in."""
    grey = normalise(read_radiograph(image)) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    alpha = np.where(heatmap >= MIN_HEAT, MAX_OPACITY * heatmap, 0.0)[..., None]
    rgb = (1.0 - alpha) * rgb + alpha * jet(heatmap)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def write_results(series: Sequence[Dataset], findings: PneumoniaFindings, context: ResultContext) -> list[Dataset]:
    """Build one SC overlay per image and one SR for the series.

    Returns
    -------
    list[pydicom.Dataset]
        ``[*overlays, sr]``.
    """
    check_argument_type(findings, PneumoniaFindings, "findings")
    check_argument_type(context, ResultContext, "context")
    series = list(series)
    if len(findings.images) != len(series):
        raise ValueError(f"findings cover {len(findings.images)} images, the series has {len(series)}.")
    algorithm = context.algorithm
    base = int(context.series_number_base)
    overlay_series = Placement(algorithm, base, "AI pneumonia heatmap")
    overlays = [
        build_overlay_sc(
            ds, render_overlay(ds, finding.heatmap),
            overlay_series.numbered(number),
            derivation_description=(
                f"Grad-CAM (last convolutional block) of {algorithm.name} {algorithm.version}: "
                f"jet colour map, opacity {MAX_OPACITY:g} x normalised map, not drawn below {MIN_HEAT:g}; "
                f"pneumonia probability {finding.probability:.3f}, heatmap: {finding.location}"
            ),
        )
        for number, (ds, finding) in enumerate(zip(series, findings.images), start=1)
    ]
    groups = [_group(ds, finding) for ds, finding in zip(series, findings.images)]
    sr = build_planar_report(
        series, groups, Placement(algorithm, base + 1, "AI pneumonia report"),
        evidence=overlays,
        procedure_reported=CHEST_RADIOGRAPH,
    )
    return [*overlays, sr]


def _group(ds: Dataset, finding: PneumoniaFinding) -> PlanarFindingGroup:
    common = dict(
        tracking_identifier=f"Pneumonia (heatmap: {finding.location})",
        finding=PNEUMONIA,
        qualitative_evaluations=((PNEUMONIA, codes.SCT.Present if finding.present else codes.SCT.Absent),),
        measurements=((PROBABILITY, round(finding.probability, 4), PROBABILITY_UNIT),),
        image=ds,
    )
    if not finding.present:
        return PlanarFindingGroup(**common, graphic_type="POLYLINE", graphic_data=whole_image_outline(ds))
    r0, c0, r1, c1 = finding.box
    outline = np.array([(c0, r0), (c1 + 1, r0), (c1 + 1, r1 + 1), (c0, r1 + 1), (c0, r0)], dtype=float)
    return PlanarFindingGroup(
        **common,
        finding_site=hd.sr.FindingSite(ZONES[finding.zone], laterality=SIDES[finding.side]),
        graphic_type="POLYLINE",
        graphic_data=outline,
    )
