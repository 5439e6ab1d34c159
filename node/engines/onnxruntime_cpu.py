"""ONNX Runtime on the CPU: the embedded default engine."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import onnxruntime as ort

__all__ = ["OnnxRuntimeCPUEngine"]


class OnnxRuntimeCPUEngine:
    """One ONNX graph in an ONNX Runtime session on the CPU provider."""

    name = "onnxruntime-cpu"

    def __init__(self, model_path: Path, threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.model_path = Path(model_path)
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph; ``inputs`` must hold every graph input by name."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ValueError(f"engine inputs missing: {', '.join(missing)}")
        feeds = {n: np.ascontiguousarray(inputs[n]) for n in self.input_names}
        return dict(zip(self.output_names, self._session.run(self.output_names, feeds)))
