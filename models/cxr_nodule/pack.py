"""The CXR nodule model pack: the node's view of it."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
from pydicom import Dataset

from node.results.aside import EncodedObject
from node.packs.protocol import ResultContext, algorithm_for, read_model_meta

from . import preprocess as _steps
from .findings import NoduleFindings
from .report import stream_results, write_results

__all__ = ["CXRNodulePack", "DEMO_WEIGHTS", "input_size"]

DEMO_WEIGHTS = Path(__file__).with_name("weights") / "model.onnx"


def input_size(meta: Mapping) -> int:
    """The square input size of a model from its ``model.json`` (``input.shape[-1]``; 256 when absent)."""
    shape = (meta.get("input") or {}).get("shape") or []
    try:
        return int(shape[-1])
    except (IndexError, TypeError, ValueError):
        return _steps.MODEL_SIZE


class CXRNodulePack:
    """U-Net nodule segmentation on a chest radiograph; detections = connected components.

    Parameters
    ----------
    weights:
        An ONNX graph with input ``image`` ``(N, 2, S, S)`` and output ``logits``
        ``(N, 1, S, S)``; its ``model.json`` beside it gives version, DeviceUID, the input
        size ``S`` (``input.shape``, 256 when absent), the candidate threshold and the
        reporting score threshold. ``None`` takes the demo weights trained on phantoms.
    """

    name = "cxr-nodule"
    batch_size = 4
    series_number_base = 9020

    def __init__(self, weights: Path | None = None) -> None:
        self._weights = Path(weights) if weights else DEMO_WEIGHTS
        meta = read_model_meta(self._weights)
        self.candidate_threshold = float(meta.get("candidate_threshold", 0.2))
        self.score_threshold = float(meta.get("score_threshold", 0.5))
        self.input_size = input_size(meta)
        self.algorithm = algorithm_for("ainode CXR nodule U-Net", self._weights, meta)

    def model_path(self) -> Path:
        return self._weights

    def preprocess(self, series: Sequence[Dataset]) -> dict[str, np.ndarray]:
        return _steps.preprocess(series, self.input_size)

    def postprocess(self, series: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> NoduleFindings:
        return _steps.postprocess(
            series, outputs,
            candidate_threshold=self.candidate_threshold, score_threshold=self.score_threshold,
            size=self.input_size,
        )

    def write_results(self, series: Sequence[Dataset], findings: NoduleFindings, context: ResultContext) -> list[Dataset]:
        return write_results(series, findings, context)

    def stream_results(
        self, series: Sequence[Dataset], findings: NoduleFindings, context: ResultContext
    ) -> Iterator[Dataset | EncodedObject]:
        """The objects of :meth:`write_results` one by one (SEG, then SR), each as soon as it is built."""
        return stream_results(series, findings, context)
