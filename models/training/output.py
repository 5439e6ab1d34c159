"""What a training run writes beside the ONNX graph: its folder, ``model.pt``, ``model.json``, the version."""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Mapping

__all__ = ["dated_version", "output_folder", "save_weights", "timestamp_version", "write_json"]


def output_folder(out_dir: Path) -> Path:
    """``out_dir`` as a :class:`~pathlib.Path`, created (with its parents) when missing."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def timestamp_version(version: str | None) -> str:
    """``version``, or ``phantom-YYYYmmddHHMMSS`` (UTC, now)."""
    return version or _dt.datetime.now(_dt.timezone.utc).strftime("phantom-%Y%m%d%H%M%S")


def dated_version(version: str | None) -> str:
    """``version``, or ``0.1.0-phantom+YYYYmmdd`` (today)."""
    return version or f"0.1.0-phantom+{_dt.date.today():%Y%m%d}"


def write_json(path: Path, meta: Mapping[str, Any]) -> Path:
    """Write ``meta`` as indented JSON (with a final newline) to ``path``; returns ``path``."""
    path = Path(path)
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def save_weights(net: Any, path: Path) -> None:
    """Save ``net``'s state dict (``model.pt``)."""
    import torch

    torch.save(net.state_dict(), path)
