"""onnxruntime CPU sessions for the evaluations of a trained graph."""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["onnx_session"]


def onnx_session(model_path: Path, threads: int | None = None) -> Any:
    """A CPU session of ``model_path``; with ``threads``, that many intra-op threads and one inter-op."""
    import onnxruntime as ort

    if threads is None:
        return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
