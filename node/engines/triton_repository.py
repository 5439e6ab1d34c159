"""A Triton Inference Server model repository for every installed pack.

``<out>/<pack>/config.pbtxt`` and ``<out>/<pack>/1/model.onnx``: ONNX Runtime backend,
dynamic batching, input and output shapes read from the graph.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import onnxruntime as ort

from ..packs.registry import PACKS, load_pack

__all__ = ["export_repository", "triton_config"]

_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(int64)": "TYPE_INT64"}


def _tensors(items: list, kind: str) -> str:
    blocks = []
    for item in items:
        dims = ", ".join(str(d) if isinstance(d, int) and d > 0 else "-1" for d in item.shape[1:])
        blocks.append(f'  {{\n    name: "{item.name}"\n    data_type: {_TYPES.get(item.type, "TYPE_FP32")}\n'
                      f"    dims: [ {dims} ]\n  }}")
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]"


def triton_config(name: str, model_path: Path, max_batch: int = 32) -> str:
    """``config.pbtxt`` text for the ONNX graph at ``model_path`` (axis 0 is the batch)."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return "\n".join([
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch}",
        _tensors(session.get_inputs(), "input"),
        _tensors(session.get_outputs(), "output"),
        "dynamic_batching { }",
        "instance_group [ { kind: KIND_AUTO } ]",
        "",
    ])


def export_repository(out: Path, max_batch: int = 32) -> list[Path]:
    """Write the repository; returns the config files written. Packs not installed, or
    without weights, are left out."""
    written = []
    for name in PACKS:
        try:
            pack = load_pack(name)
        except (ImportError, FileNotFoundError):
            continue
        if not pack.model_path().exists():
            continue
        version_dir = Path(out) / name / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pack.model_path(), version_dir / "model.onnx")
        config = Path(out) / name / "config.pbtxt"
        config.write_text(triton_config(name, pack.model_path(), max_batch))
        written.append(config)
    return written
