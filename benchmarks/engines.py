"""``ainode bench engines``: latency and throughput of every engine present, vs PyTorch eager."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.progress import progress
from benchmarks.results import markdown_table

__all__ = ["run_engines"]


def _inputs(model_path: Any, batch: int) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = {}
    for tensor in session.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else 64 for d in tensor.shape]
        dims[0] = batch
        inputs[tensor.name] = rng.random(dims, dtype=np.float32)
    return inputs


def run_engines(model: str, batch: int, iterations: int = 20, warmup: int = 3,
                engines: list[str] | None = None) -> tuple[str, dict[str, dict[str, float]]]:
    """Time ``iterations`` batches per engine; returns the markdown body and the figures."""
    from node.engines import EngineOptions, available_engines, create_engine
    from node.packs.registry import load_pack
    from node.worker import network_module

    pack = load_pack(model)
    names = engines or available_engines()
    if "torch" in names:
        names = ["torch"] + [n for n in names if n != "torch"]
    inputs = _inputs(pack.model_path(), batch)
    options = EngineOptions(network_module=network_module(pack), max_batch=max(batch, 32))
    figures: dict[str, dict[str, float]] = {}
    for name in progress(names, f"engines: {model}"):
        engine = create_engine(name, pack.model_path(), options)
        for _ in range(warmup):
            engine.run(inputs)
        latencies = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            engine.run(inputs)
            latencies.append(time.perf_counter() - t0)
        lat = np.asarray(latencies)
        figures[name] = {
            "p50_ms": float(np.percentile(lat, 50) * 1000),
            "p95_ms": float(np.percentile(lat, 95) * 1000),
            "items_per_s": float(batch / lat.mean()),
        }
    base = figures.get("torch")
    rows = []
    for name, f in figures.items():
        ratio = f"{base['p50_ms'] / f['p50_ms']:.2f}×" if base else "–"
        rows.append([name, f"{f['p50_ms']:.1f}", f"{f['p95_ms']:.1f}", f"{f['items_per_s']:.1f}", ratio])
    shape = " ".join(f"`{k}` {tuple(v.shape)}" for k, v in inputs.items())
    body = (
        f"Model `{model}`, batch {batch} ({shape}), {iterations} timed runs after {warmup} warm-up runs, "
        "same random input for every engine. Ratio = PyTorch eager p50 / engine p50 "
        "(above 1: faster than PyTorch).\n\n"
        + markdown_table(["engine", "p50 (ms)", "p95 (ms)", "items/s", "vs torch eager"], rows)
    )
    return body, figures
