"""Parsing a ``[[destinations]]`` or ``[[sources]]`` entry: a DIMSE peer, or an HTTP archive
(DICOMweb, Orthanc) with its credentials files."""
from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any, Mapping

from .choices import DestinationType
from .keys import ConfigError, ae_title, file_path, get_value, only_keys, port_number
from .schema import DestinationConfig

__all__ = ["parse_destination"]


def parse_destination(prefix: str, table: Mapping[str, Any], base_dir: Path | None = None) -> DestinationConfig:
    """One ``[[destinations]]`` table; relative secret files are taken from ``base_dir``."""
    kind = get_value(prefix, table, "type", str, DestinationType.DIMSE)
    if kind not in DestinationConfig.TYPES:
        expected = ", ".join(f'"{t}"' for t in DestinationConfig.TYPES)
        raise ConfigError(f"{prefix}.type", f"expected one of {expected}, got {kind!r}")
    kind = DestinationType(kind)
    only_keys(prefix, table, {"name", "type", *DestinationConfig.KEYS[kind]})
    name = get_value(prefix, table, "name", str)
    if kind == DestinationType.DIMSE:
        return _dimse(prefix, name, table, base_dir)
    return _http(prefix, name, kind, table, base_dir)


def _dimse(prefix: str, name: str, table: Mapping[str, Any], base_dir: Path | None) -> DestinationConfig:
    """A ``dimse`` entry: host, port, AE title, and optional DICOM TLS files."""
    tls = get_value(prefix, table, "tls", bool, False)
    files = {key: file_path(prefix, table, key, base_dir) for key in ("ca", "cert", "key")}
    if not tls and any(files.values()):
        raise ConfigError(f"{prefix}.tls", "ca, cert and key need tls = true")
    if (files["cert"] is None) != (files["key"] is None):
        raise ConfigError(f"{prefix}.{'key' if files['key'] is None else 'cert'}", "cert and key go together")
    return DestinationConfig(
        name=name,
        type=DestinationType.DIMSE,
        host=get_value(prefix, table, "host", str),
        port=port_number(f"{prefix}.port", get_value(prefix, table, "port", int)),
        ae_title=ae_title(f"{prefix}.ae_title", get_value(prefix, table, "ae_title", str)),
        tls=tls, **files,
    )


def _http(prefix: str, name: str, kind: DestinationType, table: Mapping[str, Any],
          base_dir: Path | None) -> DestinationConfig:
    """A ``dicomweb`` or ``orthanc`` entry: its URL, and a token file or a user name + password file."""
    if "url" not in table:
        raise ConfigError(f"{prefix}.url", f'required when type = "{kind}"')
    url = get_value(prefix, table, "url", str)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{prefix}.url", f"expected an http:// or https:// URL with a host, got {url!r}")
    try:
        parts.port
    except ValueError as exc:
        raise ConfigError(f"{prefix}.url", f"{exc} in {url!r}") from None
    username = get_value(prefix, table, "username", str, None)
    secrets: dict[str, Path | None] = {}
    for key in ("token_file", "password_file"):  # only the path is kept: read at send time, it may rotate
        value = get_value(prefix, table, key, str, None)
        if value == "":
            raise ConfigError(f"{prefix}.{key}", "expected a file path, got ''")
        path = None if value is None else Path(value)
        secrets[key] = path if path is None or path.is_absolute() or base_dir is None else base_dir / path
    token_file, password_file = secrets["token_file"], secrets["password_file"]
    if username is not None and not username:
        raise ConfigError(f"{prefix}.username", "expected a non-empty user name")
    if username is not None and password_file is None:
        raise ConfigError(f"{prefix}.password_file", "required with username")
    if password_file is not None and username is None:
        raise ConfigError(f"{prefix}.username", "required with password_file")
    if token_file is not None and username is not None:
        raise ConfigError(f"{prefix}.token_file", "give either token_file or username + password_file, not both")
    return DestinationConfig(name=name, type=kind, url=url.rstrip("/"), token_file=token_file, username=username,
                             password_file=password_file)
