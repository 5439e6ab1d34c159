"""``[models.NAME]`` tables with a ``format``: models the project did not write (the generic pack).

::

    [models.spleen]
    format = "monai-bundle"        # or "nnunet", or "command"
    path = "/models/spleen_ct_segmentation"
    engine = "auto"                # "auto": the network on ONNX Runtime; "torch": as the bundle runs it

    [models.vendor-tool]
    format = "command"
    command = ["/opt/tool/run", "{input}", "{output}"]
    timeout_seconds = 600          # commands only: then its process group is killed
    memory_mb = 4096

Each is checked when the configuration is read: a missing folder or file, an unknown format
or a program that is not there is a one-line :class:`~.keys.ConfigError` naming the key.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

from ..packs.generic.spec import ENGINES, FORMATS, GENERIC_PACK, ModelSpec, decode_spec, encode_spec
from .choices import EngineName
from .keys import ConfigError, get_value, only_keys
from .schema import ModelConfig

__all__ = ["byom_format", "is_byom_table", "parse_byom_model"]

_KEYS = {"format", "path", "command", "engine", "timeout_seconds", "memory_mb", "folds", "version"}


def is_byom_table(table: Any) -> bool:
    """Whether a ``[models.NAME]`` table describes a model of the generic pack (it has ``format``)."""
    return isinstance(table, Mapping) and "format" in table


def parse_byom_model(prefix: str, name: str, table: Mapping[str, Any], base_dir: Path) -> ModelConfig:
    """A ``[models.NAME]`` with ``format``, checked (see the module's docstring)."""
    only_keys(prefix, table, _KEYS)
    fmt = get_value(prefix, table, "format", str)
    if fmt not in FORMATS:
        raise ConfigError(f"{prefix}.format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    engine = get_value(prefix, table, "engine", str, "auto")
    if engine not in ENGINES:
        raise ConfigError(f"{prefix}.engine", f"expected one of {', '.join(ENGINES)} for format {fmt!r}, got {engine!r}")
    timeout = float(get_value(prefix, table, "timeout_seconds", (int, float), 600.0))
    if timeout <= 0:
        raise ConfigError(f"{prefix}.timeout_seconds", f"expected a value > 0, got {timeout:g}")
    memory = get_value(prefix, table, "memory_mb", int, 0)
    if memory < 0:
        raise ConfigError(f"{prefix}.memory_mb", f"expected a value >= 0 (0: no limit), got {memory}")
    folds = get_value(prefix, table, "folds", list, [])
    if not all(isinstance(f, int) and f >= 0 for f in folds):
        raise ConfigError(f"{prefix}.folds", f"expected fold numbers (integers >= 0), got {folds!r}")
    path = _folder(prefix, table, base_dir, required=fmt != "command")
    command: tuple[str, ...] = ()
    if fmt == "command":
        command = _command(prefix, table, base_dir)
    elif "command" in table:
        raise ConfigError(f"{prefix}.command", f'only for format = "command", not {fmt!r}')
    elif fmt == "monai-bundle":
        _check_bundle(prefix, path)
    else:
        _check_nnunet(prefix, path, folds)
    spec = ModelSpec(name=name, format=fmt, path=str(path) if path else "", command=command, engine=engine,
                     timeout_seconds=timeout, memory_mb=memory, folds=tuple(folds),
                     version=get_value(prefix, table, "version", str, ""))
    return ModelConfig(name=name, pack=GENERIC_PACK, weights=encode_spec(spec), engine=EngineName.AUTO)


def _folder(prefix: str, table: Mapping[str, Any], base_dir: Path, *, required: bool) -> Path | None:
    raw = get_value(prefix, table, "path", str, None)
    if raw is None:
        if required:
            raise ConfigError(f"{prefix}.path", f"required for format {table['format']!r} (the model's folder)")
        return None
    path = Path(raw) if Path(raw).is_absolute() else base_dir / raw
    if not path.is_dir():
        raise ConfigError(f"{prefix}.path", f"{str(path)!r} {'is not a folder' if path.exists() else 'does not exist'}")
    return path.resolve()


def _command(prefix: str, table: Mapping[str, Any], base_dir: Path) -> tuple[str, ...]:
    command = get_value(prefix, table, "command", list)
    if not command or not all(isinstance(part, str) for part in command):
        raise ConfigError(f"{prefix}.command", 'expected ["program", "{input}", "{output}", ...] (strings)')
    program = command[0]
    if "/" in program:
        resolved = Path(program) if Path(program).is_absolute() else (base_dir / program).resolve()
        if not resolved.is_file():
            raise ConfigError(f"{prefix}.command", f"program {str(resolved)!r} does not exist")
        program = str(resolved)
    elif shutil.which(program) is None:
        raise ConfigError(f"{prefix}.command", f"program {program!r} is not on PATH")
    return (program, *command[1:])


def _check_bundle(prefix: str, path: Path | None) -> None:
    assert path is not None
    configs = path / "configs"
    for name in ("metadata.json",):
        if not (configs / name).is_file():
            raise ConfigError(f"{prefix}.path", f"not a MONAI bundle: {str(configs / name)!r} does not exist")
    if not any((configs / f"inference.{ext}").is_file() for ext in ("json", "yaml", "yml")):
        raise ConfigError(f"{prefix}.path", f"not a MONAI bundle: no configs/inference.json in {str(path)!r}")
    if not any((path / "models" / f).is_file() for f in ("model.pt", "model.ts")):
        raise ConfigError(f"{prefix}.path", f"MONAI bundle {str(path)!r} has no models/model.pt or models/model.ts")


def _check_nnunet(prefix: str, path: Path | None, folds: list[int]) -> None:
    assert path is not None
    for name in ("dataset.json", "plans.json"):
        if not (path / name).is_file():
            raise ConfigError(f"{prefix}.path", f"not an nnU-Net v2 results folder: {str(path / name)!r} does not exist")
    present = sorted(int(p.parent.name[5:]) for p in path.glob("fold_*/checkpoint_final.pth")
                     if p.parent.name[5:].isdigit())
    missing = [f for f in folds if f not in present]
    if not present or missing:
        which = f"fold_{missing[0]}" if missing else "fold_N"
        raise ConfigError(f"{prefix}.path", f"nnU-Net folder {str(path)!r} has no {which}/checkpoint_final.pth")


def byom_format(model: ModelConfig) -> str | None:
    """The ``format`` of a generic-pack model, ``None`` for a built-in pack."""
    if model.pack != GENERIC_PACK or model.weights is None:
        return None
    return decode_spec(model.weights).format
