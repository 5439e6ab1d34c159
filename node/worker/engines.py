"""This worker's packs and engines, loaded once and kept for every job that runs on them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..engines import EngineOptions, create_engine
from ..packs.protocol import Engine, ModelPack
from ..packs.registry import load_pack
from .spec import JobSpec

__all__ = ["engine_cache_key", "engine_for", "model_key", "network_module", "pack_for", "run_batched"]

_PACKS: dict[tuple[str, str | None], ModelPack] = {}
_ENGINES: dict[tuple[Any, ...], Engine] = {}
"""This process's engines, by :func:`model_key`."""


def pack_for(name: str, weights: str | None) -> ModelPack:
    """The pack ``name`` with ``weights`` (its demo weights when ``None``), loaded once per process."""
    key = (name, weights)
    if key not in _PACKS:
        _PACKS[key] = load_pack(name, Path(weights) if weights else None)
    return _PACKS[key]


def engine_cache_key(spec: JobSpec) -> tuple[Any, ...]:
    """Every field of ``spec`` that selects the engine it runs on (not the job's own data).

    Two models that differ in any of them (e.g. two Triton models on one server) get
    their own engine; ``triton_model`` unset means the model's name, as in :func:`engine_for`.
    """
    return (
        spec.model, spec.pack, spec.weights, spec.engine, spec.batch_size, spec.engine_cache_dir,
        spec.triton_url, spec.triton_model or spec.model,
    )


def model_key(spec: JobSpec, pack: ModelPack) -> tuple[Any, ...]:
    """Every field that selects the engine and the weights ``spec`` runs on."""
    return (*engine_cache_key(spec), str(pack.model_path()))


def engine_for(spec: JobSpec, pack: ModelPack) -> Engine:
    """The engine ``spec`` runs ``pack`` on, created once per process and :func:`model_key`."""
    key = model_key(spec, pack)
    if key not in _ENGINES:
        options = EngineOptions(
            cache_dir=Path(spec.engine_cache_dir) if spec.engine_cache_dir else None,
            network_module=network_module(pack),
            triton_url=spec.triton_url,
            triton_model=spec.triton_model or spec.model,
        )
        own = getattr(pack, "create_engine", None)  # a pack that runs its model itself (the generic pack)
        _ENGINES[key] = own(spec.engine) if callable(own) else create_engine(spec.engine, pack.model_path(), options)
    return _ENGINES[key]


def network_module(pack: ModelPack) -> str:
    """The module with ``build_network`` next to the pack (``models.<pack>.net``)."""
    return type(pack).__module__.rsplit(".", 1)[0] + ".net"


def run_batched(engine: Engine, inputs: dict[str, np.ndarray], batch_size: int,
                between: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """Run ``inputs`` through ``engine`` in batches along axis 0 and concatenate the outputs.

    ``between`` is called before every batch but the first (a job's safe point: it may raise).
    """
    n = len(next(iter(inputs.values())))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, max(1, batch_size)):
        if between is not None and start:
            between()
        parts.append(engine.run({k: v[start:start + batch_size] for k, v in inputs.items()}))
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
