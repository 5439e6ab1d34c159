"""Parsing the one-table sections: ``[node]``, the numeric sections, ``[[peers]]``, ``[dicom_tls]``,
``[http]``, ``[store]``, ``[ingest]`` and ``[models.NAME]``.

Each parser takes the TOML table and returns its dataclass, or raises :class:`ConfigError`
naming the key. Checks across sections are in :mod:`node.config.checks`.
"""
from __future__ import annotations

import ipaddress
import urllib.parse
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .choices import EngineName, LogLevel, OnDuplicate
from .keys import ConfigError, ae_title, choice, file_path, get_value, number, only_keys, port_number
from .schema import DicomTlsConfig, HttpConfig, IngestConfig, ModelConfig, NodeConfig, PeerConfig, StoreConfig

__all__ = [
    "parse_dicom_tls",
    "parse_http",
    "parse_ingest",
    "parse_model",
    "parse_node",
    "parse_numbers",
    "parse_peer",
    "parse_store",
]

_Section = TypeVar("_Section")


def parse_node(table: Mapping[str, Any], base_dir: Path) -> NodeConfig:
    """``[node]``; a relative ``data_dir`` is taken from ``base_dir``."""
    p = "node"
    fields = NodeConfig.__dataclass_fields__
    only_keys(p, table, set(fields))
    d = NodeConfig()
    data_dir = Path(get_value(p, table, "data_dir", str, str(d.data_dir)))
    level = get_value(p, table, "log_level", str, d.log_level).upper()
    if level not in tuple(LogLevel):
        raise ConfigError(f"{p}.log_level", f"expected DEBUG, INFO, WARNING or ERROR, got {level!r}")
    return NodeConfig(
        ae_title=ae_title(f"{p}.ae_title", get_value(p, table, "ae_title", str, d.ae_title)),
        dicom_port=port_number(f"{p}.dicom_port", get_value(p, table, "dicom_port", int, d.dicom_port)),
        http_port=port_number(f"{p}.http_port", get_value(p, table, "http_port", int, d.http_port)),
        http_host=get_value(p, table, "http_host", str, d.http_host),
        dicom_host=get_value(p, table, "dicom_host", str, d.dicom_host),
        data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
        log_level=LogLevel(level),
        max_associations=number(p, table, "max_associations", fields["max_associations"]),
        network_timeout_seconds=number(p, table, "network_timeout_seconds", fields["network_timeout_seconds"]),
        accept_unknown_peers=get_value(p, table, "accept_unknown_peers", bool, d.accept_unknown_peers),
        listeners=number(p, table, "listeners", fields["listeners"]),
        shutdown_grace_seconds=number(p, table, "shutdown_grace_seconds", fields["shutdown_grace_seconds"]),
    )


def parse_numbers(prefix: str, table: Mapping[str, Any], cls: type[_Section]) -> _Section:
    """A section of bool, int and float keys; the limits are in each field's metadata."""
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    only_keys(prefix, table, set(fields))
    values = {}
    for name, f in fields.items():
        if str(f.type) == "bool":
            values[name] = get_value(prefix, table, name, bool, f.default)
        else:
            values[name] = number(prefix, table, name, f)
    return cls(**values)


def parse_model(prefix: str, name: str, table: Mapping[str, Any], base_dir: Path) -> ModelConfig:
    """``[models.NAME]``; relative ``weights`` are taken from ``base_dir`` and must exist."""
    if not isinstance(table, Mapping):
        raise ConfigError(prefix, "expected a table")
    only_keys(prefix, table, {"pack", "weights", "engine", "batch_size", "triton_url", "triton_model"})
    weights = get_value(prefix, table, "weights", str, None)
    engine = choice(f"{prefix}.engine", get_value(prefix, table, "engine", str, EngineName.AUTO), EngineName)
    batch = get_value(prefix, table, "batch_size", int, None)
    if batch is not None and batch < 1:
        raise ConfigError(f"{prefix}.batch_size", f"expected a value >= 1, got {batch}")
    triton_url = get_value(prefix, table, "triton_url", str, None)
    if engine == EngineName.TRITON and not triton_url:
        raise ConfigError(f"{prefix}.triton_url", 'required when engine = "triton"')
    weights_path = None
    if weights is not None:
        weights_path = Path(weights) if Path(weights).is_absolute() else base_dir / weights
        if not weights_path.is_file():
            missing = "is not a file" if weights_path.exists() else "does not exist"
            raise ConfigError(f"{prefix}.weights", f"{str(weights_path)!r} {missing}")
    return ModelConfig(
        name=name,
        pack=get_value(prefix, table, "pack", str, name),
        weights=weights_path,
        engine=engine,
        batch_size=batch,
        triton_url=triton_url,
        triton_model=get_value(prefix, table, "triton_model", str, None),
    )


