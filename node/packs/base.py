"""The base class of the model packs: their shared constructor and the defaults of the protocol.

Every pack in :mod:`models` subclasses :class:`PackBase`: it finds the weights (the demo
ones beside the pack's module unless told otherwise), reads their ``model.json``, names
the algorithm, and gives the optional members of :class:`~node.packs.protocol.ModelPack`
their defaults, so that the worker reads each member directly.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

from pydicom import Dataset

from ..dicom.attributes import VOLUME, Attribute
from ..results.algorithm import AlgorithmInfo
from ..results.aside import EncodedObject
from .applicability import ApplicabilityCheck
from .protocol import ResultContext, algorithm_for, read_model_meta

__all__ = ["PackBase"]


class PackBase:
    """Shared constructor and defaults of a model pack.

    A subclass sets ``name``, ``algorithm_name``, ``batch_size`` and
    ``series_number_base``, reads its own settings from ``model.json`` in
    :meth:`configure`, and implements ``preprocess``, ``postprocess`` and
    ``write_results``.

    Parameters
    ----------
    weights:
        An ONNX graph, its ``model.json`` beside it (same stem); ``None`` takes the
        pack's demo weights (:meth:`demo_weights`).
    """

    name: ClassVar[str]
    algorithm_name: ClassVar[str]
    """The algorithm's name in the result objects (see :func:`~node.packs.protocol.algorithm_for`)."""
    batch_size: ClassVar[int]
    series_number_base: ClassVar[int]
    slice_wise: ClassVar[bool] = False
    """Whether preprocessing and the model see one slice at a time (then the node may read ahead)."""
    tolerates_excluded_slices: ClassVar[bool] = False
    """Whether the pack can do without the slices of a series that cannot be placed."""
    required_attributes: ClassVar[tuple[Attribute, ...]] = VOLUME
    """What each image must have (checked at load): by default a cross-sectional series in mm
    (:data:`~node.dicom.attributes.VOLUME`); radiograph packs take
    :data:`~node.dicom.attributes.RADIOGRAPH`."""
    stream_results: ClassVar[Callable[[Sequence[Dataset], Any, ResultContext],
                                      Iterator[Dataset | EncodedObject]] | None] = None
    """``None``, or a method that yields the objects of ``write_results`` one by one."""

    def __init__(self, weights: Path | None = None) -> None:
        self._weights = Path(weights) if weights else self.demo_weights()
        meta = read_model_meta(self._weights)
        self.configure(meta)
        self.algorithm: AlgorithmInfo = algorithm_for(self.algorithm_name, self._weights, meta)
        self.applicability: ApplicabilityCheck | None = ApplicabilityCheck.from_meta(meta)

    @classmethod
    def demo_weights(cls) -> Path:
        """The demo weights of the pack: ``weights/model.onnx`` beside the module of its class."""
        return Path(inspect.getfile(cls)).with_name("weights") / "model.onnx"

    def configure(self, meta: Mapping[str, Any]) -> None:
        """Take the pack's own settings from ``meta`` (its ``model.json``); none by default."""

    def model_path(self) -> Path:
        """Path of the ONNX graph this pack runs."""
        return self._weights
