"""The report of a job whose input is outside its model's domain, and the marks on flagged results.

A route's ``on_out_of_domain`` decides what such a job sends (see
:mod:`node.packs.applicability` for the score):

- ``withhold``: only :func:`build_applicability_report`, a TID 1500 report whose one
  finding, drawn around the whole of the middle image (OHIF 3.13 stops on a measurement
  group without a region), reads "Not evaluated: image outside validated domain" with the
  score and the threshold, and says in its evaluation why;
- ``flag``: the pack's objects, each marked by :func:`flag_object` (series description,
  segment labels, a comment in each report, a red banner burnt into each overlay), and
  the same report saying the results were sent although the image is outside the domain.
"""
from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset

from .algorithm import AlgorithmInfo
from .outline import whole_image_outline
from .placement import Placement
from .planar_sr import PlanarFindingGroup, build_planar_report

__all__ = [
    "APPLICABILITY_SCORE", "APPLICABILITY_THRESHOLD", "NOT_EVALUATED", "OUTSIDE_DOMAIN", "SENT_UNVALIDATED",
    "STATEMENT_SERIES_OFFSET", "build_applicability_report", "flag_object",
]

OUTSIDE_DOMAIN = hd.sr.CodedConcept("AIN-APP-0001", "99AINODE", "Image outside the model's validated domain")
"""The finding of the report."""
MODEL_RESULT = hd.sr.CodedConcept("AIN-APP-0002", "99AINODE", "Model result")
NOT_EVALUATED = hd.sr.CodedConcept("AIN-APP-0003", "99AINODE",
                                   "Not evaluated: outside what the model was validated on")
"""The evaluation of a withheld job: no finding of the model was sent."""
SENT_UNVALIDATED = hd.sr.CodedConcept("AIN-APP-0006", "99AINODE",
                                      "Results sent although outside the validated domain")
"""The evaluation of a flagged job: the model's results were sent, marked."""
APPLICABILITY_SCORE = hd.sr.CodedConcept("AIN-APP-0004", "99AINODE", "Applicability score")
APPLICABILITY_THRESHOLD = hd.sr.CodedConcept("AIN-APP-0005", "99AINODE", "Applicability threshold")
_NO_UNIT = hd.sr.CodedConcept("1", "UCUM", "no units")
_COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")
STATEMENT_SERIES_OFFSET = 9
"""The report's Series Number is the pack's ``series_number_base`` + this."""
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


def _label(withheld: bool, score: float, threshold: float) -> str:
    """The Tracking Identifier a viewer shows as the measurement's name (at most 64 characters)."""
    head = "Not evaluated" if withheld else "UNVALIDATED results"
    return f"{head}: image outside validated domain ({score:.2f} > {threshold:.2f})"[:64]


def build_applicability_report(
    series: Sequence[Dataset], algorithm: AlgorithmInfo, series_number: int, score: float, threshold: float,
    *, withheld: bool = True,
) -> Dataset:
    """The TID 1500 report that the input was outside the model's domain (withheld or flagged).

    Parameters
    ----------
    series:
        The job's images, sorted; the region is drawn around the whole of the middle one.
    algorithm, series_number:
        The model and the Series Number of the report.
    score, threshold:
        The job's applicability score and the model's threshold.
    withheld:
        ``True``: nothing else was sent ("Not evaluated"); ``False``: the results were
        sent, marked (``flag``).
    """
    series = list(series)
    image = series[len(series) // 2]
    group = PlanarFindingGroup(
        tracking_identifier=_label(withheld, score, threshold),
        finding=OUTSIDE_DOMAIN,
        qualitative_evaluations=((MODEL_RESULT, NOT_EVALUATED if withheld else SENT_UNVALIDATED),),
        measurements=((APPLICABILITY_SCORE, round(float(score), 4), _NO_UNIT),
                      (APPLICABILITY_THRESHOLD, round(float(threshold), 4), _NO_UNIT)),
        image=image, graphic_type="POLYLINE", graphic_data=whole_image_outline(image),
    )
    title = "not evaluated" if withheld else "UNVALIDATED"
    placement = Placement(algorithm, series_number, f"AI {algorithm.name} {title}"[:64])
    return build_planar_report(series, [group], placement)


def flag_object(ds: Dataset, sentence: str) -> Dataset:
    """Mark one result object of a flagged job (in place): every viewer shows that it is unvalidated."""
    ds.SeriesDescription = f"UNVALIDATED {ds.get('SeriesDescription', '')}".strip()[:64]
    for segment in ds.get("SegmentSequence", []):
        segment.SegmentLabel = f"UNVALIDATED {segment.SegmentLabel}"[:64]
    if str(ds.SOPClassUID).startswith(_SR_PREFIX) and "ContentSequence" in ds:
        ds.ContentSequence.append(_comment(f"CAUTION: {sentence}"))
    elif ds.get("SamplesPerPixel") == 3 and "PixelData" in ds and not ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.PixelData = _banner(ds.pixel_array, "UNVALIDATED: outside the model's domain").tobytes()
    return ds


def _comment(text: str) -> Dataset:
    """A TEXT Comment item (CONTAINS) for the root of a report."""
    return hd.sr.TextContentItem(name=_COMMENT, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _banner(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` (rows, cols, 3) with a red band and ``text`` in white across its top."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    band = max(12, image.height // 14)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, image.width, band), fill=(200, 0, 0))
    font = ImageFont.load_default(size=max(8, int(band * 0.7)))
    while font.size > 8 and draw.textlength(text, font=font) > image.width - 8:
        font = ImageFont.load_default(size=font.size - 2)
    draw.text((4, band * 0.12), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)
