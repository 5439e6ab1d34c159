"""The CXR pneumonia model pack: the node's view of it."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pydicom import Dataset

from ..radiograph_pack import RadiographPack
from . import preprocess as _steps
from .findings import PneumoniaFindings
from .report import write_results

__all__ = ["CXRPneumoniaPack"]


class CXRPneumoniaPack(RadiographPack):
    """Pneumonia classifier (GAP + linear head) with its Grad-CAM heatmap.

    Parameters
    ----------
    weights:
        An ONNX graph with input ``image`` and outputs ``probability`` and ``features``;
        its ``model.json`` beside it gives version, DeviceUID, the decision threshold and
        the linear head's weights (``head.weight``). ``None`` takes the demo weights.
    """

    name = "cxr-pneumonia"
    algorithm_name = "ainode CXR pneumonia Grad-CAM"
    series_number_base = 9030

    def configure(self, meta: Mapping[str, Any]) -> None:
        self.threshold = float(meta.get("threshold", 0.5))
        self.head_weights = np.asarray(meta.get("head", {}).get("weight", []), dtype=np.float32)

    def preprocess(self, series: Sequence[Dataset]) -> dict[str, np.ndarray]:
        return _steps.preprocess(series)

    def postprocess(self, series: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> PneumoniaFindings:
        if self.head_weights.size == 0:
            raise ValueError(f"{self._weights.with_suffix('.json')} lacks the head weights (head.weight)")
        return _steps.postprocess(series, outputs, head_weights=self.head_weights, threshold=self.threshold)

    write_results = staticmethod(write_results)
    """The result objects of a series' findings: :func:`.report.write_results`."""
