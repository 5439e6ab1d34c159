"""A segment's largest cross-section as a report's planar group.

OHIF draws a TID 1500 finding only where one of its groups has an image region
(:class:`~node.results.sr.FindingGroup`). For a segment, that region is the outline of
its largest connected region on the slice where the segment has the most pixels, with
that region's area, under the Tracking UID of the segment's volumetric group.
"""
from __future__ import annotations

from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.coding import Code

from .outline import mask_outlines
from .seg import Segment
from .sr import FindingGroup

__all__ = ["AREA", "SQUARE_MILLIMETRE", "largest_cross_section"]

AREA = hd.sr.CodedConcept("42798000", "SCT", "Area")
SQUARE_MILLIMETRE = hd.sr.CodedConcept("mm2", "UCUM", "square millimeter")


def largest_cross_section(
    series: Sequence[Dataset], mask: np.ndarray, segment: Segment,
    *, finding_site: hd.sr.CodedConcept | Code | None = None,
) -> FindingGroup:
    """The planar group of one segment: the outline of its largest region on the slice where
    ``mask`` (slices, rows, columns) has the most pixels, with that region's area in mm²."""
    index = int(np.argmax(mask.reshape(len(mask), -1).sum(axis=1)))
    ds = series[index]
    points, pixels = mask_outlines(mask[index], max_regions=1)[0]
    row, col = (float(v) for v in ds.PixelSpacing)
    return FindingGroup(
        tracking_identifier=f"{segment.label}, largest cross-section (image {ds.get('InstanceNumber', index + 1)})"[:64],
        tracking_uid=segment.tracking_uid,
        finding=segment.segment_type,
        finding_site=finding_site,
        measurements=((AREA, round(pixels * row * col, 1), SQUARE_MILLIMETRE),),
        image=ds,
        graphic_type="POLYLINE",
        graphic_data=points,
    )
