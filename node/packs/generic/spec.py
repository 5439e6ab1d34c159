"""What a configured model of the generic pack is, and how it travels to a worker.

A worker is told a model by its pack name and its ``weights`` (a path); a generic model's
whole description (:class:`ModelSpec`) travels in that path as ``byom:<base64 JSON>``, so
that a worker needs nothing but its job to load it.
"""
from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENGINES", "FORMATS", "GENERIC_PACK", "ModelSpec", "decode_spec", "encode_spec"]

GENERIC_PACK = "generic"
"""The pack name of every ``[models.NAME]`` that has a ``format``."""

FORMATS = ("command", "monai-bundle", "nnunet")
ENGINES = ("auto", "torch")
_PREFIX = "byom:"

@dataclass(frozen=True)
class ModelSpec:
    """One configured model of the generic pack.

    Parameters
    ----------
    name:
        The model's name (``[models.NAME]``).
    format:
        One of :data:`FORMATS`.
    path:
        The model's folder (bundle or nnU-Net results); for a command, its working folder
        (or empty).
    command:
        The program and its arguments; ``{input}``, ``{output}`` and ``{model}`` are
        replaced by the input folder, the output folder and ``path``.
    engine:
        ``auto`` (ONNX Runtime where the network exports, else as the library runs it) or
        ``torch``.
    timeout_seconds, memory_mb:
        How long the model may run, and how much memory a command may take (0: no limit).
    folds:
        nnU-Net folds to run (ensembled); empty: every ``fold_N`` present.
    version:
        The version written in the results (else the model's metadata's, else ``unversioned``).
    """

    name: str
    format: str
    path: str = ""
    command: tuple[str, ...] = ()
    engine: str = "auto"
    timeout_seconds: float = 600.0
    memory_mb: int = 0
    folds: tuple[int, ...] = ()
    version: str = ""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")


def encode_spec(spec: ModelSpec) -> Path:
    """``spec`` as the ``weights`` path a worker is given (see :func:`decode_spec`)."""
    text = json.dumps(dataclasses.asdict(spec), sort_keys=True).encode("utf-8")
    return Path(_PREFIX + base64.urlsafe_b64encode(text).decode("ascii"))


def decode_spec(weights: Path | str) -> ModelSpec:
    """The :class:`ModelSpec` that :func:`encode_spec` put in ``weights``."""
    text = Path(weights).name
    if not text.startswith(_PREFIX):
        raise ValueError("the generic pack is configured by [models.NAME] format = ..., not by weights")
    raw = json.loads(base64.urlsafe_b64decode(text[len(_PREFIX):].encode("ascii")))
    raw["command"] = tuple(raw.get("command", ()))
    raw["folds"] = tuple(raw.get("folds", ()))
    return ModelSpec(**raw)
