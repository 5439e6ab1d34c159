"""The CXR nodule model pack: the node's view of it."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pydicom import Dataset

from ..radiograph_pack import RadiographPack
from . import preprocess as _steps
from .findings import NoduleFindings
from .report import stream_results, write_results

__all__ = ["CXRNodulePack", "input_size"]


def input_size(meta: Mapping) -> int:
    """The square input size of a model from its ``model.json`` (``input.shape[-1]``; 256 when absent)."""
    shape = (meta.get("input") or {}).get("shape") or []
    try:
        return int(shape[-1])
    except (IndexError, TypeError, ValueError):
        return _steps.MODEL_SIZE


class CXRNodulePack(RadiographPack):
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
    algorithm_name = "ainode CXR nodule U-Net"
    series_number_base = 9020

    def configure(self, meta: Mapping[str, Any]) -> None:
        self.candidate_threshold = float(meta.get("candidate_threshold", 0.2))
        self.score_threshold = float(meta.get("score_threshold", 0.5))
        self.input_size = input_size(meta)

    def preprocess(self, series: Sequence[Dataset]) -> dict[str, np.ndarray]:
        return _steps.preprocess(series, self.input_size)

    def postprocess(self, series: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> NoduleFindings:
        return _steps.postprocess(
            series, outputs,
            candidate_threshold=self.candidate_threshold, score_threshold=self.score_threshold,
            size=self.input_size,
        )

    write_results = staticmethod(write_results)
    """The result objects of a series' findings: :func:`.report.write_results`."""

    stream_results = staticmethod(stream_results)
    """The objects of :meth:`write_results` one by one (SEG, then SR), each as soon as
    it is built (:func:`.report.stream_results`)."""
