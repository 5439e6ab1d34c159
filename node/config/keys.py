"""Reading one key of a TOML table, checked: :class:`ConfigError` names the key when it is wrong.

The section parsers are built from these: a key of the right type or its default, a number
within a field's limits, a port, an AE title, a file, one word of a fixed set.
"""
from __future__ import annotations

import re
from dataclasses import Field
from enum import StrEnum
from pathlib import Path
from typing import Any, Mapping, TypeVar

__all__ = [
    "ConfigError",
    "ae_title",
    "array_of",
    "choice",
    "file_path",
    "get_value",
    "number",
    "only_keys",
    "port_number",
    "table_of",
]

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash

_Choice = TypeVar("_Choice", bound=StrEnum)


class ConfigError(ValueError):
    """A configuration key is missing, unknown or has a wrong value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def table_of(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``raw[key]`` as a table; an empty one when absent."""
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(key, "expected a table")
    return value


def array_of(raw: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """``raw[key]`` as an array of tables (``[[key]]``); an empty one when absent."""
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(key, f"expected an array of tables ([[{key}]])")
    return value


def only_keys(prefix: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    """Refuse the first key of ``table`` that is not in ``allowed``."""
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def get_value(prefix: str, table: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
              default: Any = ...) -> Any:
    """``table[key]``, of type ``kind`` (a bool is no int); ``default`` when absent, required if none."""
    if key not in table:
        if default is ...:
            raise ConfigError(f"{prefix}.{key}", "required key is missing")
        return default
    value = table[key]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
    if not ok:
        names = " or ".join(t.__name__ for t in _as_tuple(kind))
        raise ConfigError(f"{prefix}.{key}", f"expected {names}, got {value!r}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def number(prefix: str, table: Mapping[str, Any], key: str, f: Field[Any]) -> Any:
    """``table[key]`` (default ``f.default``) of the dataclass field ``f``'s type, within its limits."""
    is_float = str(f.type) == "float"
    value = get_value(prefix, table, key, (int, float) if is_float else int, f.default)
    limits = f.metadata
    where = f"{prefix}.{key}"
    if limits.get("gt") is not None and not value > limits["gt"]:
        raise ConfigError(where, f"expected a value > {limits['gt']}, got {value}")
    if limits.get("ge") is not None and not value >= limits["ge"]:
        raise ConfigError(where, f"expected a value >= {limits['ge']}, got {value}")
    if limits.get("le") is not None and not value <= limits["le"]:
        raise ConfigError(where, f"expected a value <= {limits['le']}, got {value}")
    return float(value) if is_float else value


def port_number(where: str, value: int) -> int:
    """``value``, checked to be a TCP port (0..65535)."""
    if not 0 <= value <= 65535:
        raise ConfigError(where, f"expected a port number 0..65535, got {value}")
    return value


def ae_title(where: str, value: str) -> str:
    """``value``, checked to be a DICOM AE title."""
    if not _AE_TITLE.match(value) or not value.strip():
        raise ConfigError(where, f"expected an AE title of 1-16 printable characters, got {value!r}")
    return value


def choice(where: str, value: str, choices: type[_Choice]) -> _Choice:
    """``value`` as a member of ``choices``, or the error that lists them."""
    try:
        return choices(value)
    except ValueError:
        raise ConfigError(where, f"expected one of {', '.join(choices)}, got {value!r}") from None


def file_path(prefix: str, table: Mapping[str, Any], key: str, base_dir: Path | None, *,
              required: bool = False, must_exist: bool = True) -> Path | None:
    """The file named by ``table[key]`` (relative to ``base_dir``), checked to exist unless
    ``must_exist`` is false (a secret mounted at run time); ``None`` when absent."""
    value = get_value(prefix, table, key, str, ... if required else None)
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if must_exist and not path.is_file():
        raise ConfigError(f"{prefix}.{key}", f"{str(path)!r} {'is not a file' if path.exists() else 'does not exist'}")
    return path
