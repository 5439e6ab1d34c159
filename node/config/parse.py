"""Reading the configuration: a TOML file (or the embedded defaults) to a checked :class:`Config`.

The embedded defaults are ``defaults.toml`` beside this module, shipped as package data.
"""
from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .checks import check_backoff, check_dicom_tls, check_extras, check_models, check_routes, check_unique_names
from .destinations import parse_destination
from .keys import ConfigError, array_of, only_keys, table_of
from .models import is_byom_table, parse_byom_model
from .routes import parse_route
from .schema import AssemblerConfig, Config, EgressConfig, RunnerConfig, SpoolConfig
from .sections import (parse_dicom_tls, parse_http, parse_ingest, parse_model, parse_node, parse_numbers,
                       parse_peer, parse_store)

__all__ = ["DEFAULT_CONFIG_TOML", "load_config", "parse_config"]

DEFAULT_CONFIG_TOML: str = resources.files(__package__).joinpath("defaults.toml").read_text(encoding="utf-8")
"""The embedded defaults: what ``ainode serve`` runs without ``--config``."""

_SECTIONS = {"node", "assembler", "egress", "spool", "runner", "destinations", "sources", "routes",
             "models", "peers", "dicom_tls", "http", "store", "ingest"}


def load_config(path: Path | None) -> Config:
    """Read and validate ``path``; ``None`` gives the embedded defaults.

    Relative paths in the file (``data_dir``, ``weights``) are taken relative to the
    file's folder.
    """
    if path is None:
        return parse_config(tomllib.loads(DEFAULT_CONFIG_TOML), base_dir=Path.cwd())
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    return parse_config(raw, base_dir=Path(path).resolve().parent)


def parse_config(raw: Mapping[str, Any], base_dir: Path) -> Config:
    """Validate a parsed TOML document and build a :class:`Config`."""
    only_keys("", raw, _SECTIONS)
    node = parse_node(table_of(raw, "node"), base_dir)
    assembler = parse_numbers("assembler", table_of(raw, "assembler"), AssemblerConfig)
    egress = parse_numbers("egress", table_of(raw, "egress"), EgressConfig)
    check_backoff(egress)
    spool = parse_numbers("spool", table_of(raw, "spool"), SpoolConfig)
    runner = parse_numbers("runner", table_of(raw, "runner"), RunnerConfig)
    destinations = tuple(
        parse_destination(f"destinations[{i}]", item, base_dir) for i, item in enumerate(array_of(raw, "destinations"))
    )
    check_unique_names("destinations", [d.name for d in destinations], "destination")
    sources = tuple(
        dataclasses.replace(parse_destination(f"sources[{i}]", item, base_dir), calling_ae_title=node.ae_title)
        for i, item in enumerate(array_of(raw, "sources"))
    )
    check_unique_names("sources", [s.name for s in sources], "source")
    models = {name: (parse_byom_model if is_byom_table(item) else parse_model)(f"models.{name}", name, item, base_dir)
              for name, item in table_of(raw, "models").items()}
    names = {d.name for d in destinations}
    routes = tuple(parse_route(f"routes[{i}]", item, names) for i, item in enumerate(array_of(raw, "routes")))
    check_models(models)
    check_routes(routes, models)
    peers = tuple(parse_peer(f"peers[{i}]", item) for i, item in enumerate(array_of(raw, "peers")))
    dicom_tls = parse_dicom_tls(raw["dicom_tls"], base_dir) if "dicom_tls" in raw else None
    check_dicom_tls(dicom_tls, node)
    http = parse_http(table_of(raw, "http"), base_dir)
    config = Config(node, assembler, egress, spool, destinations, routes, models, runner, sources,
                    peers, dicom_tls, http, store=parse_store(table_of(raw, "store")),
                    ingest=parse_ingest(table_of(raw, "ingest")))
    check_extras(config)  # a configuration that needs an optional package not installed: refused, naming the extra
    return config
