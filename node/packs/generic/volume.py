"""A series as a volume with its geometry, and label images mapped back onto its voxels.

The node's volume is ``(slice, row, column)``, slices sorted along the normal; its
``affine`` takes ``(column, row, slice, 1)`` to patient LPS mm. Libraries that read NIfTI
(MONAI, nibabel) index ``[column, row, slice]`` with a RAS affine: :func:`to_ras` and
:func:`labels_on_series` convert between the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pydicom import Dataset

__all__ = ["LPS_TO_RAS", "Volume", "labels_on_series", "series_affine", "series_volume", "to_ras"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    """Pixel values ``(slice, row, column)`` (float32, rescaled) and the LPS affine of ``(column, row, slice)``."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """``(slice, row, column)`` spacing in mm."""
        col, row, sl = (float(np.linalg.norm(self.affine[:3, i])) for i in range(3))
        return (sl, row, col)

    @property
    def voxel_ml(self) -> float:
        """The volume of one voxel in mL."""
        return abs(float(np.linalg.det(self.affine[:3, :3]))) / 1000.0


def series_volume(series: Sequence[Dataset]) -> Volume:
    """The sorted single-frame ``series`` as a :class:`Volume` (Modality LUT applied).

    Raises
    ------
    ValueError
        When the series lacks Pixel Spacing, orientation or positions.
    """
    data = np.stack([_rescaled(ds) for ds in series]).astype(np.float32)
    return Volume(data, series_affine(series))


def series_affine(series: Sequence[Dataset]) -> np.ndarray:
    """The LPS affine of ``(column, row, slice)`` of the sorted ``series`` (see :class:`Volume`)."""
    first = series[0]
    try:
        iop = np.asarray(first.ImageOrientationPatient, dtype=float)
        row_mm, col_mm = (float(v) for v in first.PixelSpacing)
        origin = np.asarray(first.ImagePositionPatient, dtype=float)
    except AttributeError as exc:
        raise ValueError(f"a generic model needs a volume with geometry; the series lacks {exc.args[0]}") from None
    normal = np.cross(iop[:3], iop[3:])
    if len(series) > 1:
        last = np.asarray(series[-1].ImagePositionPatient, dtype=float)
        step = (last - origin) / (len(series) - 1)
    else:
        step = normal * float(getattr(first, "SpacingBetweenSlices", None) or first.get("SliceThickness", 1.0) or 1.0)
    affine = np.eye(4)
    affine[:3, 0] = iop[:3] * col_mm
    affine[:3, 1] = iop[3:] * row_mm
    affine[:3, 2] = step
    affine[:3, 3] = origin
    return affine


def _rescaled(ds: Dataset) -> np.ndarray:
    pixels = ds.pixel_array.astype(np.float32)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    return pixels * slope + float(ds.get("RescaleIntercept", 0.0) or 0.0)


def to_ras(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` as NIfTI readers see it: data ``[column, row, slice]`` and its RAS affine."""
    return np.ascontiguousarray(volume.data.transpose(2, 1, 0)), LPS_TO_RAS @ volume.affine


def labels_on_series(labels: np.ndarray, ras_affine: np.ndarray, volume: Volume) -> np.ndarray:
    """A label image ``[i, j, k]`` with its RAS affine, on the voxels of ``volume`` ``(slice, row, column)``.

    Each voxel of the series takes the label of the nearest label voxel (outside the label
    image: 0). A label image on the series' own grid (in any axis order) is taken as it is.
    """
    labels = np.asarray(labels)
    while labels.ndim > 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.ndim != 3:
        raise ValueError(f"a label image must be 3D, got shape {labels.shape}")
    # series voxel (column, row, slice) -> label voxel (i, j, k)
    to_label = np.linalg.inv(np.asarray(ras_affine, float)) @ LPS_TO_RAS @ volume.affine
    n_slices, rows, cols = volume.data.shape
    out = np.zeros((n_slices, rows, cols), dtype=np.int32)
    c, r = np.meshgrid(np.arange(cols), np.arange(rows), indexing="xy")
    for s in range(n_slices):
        points = np.stack([c.ravel(), r.ravel(), np.full(c.size, s), np.ones(c.size)])
        ijk = np.rint(to_label @ points)[:3].astype(np.int64)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(labels.shape)[:, None]), axis=0)
        plane = np.zeros(c.size, dtype=np.int32)
        plane[inside] = labels[ijk[0, inside], ijk[1, inside], ijk[2, inside]]
        out[s] = plane.reshape(rows, cols)
    return out
