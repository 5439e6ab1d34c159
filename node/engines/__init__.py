"""Engines: one interface (:class:`node.packs.protocol.Engine`), several backends.

=================  ==========================================================
``tensorrt``       native TensorRT, FP16, engine cached on disk (GPU)
``onnxruntime-trt``  ONNX Runtime with the TensorRT execution provider (GPU)
``onnxruntime-cuda`` ONNX Runtime with the CUDA execution provider (GPU)
``onnxruntime-cpu``  ONNX Runtime on the CPU: everywhere, the embedded default
``torch``          PyTorch eager: the reference (``train`` extra)
``triton``         a remote Triton Inference Server (``tritonclient``)
``auto``           the fastest of the first four that works here
=================  ==========================================================
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..logs import log
from ..packs.protocol import Engine

__all__ = ["AUTO_ORDER", "ENGINE_NAMES", "EngineOptions", "available_engines", "create_engine"]

_logger = logging.getLogger("ainode.engines")

ENGINE_NAMES = ("auto", "tensorrt", "onnxruntime-trt", "onnxruntime-cuda", "onnxruntime-cpu", "torch", "triton")
AUTO_ORDER = ("tensorrt", "onnxruntime-trt", "onnxruntime-cuda", "onnxruntime-cpu")
"""What ``auto`` tries, fastest first."""


@dataclass(frozen=True)
class EngineOptions:
    """Everything an engine may need besides the ONNX graph."""

    cache_dir: Path | None = None
    network_module: str | None = None
    triton_url: str | None = None
    triton_model: str | None = None
    max_batch: int = 32
    threads: int = 0


def available_engines() -> list[str]:
    """The local engines that can run here (``auto`` candidates and ``torch``)."""
    from .onnxruntime import available_ort_engines
    from .tensorrt_native import tensorrt_available
    from .torch_eager import torch_available

    found = ["tensorrt"] if tensorrt_available() else []
    found += [e for e in ("onnxruntime-trt", "onnxruntime-cuda", "onnxruntime-cpu") if e in available_ort_engines()]
    if torch_available():
        found.append("torch")
    return found


def create_engine(kind: str, model_path: Path, options: EngineOptions | None = None) -> Engine:
    """An engine of ``kind`` for the ONNX graph at ``model_path``.

    ``auto`` tries :data:`AUTO_ORDER` and takes the first engine that builds; a GPU
    engine that fails to build is logged and skipped, ONNX Runtime on the CPU always
    remains.
    """
    options = options or EngineOptions()
    if kind not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {kind!r} (known: {', '.join(ENGINE_NAMES)})")
    if kind != "auto":
        return _create(kind, Path(model_path), options)
    present = available_engines()
    for candidate in AUTO_ORDER:
        if candidate not in present:
            continue
        try:
            return _create(candidate, Path(model_path), options)
        except Exception as exc:
            if candidate == "onnxruntime-cpu":
                raise
            log(_logger, logging.WARNING, "engine unavailable, trying the next", engine=candidate, reason=repr(exc))
    raise RuntimeError("no engine can run here")


def _create(kind: str, model_path: Path, options: EngineOptions) -> Engine:
    if kind.startswith("onnxruntime-"):
        from .onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(model_path, kind, cache_dir=options.cache_dir, threads=options.threads)
    if kind == "tensorrt":
        from .tensorrt_native import TensorRTEngine

        return TensorRTEngine(model_path, options.cache_dir, max_batch=options.max_batch)
    if kind == "torch":
        from .torch_eager import TorchEngine

        if not options.network_module:
            raise ValueError("the torch engine needs the pack's network module")
        return TorchEngine(model_path, options.network_module, threads=options.threads)
    from .triton import TritonEngine

    if not options.triton_url or not options.triton_model:
        raise ValueError("the triton engine needs triton_url and a model name")
    return TritonEngine(options.triton_url, options.triton_model)
