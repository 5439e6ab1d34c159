"""Slice placement: the slices of a volume in order along their normal, and those that cannot be placed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pydicom import Dataset

from .frames import frame_number

__all__ = ["PlacedSeries", "place_slices", "sort_slices"]


def sort_slices(datasets: Sequence[Dataset]) -> list[Dataset]:
    """Sort the slices of a series along the normal of their orientation.

    Falls back to Instance Number when a slice lacks geometry.
    """
    def _position(ds: Dataset) -> float:
        try:
            iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
            ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        except (AttributeError, TypeError, ValueError):
            return _instance_number(ds)
        normal = np.cross(iop[:3], iop[3:])
        return float(np.dot(normal, ipp))

    return sorted(datasets, key=_position)


@dataclass(frozen=True)
class PlacedSeries:
    """The slices of a series in order, and those that could not be placed (with why)."""

    slices: list[Dataset]
    excluded: list[tuple[str, str]]  # (SOP Instance UID, reason)


def place_slices(datasets: Sequence[Dataset]) -> PlacedSeries:
    """Order the slices of a volume, setting aside those that cannot be placed.

    A slice whose orientation or position cannot be read (garbled, wrong length, not
    finite) while the others have geometry is excluded, and so is a second slice at the
    position of an earlier one (by Instance Number). Series without geometry (radiographs,
    multi-frame objects) are ordered by Instance Number, as :func:`sort_slices` does.
    """
    geometry = {id(ds): _geometry(ds) for ds in datasets}
    with_geometry = [ds for ds in datasets if not isinstance(geometry[id(ds)], str)]
    if len(with_geometry) < 2:
        return PlacedSeries(sort_slices(datasets), [])
    excluded = [(_uid(ds), str(geometry[id(ds)])) for ds in datasets if isinstance(geometry[id(ds)], str)]
    placed: list[Dataset] = []
    seen: list[float] = []
    for ds in sorted(with_geometry, key=lambda d: _instance_number(d)):
        position = float(geometry[id(ds)])  # type: ignore[arg-type]
        if any(abs(position - other) < 1e-3 for other in seen):
            excluded.append((_uid(ds), f"duplicate position {position:.3f} mm"))
            continue
        seen.append(position)
        placed.append(ds)
    return PlacedSeries(sorted(placed, key=lambda d: float(geometry[id(d)])), excluded)  # type: ignore[arg-type]


def _geometry(ds: Dataset) -> float | str:
    """The slice's position along its normal, or why it has none."""
    try:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
    except AttributeError:
        return "no ImageOrientationPatient/ImagePositionPatient"
    except Exception as exc:  # garbled values: pydicom raises many kinds, on access
        return f"unreadable geometry ({type(exc).__name__})"
    if iop.shape != (6,) or ipp.shape != (3,) or not (np.all(np.isfinite(iop)) and np.all(np.isfinite(ipp))):
        return "geometry with wrong length or not finite"
    normal = np.cross(iop[:3], iop[3:])
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 1e-6:
        return "degenerate ImageOrientationPatient"
    return float(np.dot(normal, ipp))


def _instance_number(ds: Dataset) -> float:
    try:
        return float(ds.get("InstanceNumber") or 0)
    except (TypeError, ValueError):
        return 0.0


def _uid(ds: Dataset) -> str:
    number = frame_number(ds)
    uid = str(ds.get("SOPInstanceUID", "?"))
    return uid if number is None else f"{uid} frame {number}"