def parse_peer(prefix: str, table: Mapping[str, Any]) -> PeerConfig:
    """One ``[[peers]]`` entry: an AE title, an address or CIDR network, and TLS."""
    only_keys(prefix, table, {"ae_title", "host", "tls", "cert_cn", "sends_whole_series"})
    host = get_value(prefix, table, "host", str)
    try:
        ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ConfigError(f"{prefix}.host", f"expected an IP address or a CIDR network, got {host!r}") from None
    tls = get_value(prefix, table, "tls", bool, False)
    cert_cn = get_value(prefix, table, "cert_cn", str, None)
    if cert_cn is not None and (not tls or not cert_cn.strip()):
        raise ConfigError(f"{prefix}.cert_cn", "expected a non-empty common name, with tls = true")
    return PeerConfig(ae_title=ae_title(f"{prefix}.ae_title", get_value(prefix, table, "ae_title", str)).strip(),
                      host=host, tls=tls, cert_cn=cert_cn,
                      sends_whole_series=get_value(prefix, table, "sends_whole_series", bool, False))


def parse_dicom_tls(table: Any, base_dir: Path) -> DicomTlsConfig:
    """``[dicom_tls]``: certificate, key, optional port and client CA."""
    p = "dicom_tls"
    if not isinstance(table, Mapping):
        raise ConfigError(p, "expected a table")
    only_keys(p, table, {"port", "cert", "key", "ca", "require_client_cert"})
    port = get_value(p, table, "port", int, None)
    ca = file_path(p, table, "ca", base_dir)
    require = get_value(p, table, "require_client_cert", bool, ca is not None)
    if require and ca is None:
        raise ConfigError(f"{p}.ca", "required with require_client_cert = true")
    return DicomTlsConfig(cert=file_path(p, table, "cert", base_dir, required=True),  # type: ignore[arg-type]
                          key=file_path(p, table, "key", base_dir, required=True),  # type: ignore[arg-type]
                          port=None if port is None else port_number(f"{p}.port", port), ca=ca,
                          require_client_cert=require)


def parse_http(table: Mapping[str, Any], base_dir: Path) -> HttpConfig:
    """``[http]``: the API token file, anonymous use, open paths, HTTPS and free text in answers."""
    p = "http"
    only_keys(p, table, {"token_file", "allow_anonymous", "open_paths", "cert", "key", "show_free_text"})
    token_file = file_path(p, table, "token_file", base_dir, must_exist=False)  # read when the node starts
    allow = get_value(p, table, "allow_anonymous", bool, None)
    if token_file is not None and allow:
        raise ConfigError(f"{p}.allow_anonymous", "cannot be true with a token_file")
    open_paths = get_value(p, table, "open_paths", list, list(HttpConfig.open_paths))
    if not all(isinstance(x, str) and x.startswith("/") for x in open_paths):
        raise ConfigError(f"{p}.open_paths", f"expected a list of paths starting with '/', got {open_paths!r}")
    cert, key = file_path(p, table, "cert", base_dir), file_path(p, table, "key", base_dir)
    if (cert is None) != (key is None):
        raise ConfigError(f"{p}.{'key' if key is None else 'cert'}", "cert and key go together")
    free_text = get_value(p, table, "show_free_text", bool, HttpConfig.show_free_text)
    return HttpConfig(token_file=token_file, allow_anonymous=allow, open_paths=tuple(open_paths), cert=cert, key=key,
                      show_free_text=free_text)


def parse_ingest(table: Mapping[str, Any]) -> IngestConfig:
    """``[ingest]``: ``on_duplicate``."""
    only_keys("ingest", table, {"on_duplicate"})
    on_duplicate = get_value("ingest", table, "on_duplicate", str, IngestConfig.on_duplicate)
    return IngestConfig(on_duplicate=choice("ingest.on_duplicate", on_duplicate, OnDuplicate))


def parse_store(table: Mapping[str, Any]) -> StoreConfig:
    """``[store]``: nothing (SQLite), or the ``url`` of a PostgreSQL database without a password in it."""
    only_keys("store", table, {"url"})
    url = get_value("store", table, "url", str, None)
    if url is None:
        return StoreConfig()
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        raise ConfigError("store.url", "a password in the URL; put it in a libpq password file "
                          "(PGPASSFILE or ~/.pgpass) instead")
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ConfigError("store.url", f"expected postgresql://[user@]host[:port]/dbname, got {url!r}"
                          " (leave [store] out for the embedded SQLite store)")
    try:
        parts.port
    except ValueError as exc:
        raise ConfigError("store.url", f"bad port: {exc}") from exc
    return StoreConfig(url=url)
