"""Engines: one interface (:class:`node.pipeline.Engine`), several backends."""
from __future__ import annotations

from pathlib import Path

from ..pipeline import Engine
from .onnxruntime_cpu import OnnxRuntimeCPUEngine

__all__ = ["create_engine", "ENGINE_NAMES"]

ENGINE_NAMES = ("auto", "onnxruntime-cpu")


def create_engine(kind: str, model_path: Path) -> Engine:
    """An engine of ``kind`` for the ONNX graph at ``model_path``.

    ``auto`` takes the fastest engine present; on a machine without a GPU that is
    ONNX Runtime on the CPU.
    """
    if kind not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {kind!r} (known: {', '.join(ENGINE_NAMES)})")
    return OnnxRuntimeCPUEngine(model_path)
