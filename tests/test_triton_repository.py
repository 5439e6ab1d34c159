"""The Triton model repository export, and the Triton engine against a live server when one is given."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from node.cli import main


def test_export_triton_writes_a_loadable_repository(tmp_path: Path):
    assert main(["models", "export-triton", str(tmp_path), "--max-batch", "16"]) == 0
    config = (tmp_path / "head-ct-hematoma" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config
    assert "max_batch_size: 16" in config
    assert re.search(r'name: "image"\s+data_type: TYPE_FP32\s+dims: \[ 2, 512, 512 \]', config)
    assert re.search(r'name: "logits"\s+data_type: TYPE_FP32\s+dims: \[ 4, 32, 32 \]', config)
    assert (tmp_path / "head-ct-hematoma" / "1" / "model.onnx").stat().st_size > 100_000


@pytest.mark.skipif(not os.environ.get("AINODE_TRITON_URL"), reason="no Triton server given (AINODE_TRITON_URL)")
def test_triton_engine_matches_onnxruntime_cpu():
    from node.engines import EngineOptions, create_engine
    from node.packs.registry import load_pack

    pack = load_pack("head-ct-hematoma")
    inputs = {"image": np.random.default_rng(0).random((2, 2, 512, 512), dtype=np.float32)}
    local = create_engine("onnxruntime-cpu", pack.model_path()).run(inputs)
    remote = create_engine("triton", pack.model_path(), EngineOptions(
        triton_url=os.environ["AINODE_TRITON_URL"], triton_model="head-ct-hematoma")).run(inputs)
    scale = np.abs(local["logits"]).max()
    assert np.abs(local["logits"] - remote["logits"]).max() / scale <= 1e-4
