"""ONNX Runtime engines: CPU, CUDA and TensorRT execution providers."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import onnxruntime as ort

__all__ = ["OnnxRuntimeEngine", "PROVIDERS", "available_ort_engines"]

PROVIDERS: dict[str, list] = {
    "onnxruntime-cpu": ["CPUExecutionProvider"],
    "onnxruntime-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "onnxruntime-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
"""Engine name → ONNX Runtime providers, in priority order."""

_NUMPY_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
}

_REQUIRED_PROVIDER = {
    "onnxruntime-cpu": "CPUExecutionProvider",
    "onnxruntime-cuda": "CUDAExecutionProvider",
    "onnxruntime-trt": "TensorrtExecutionProvider",
}


def available_ort_engines() -> list[str]:
    """The ONNX Runtime engines this installation can run (its providers and a GPU)."""
    providers = set(ort.get_available_providers())
    return [name for name, needed in _REQUIRED_PROVIDER.items() if needed in providers]


class OnnxRuntimeEngine:
    """One ONNX graph in an ONNX Runtime session.

    Parameters
    ----------
    model_path:
        The ONNX graph.
    kind:
        ``onnxruntime-cpu``, ``onnxruntime-cuda`` or ``onnxruntime-trt``.
    cache_dir:
        Where the TensorRT provider keeps its engine and timing caches.
    threads:
        Intra-op threads on the CPU (0: ONNX Runtime's default).
    fp16:
        Let the TensorRT provider build FP16 kernels.
    """

    def __init__(
        self, model_path: Path, kind: str = "onnxruntime-cpu", *, cache_dir: Path | None = None,
        threads: int = 0, fp16: bool = True,
    ) -> None:
        if kind not in PROVIDERS:
            raise ValueError(f"unknown ONNX Runtime engine {kind!r}")
        needed = _REQUIRED_PROVIDER[kind]
        if needed not in ort.get_available_providers():
            raise RuntimeError(f"{kind}: ONNX Runtime has no {needed} here (install the gpu extra on a GPU machine)")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers: list = []
        for provider in PROVIDERS[kind]:
            if provider == "TensorrtExecutionProvider":
                cache = Path(cache_dir or Path(model_path).parent / "trt-cache")
                cache.mkdir(parents=True, exist_ok=True)
                providers.append((provider, {
                    "trt_fp16_enable": fp16,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(cache),
                }))
            else:
                providers.append(provider)
        self.name = kind
        self.model_path = Path(model_path)
        self._session = ort.InferenceSession(str(model_path), options, providers=providers)
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self._input_dtypes = {i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in self._session.get_inputs()}

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph; ``inputs`` must hold every graph input by name."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ValueError(f"engine inputs missing: {', '.join(missing)}")
        feeds = {n: np.ascontiguousarray(inputs[n], dtype=self._input_dtypes[n]) for n in self.input_names}
        return dict(zip(self.output_names, self._session.run(self.output_names, feeds)))
