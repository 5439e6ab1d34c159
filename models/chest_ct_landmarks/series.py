"""Reading a sorted chest CT series: HU volume, slice spacing and pixel spacing (numpy and pydicom only)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut

__all__ = ["pixel_spacing", "series_hu", "slice_spacing"]

_FALLBACK_SPACING_MM = 4.0
"""Slice spacing of a series that gives neither positions nor Slice Thickness (the context distance)."""


def series_hu(series: Sequence[Dataset]) -> np.ndarray:
    """``(n, rows, cols)`` float32 HU of a sorted single-frame series.

    Raises
    ------
    ValueError
        If the series is empty, multi-frame, or its slices differ in size.
    """
    if len(series) == 0:
        raise ValueError("empty series")
    shape = (int(series[0].Rows), int(series[0].Columns))
    out = np.empty((len(series), *shape), dtype=np.float32)
    for i, ds in enumerate(series):
        if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
            raise ValueError(f"chest-ct-landmarks needs single-frame slices; {ds.SOPInstanceUID} has several frames")
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise ValueError(f"slice {i} is {ds.Rows}x{ds.Columns}, slice 0 is {shape[0]}x{shape[1]}")
        out[i] = apply_modality_lut(ds.pixel_array, ds)
    return out


def slice_spacing(series: Sequence[Dataset]) -> float:
    """Median distance (mm) between neighbouring slice centres; Slice Thickness as fallback."""
    try:
        iop = np.asarray(series[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        z = np.array([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float))) for ds in series])
        if len(z) > 1:
            d = float(np.median(np.abs(np.diff(z))))
            if d > 0:
                return d
    except (AttributeError, ValueError, TypeError):
        pass
    return float(getattr(series[0], "SliceThickness", _FALLBACK_SPACING_MM) or _FALLBACK_SPACING_MM)


def pixel_spacing(series: Sequence[Dataset]) -> float:
    """Mean of the two Pixel Spacing values (mm) of the first slice; 1.0 when absent."""
    try:
        values = [float(v) for v in series[0].PixelSpacing]
        if len(values) == 2 and min(values) > 0:
            return (values[0] + values[1]) / 2.0
    except (AttributeError, ValueError, TypeError):
        pass
    return 1.0
