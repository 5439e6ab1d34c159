"""Every engine against the PyTorch reference, on random and phantom inputs.

CPU engines run everywhere; GPU engines are checked where a CUDA GPU and their
libraries are present and are skipped (with the reason) where they are not.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from node.engines import EngineOptions, available_engines, create_engine
from node.packs.registry import PACKS, load_pack
from node.worker import network_module, run_batched

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2
GPU_ENGINES = {"onnxruntime-cuda": FP32_TOLERANCE, "onnxruntime-trt": FP16_TOLERANCE, "tensorrt": FP16_TOLERANCE}


def _packs_with_torch_weights() -> list[str]:
    names = []
    for name in PACKS:
        try:
            pack = load_pack(name)
        except (ImportError, FileNotFoundError):
            continue  # a pack not in this installation
        if pack.model_path().with_suffix(".pt").exists():
            names.append(name)
    return names


PACK_NAMES = _packs_with_torch_weights()


def _random_inputs(model_path: Path, batch: int = 2) -> dict[str, np.ndarray]:
    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    rng = np.random.default_rng(1234)
    inputs = {}
    for tensor in graph.input:
        if tensor.name in initializers:
            continue
        dims = [d.dim_value if d.dim_value > 0 else 64 for d in tensor.type.tensor_type.shape.dim]
        dims[0] = batch
        inputs[tensor.name] = rng.random(dims, dtype=np.float32)
    return inputs


def _relative_error(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> float:
    worst = 0.0
    for name, ref in reference.items():
        scale = max(float(np.abs(ref).max()), 1e-6)
        worst = max(worst, float(np.abs(ref - other[name]).max()) / scale)
    return worst


def _engines(pack_name: str, kind: str):
    pack = load_pack(pack_name)
    options = EngineOptions(network_module=network_module(pack))
    return pack, create_engine("torch", pack.model_path(), options), create_engine(kind, pack.model_path(), options)


def test_some_pack_has_torch_weights():
    assert "head-ct-hematoma" in PACK_NAMES


@pytest.mark.parametrize("pack_name", PACK_NAMES)
def test_onnxruntime_cpu_matches_torch_on_random_inputs(pack_name):
    pack, reference, engine = _engines(pack_name, "onnxruntime-cpu")
    inputs = _random_inputs(pack.model_path())
    assert _relative_error(reference.run(inputs), engine.run(inputs)) <= FP32_TOLERANCE


def test_head_ct_decisions_identical_on_phantoms():
    from models.phantoms.head_ct import generate_head_ct

    pack, reference, engine = _engines("head-ct-hematoma", "onnxruntime-cpu")
    for seed, hematoma in ((1_000_100, True), (1_000_101, False)):
        series = generate_head_ct(seed=seed, slices=8, hematoma=hematoma).datasets
        inputs = pack.preprocess(series)
        ref = pack.postprocess(series, run_batched(reference, inputs, 4))
        out = pack.postprocess(series, run_batched(engine, inputs, 4))
        assert np.array_equal(ref.patch_classes, out.patch_classes)
        assert ref.summary() == out.summary()


@pytest.mark.gpu
@pytest.mark.parametrize("kind", sorted(GPU_ENGINES))
@pytest.mark.parametrize("pack_name", PACK_NAMES)
def test_gpu_engines_match_torch(pack_name, kind):
    if kind not in available_engines():
        pytest.skip(f"{kind} needs a CUDA GPU and its libraries; none here")
    pack, reference, engine = _engines(pack_name, kind)
    inputs = _random_inputs(pack.model_path(), batch=4)
    assert _relative_error(reference.run(inputs), engine.run(inputs)) <= GPU_ENGINES[kind]
