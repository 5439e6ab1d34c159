"""The model-pack interface: what the node asks of every model pack.

A model pack turns one series into result objects in three explicit steps::

    inputs   = pack.preprocess(series)            # numpy arrays, named like the ONNX inputs
    outputs  = engine.run(inputs)                 # numpy arrays, named like the ONNX outputs
    findings = pack.postprocess(series, outputs)  # pack-specific findings object
    objects  = pack.write_results(series, findings, context)  # pydicom Datasets

Model packs know nothing of networking; the node knows nothing of anatomy.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from node.aside import Aside, InlineAside
from node.frames import frame_number

__all__ = [
    "AlgorithmInfo", "Engine", "ModelPack", "PlacedSeries", "ResultContext", "algorithm_for", "place_slices",
    "read_model_meta", "sort_slices",
]


@dataclass(frozen=True)
class AlgorithmInfo:
    """Identity of a model as written into every result object.

    Parameters
    ----------
    name:
        Human-readable algorithm name (Algorithm Name, Manufacturer Model Name).
    version:
        Algorithm version (Algorithm Version, Software Versions).
    device_uid:
        A UID that identifies these exact weights; it changes when the model is retrained.
    manufacturer:
        Who made the algorithm.
    """

    name: str
    version: str
    device_uid: str
    manufacturer: str = "ainode"


@dataclass(frozen=True)
class ResultContext:
    """What the node tells a pack about where its results go.

    ``series_number_base`` is the first Series Number the pack may use; each kind of
    result object takes the next one. ``aside`` builds an object in a helper process
    while the pack builds the others (see :mod:`node.aside`); by default, at once.
    ``series_uid_for(series_number)`` is the Series Instance UID the node gives that
    result series (the worker's are stable across runs of a series; by default, fresh):
    a pack that takes it saves the node re-writing the UIDs in objects built aside.
    """

    algorithm: AlgorithmInfo
    series_number_base: int = 9000
    extra: Mapping[str, Any] = field(default_factory=dict)
    aside: Aside = field(default_factory=InlineAside)
    series_uid_for: Callable[[int], str] = field(default=lambda _number: str(generate_uid()))


@runtime_checkable
class Engine(Protocol):
    """Runs one ONNX graph. Inputs and outputs are dicts of numpy arrays by tensor name."""

    name: str

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on ``inputs`` (batched along axis 0) and return all outputs."""
        ...


@runtime_checkable
class ModelPack(Protocol):
    """One model: its preprocessing, its graph, its postprocessing and its result writers."""

    name: str
    """Name used in ``[[routes]] model = ...``, e.g. ``"head-ct-hematoma"``."""

    algorithm: AlgorithmInfo
    batch_size: int
    series_number_base: int
    """First Series Number of this pack's result series (each pack has its own range)."""

    def model_path(self) -> Path:
        """Path of the ONNX graph this pack runs."""
        ...

    def preprocess(self, series: Sequence[Dataset]) -> dict[str, np.ndarray]:
        """Turn the sorted series into engine inputs (axis 0 = slice)."""
        ...

    def postprocess(self, series: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> Any:
        """Turn engine outputs for the whole series into the pack's findings."""
        ...

    def write_results(
        self, series: Sequence[Dataset], findings: Any, context: ResultContext
    ) -> list[Dataset]:
        """Build the DICOM result objects (SEG, SR, SC ...) for ``findings``."""
        ...


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


def read_model_meta(weights: Path) -> dict[str, Any]:
    """The ``model.json`` beside an ONNX graph (same stem), or ``{}`` when there is none."""
    meta_path = Path(weights).with_suffix(".json")
    return json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}


def algorithm_for(name: str, weights: Path, meta: Mapping[str, Any]) -> AlgorithmInfo:
    """The :class:`AlgorithmInfo` of ``weights``.

    Version and DeviceUID come from ``meta`` (``model.json``); weights without them get
    version ``"unversioned"`` and a DeviceUID derived from the graph's SHA-256, so that
    other weights always carry another DeviceUID.
    """
    device_uid = meta.get("device_uid")
    if not device_uid:
        digest = hashlib.sha256(Path(weights).read_bytes()).digest()
        device_uid = f"2.25.{uuid.UUID(bytes=digest[:16]).int}"
    return AlgorithmInfo(name=name, version=str(meta.get("version", "unversioned")), device_uid=str(device_uid))
