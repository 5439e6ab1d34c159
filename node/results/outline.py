"""Outlines of binary masks as SCOORD graphic data: what a report draws where a finding is.

A finding delineated by a mask (hematoma patches, a brain structure) is drawn in a TID 1500
report as the outline of the mask on a slice: a closed POLYLINE along the pixel edges of
each connected region, in DICOM image coordinates (column, row; (0, 0) the top-left corner
of the top-left pixel), so that it encloses exactly the pixels of the region.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["mask_outlines", "rectangle_outline", "whole_image_outline"]

# clockwise around a pixel (rows grow downwards): the side, as (from corner, to corner) offsets
# in (column, row), and the neighbour that must be outside for the side to be an edge
_SIDES = (
    ((0, 0), (1, 0), (-1, 0)),   # top: neighbour above
    ((1, 0), (1, 1), (0, 1)),    # right: neighbour to the right
    ((1, 1), (0, 1), (1, 0)),    # bottom: neighbour below
    ((0, 1), (0, 0), (0, -1)),   # left: neighbour to the left
)


def mask_outlines(mask: np.ndarray, *, max_regions: int | None = None) -> list[tuple[np.ndarray, int]]:
    """The outer outline of each 4-connected region of a 2D mask, largest region first.

    Parameters
    ----------
    mask:
        ``(rows, cols)`` bool.
    max_regions:
        Keep only this many regions (the largest); all when ``None``.

    Returns
    -------
    list[tuple[numpy.ndarray, int]]
        ``(points, pixels)`` per region: ``points`` a closed ``(n, 2)`` float POLYLINE (the
        first point repeated last) of (column, row) corners, collinear corners dropped;
        ``pixels`` the region's pixel count. Holes are not outlined.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D, not {mask.ndim}D.")
    labels, count = ndimage.label(mask)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")
    if max_regions is not None:
        order = order[:max_regions]
    objects = ndimage.find_objects(labels)
    outlines = []
    for index in order:
        box = objects[index]
        r0, c0 = box[0].start, box[1].start
        region = np.pad(labels[box] == index + 1, 1)
        loop = _outer_loop(region)
        outlines.append((loop + np.array([c0 - 1, r0 - 1], dtype=float), int(sizes[index])))
    return outlines


def rectangle_outline(c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
    """A closed 5-point POLYLINE around columns ``c0..c1`` and rows ``r0..r1`` (corner coordinates)."""
    return np.array([(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)], dtype=float)


def _outer_loop(region: np.ndarray) -> np.ndarray:
    """The longest closed loop of boundary edges of ``region`` (padded by one pixel of False)."""
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    rows, cols = np.nonzero(region)
    for (a, b, (dr, dc)) in _SIDES:
        outside = ~region[rows + dr, cols + dc]
        for r, c in zip(rows[outside], cols[outside]):
            start = (int(c) + a[0], int(r) + a[1])
            edges.setdefault(start, []).append((int(c) + b[0], int(r) + b[1]))
    loops = []
    while edges:
        start = next(iter(edges))
        loop = [start]
        point = start
        while True:
            targets = edges[point]
            nxt = targets.pop()
            if not targets:
                del edges[point]
            if nxt == start:
                break
            loop.append(nxt)
            point = nxt
            if point not in edges:  # cannot happen for a closed boundary; stop rather than loop
                break
        loops.append(loop)
    loop = max(loops, key=lambda pts: abs(_area(pts)))
    return _closed(_without_collinear(loop))


def _area(points: list[tuple[int, int]]) -> float:
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _without_collinear(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    kept = []
    n = len(points)
    for i, p in enumerate(points):
        before, after = points[i - 1], points[(i + 1) % n]
        cross = (p[0] - before[0]) * (after[1] - p[1]) - (p[1] - before[1]) * (after[0] - p[0])
        if cross != 0:
            kept.append(p)
    return kept or points


def _closed(points: list[tuple[int, int]]) -> np.ndarray:
    return np.asarray([*points, points[0]], dtype=float)


def whole_image_outline(image: object) -> np.ndarray:
    """A closed 5-point POLYLINE around the whole of ``image`` (a Dataset with Rows and Columns):
    the region of a finding about the image as a whole (a classification, an absent finding)."""
    return rectangle_outline(0.0, 0.0, float(image.Columns), float(image.Rows))  # type: ignore[attr-defined]
