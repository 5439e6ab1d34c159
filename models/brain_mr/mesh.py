"""Surface meshes of binary masks by marching tetrahedra, in patient coordinates (numpy).

Marching tetrahedra is the tetrahedral variant of marching cubes: the lattice of voxel
centres is cut into cubes, each cube into six tetrahedra sharing its main diagonal
(Kuhn triangulation), and the iso-surface is triangulated inside each tetrahedron
(one triangle or a quad per tetrahedron, 16 cases, no ambiguous configurations, a
closed surface). The scalar field is the binary mask itself and the iso-level is
:data:`ISO_LEVEL` = 0.6: on an edge from an inside voxel centre to an outside one the
vertex sits 40 % of the way out, so every vertex lies strictly inside the box of an
inside voxel (each coordinate moves less than half a voxel) — the mesh is the mask's
boundary pulled slightly inward, never outside the segmented voxels.
"""
from __future__ import annotations

from itertools import permutations

import numpy as np

__all__ = ["ISO_LEVEL", "marching_tetrahedra", "mesh_volume", "voxel_affine"]

ISO_LEVEL = 0.6
_T = 1.0 - ISO_LEVEL
_TETRAHEDRA = np.array([[0, a, a | b, 7] for a, b, _ in permutations((1, 2, 4))])
_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


def voxel_affine(origin, row_direction, column_direction, slice_vector, pixel_spacing) -> np.ndarray:
    """4x4 matrix from voxel index ``(column, row, slice, 1)`` to patient mm.

    Parameters
    ----------
    origin:
        Image Position (Patient) of slice 0.
    row_direction, column_direction:
        The two direction cosines of Image Orientation (Patient) (along a row, i.e.
        increasing column index; along a column, i.e. increasing row index).
    slice_vector:
        Patient-space step from one slice to the next (mm).
    pixel_spacing:
        ``(row spacing, column spacing)`` in mm (Pixel Spacing order).
    """
    affine = np.eye(4)
    affine[:3, 0] = np.asarray(row_direction, dtype=float) * float(pixel_spacing[1])
    affine[:3, 1] = np.asarray(column_direction, dtype=float) * float(pixel_spacing[0])
    affine[:3, 2] = np.asarray(slice_vector, dtype=float)
    affine[:3, 3] = np.asarray(origin, dtype=float)
    return affine


def marching_tetrahedra(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Triangulate the boundary of ``mask`` ``(slices, rows, columns)``.

    Parameters
    ----------
    mask:
        Boolean volume indexed ``[slice, row, column]``.
    affine:
        4x4 voxel ``(column, row, slice, 1)`` → patient mm (:func:`voxel_affine`).

    Returns
    -------
    numpy.ndarray
        ``(n, 3, 3)`` float64 triangles in patient mm, counter-clockwise seen from
        outside (normals point out of the mask). Empty ``(0, 3, 3)`` for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D, got shape {mask.shape}")
    padded = np.pad(mask, 1)
    ks, is_, js = padded.shape
    corners = np.stack([
        padded[(c >> 2) & 1:ks - 1 + ((c >> 2) & 1), (c >> 1) & 1:is_ - 1 + ((c >> 1) & 1),
               c & 1:js - 1 + (c & 1)]
        for c in range(8)
    ], axis=-1)
    count = corners.sum(axis=-1)
    cube_k, cube_i, cube_j = np.nonzero((count > 0) & (count < 8))
    if cube_k.size == 0:
        return np.zeros((0, 3, 3))
    values = corners[cube_k, cube_i, cube_j].astype(np.int8)  # (m, 8)
    offsets = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=float)
    base = np.stack([cube_j, cube_i, cube_k], axis=1).astype(float) - 1.0  # (column, row, slice)
    positions = base[:, None, :] + offsets[None]  # (m, 8, 3) voxel coordinates
    homogeneous = np.concatenate([positions, np.ones(positions.shape[:2] + (1,))], axis=-1)
    positions = homogeneous @ np.asarray(affine, dtype=float).T
    positions = positions[..., :3]

    triangles = []
    for tet in _TETRAHEDRA:
        b = values[:, tet]  # (m, 4)
        p = positions[:, tet]  # (m, 4, 3)
        n_in = b.sum(axis=1)
        for odd_inside, sel in ((True, n_in == 1), (False, n_in == 3)):
            if not sel.any():
                continue
            bs, ps = b[sel], p[sel]
            o = bs.argmax(axis=1) if odd_inside else bs.argmin(axis=1)
            rows = np.arange(len(o))
            po = ps[rows, o]
            others = ps[rows[:, None], _OTHERS[o]]  # (s, 3, 3)
            if odd_inside:
                tri = po[:, None] + _T * (others - po[:, None])
            else:
                tri = others + _T * (po[:, None] - others)
            triangles.append(_orient(tri, bs, ps))
        sel = n_in == 2
        if sel.any():
            bs, ps = b[sel], p[sel]
            order = np.argsort(-bs, axis=1, kind="stable")
            rows = np.arange(len(order))[:, None]
            inside, outside = ps[rows, order[:, :2]], ps[rows, order[:, 2:]]
            a, bb = inside[:, 0], inside[:, 1]
            c, d = outside[:, 0], outside[:, 1]
            ac, ad = a + _T * (c - a), a + _T * (d - a)
            bd, bc = bb + _T * (d - bb), bb + _T * (c - bb)
            triangles.append(_orient(np.stack([ac, ad, bd], axis=1), bs, ps))
            triangles.append(_orient(np.stack([ac, bd, bc], axis=1), bs, ps))
    return np.concatenate(triangles) if triangles else np.zeros((0, 3, 3))


def mesh_volume(triangles: np.ndarray) -> float:
    """Enclosed volume (mm³) of a closed, outward-oriented triangle mesh."""
    t = np.asarray(triangles, dtype=float)
    if len(t) == 0:
        return 0.0
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def _orient(tri: np.ndarray, inside_flags: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Flip triangles whose normal points into the mask (towards the inside corners)."""
    flags = inside_flags[..., None].astype(float)
    inside_centre = (positions * flags).sum(1) / flags.sum(1)
    outside_centre = (positions * (1 - flags)).sum(1) / (1 - flags).sum(1)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = np.einsum("ij,ij->i", normal, outside_centre - inside_centre) < 0
    tri = tri.copy()
    tri[flip] = tri[flip][:, ::-1]
    return tri
