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
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from ..dicom.attributes import Attribute
from ..dicom.placement import PlacedSeries, place_slices, sort_slices
from ..results.algorithm import AlgorithmInfo
from ..results.aside import Aside, InlineAside

__all__ = [
    "AlgorithmInfo", "Engine", "ModelPack", "PlacedSeries", "ResultContext", "algorithm_for", "place_slices",
    "read_model_meta", "sort_slices",
]
# AlgorithmInfo, PlacedSeries, place_slices and sort_slices are re-exported for the packs:
# they live in node.results.algorithm and node.dicom.placement.


@dataclass(frozen=True)
class ResultContext:
    """What the node tells a pack about where its results go.

    ``series_number_base`` is the first Series Number the pack may use; each kind of
    result object takes the next one. ``aside`` builds an object in a helper process
    while the pack builds the others (see :mod:`node.results.aside`); by default, at once.
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
    """One model: its preprocessing, its graph, its postprocessing and its result writers.

    :class:`node.packs.base.PackBase` holds the shared constructor, :meth:`model_path`
    and the defaults of ``slice_wise``, ``tolerates_excluded_slices``, ``required_attributes``
    and ``stream_results``.
    """

    name: str
    """Name used in ``[[routes]] model = ...``, e.g. ``"head-ct-hematoma"``."""

    algorithm: AlgorithmInfo
    batch_size: int
    series_number_base: int
    """First Series Number of this pack's result series (each pack has its own range)."""
    slice_wise: bool
    """Preprocessing and the model see one slice at a time (no volume-wide step): the node
    may run them on a series' slices as they arrive (see :mod:`node.worker.slice_cache`)."""
    tolerates_excluded_slices: bool
    """A slice that cannot be placed may be left out; otherwise the job fails (the model
    needs the whole volume)."""
    required_attributes: tuple[Attribute, ...]
    """The attributes every image must have, as this pack uses them (see
    :mod:`node.dicom.attributes`): checked when the series is loaded, so that an input the
    pack cannot use fails at ``load`` naming the attribute, its tag and what is wrong."""
    stream_results: Callable[[Sequence[Dataset], Any, ResultContext], Iterator[Any]] | None
    """``None``, or the objects of :meth:`write_results` one by one (same arguments), every
    object after those it references, each as soon as it is built."""
    applicability: Any
    """``None`` (not calibrated), or the :class:`~node.packs.applicability.ApplicabilityCheck`
    of the weights' ``model.json``: scores how far a job's preprocessed input is from the
    phantoms the model was validated on."""

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
