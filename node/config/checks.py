"""Checks across keys and sections, once each section is parsed: names unique, routes and models
pointing at things that exist, limits that depend on another key."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ..packs.registry import GENERIC_PACK, PACKS
from .keys import ConfigError
from .models import byom_format
from .schema import Config, DicomTlsConfig, EgressConfig, ModelConfig, NodeConfig, RouteConfig

__all__ = ["EXTRAS", "Extra", "check_backoff", "check_dicom_tls", "check_extras", "check_models", "check_routes",
           "check_unique_names"]


def check_backoff(egress: EgressConfig) -> None:
    """The longest delivery backoff is no shorter than the first one."""
    if egress.backoff_max_seconds < egress.backoff_seconds:
        raise ConfigError("egress.backoff_max_seconds", f"expected a value >= backoff_seconds "
                          f"({egress.backoff_seconds}), got {egress.backoff_max_seconds}")


def check_unique_names(section: str, names: Sequence[str], what: str) -> None:
    """No two entries of ``[[section]]`` share a name (the second one is named)."""
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise ConfigError(f"{section}[{i}].name", f"duplicate {what} {name!r}")


def check_models(models: Mapping[str, ModelConfig]) -> None:
    """Each ``[models.NAME]`` runs a pack the node knows."""
    for name, model in models.items():
        if model.pack not in PACKS and model.pack != GENERIC_PACK:
            raise ConfigError(f"models.{name}.pack", f"unknown model pack {model.pack!r} (known: {', '.join(PACKS)})")


def check_routes(routes: Sequence[RouteConfig], models: Mapping[str, ModelConfig]) -> None:
    """Route names are unique, and each route's model is a ``[models.NAME]`` or a pack."""
    names = [r.name for r in routes]
    for i, route in enumerate(routes):
        first = names.index(route.name)
        if first != i:
            raise ConfigError(f"routes[{i}].name", f"duplicate route {route.name!r} (first at routes[{first}])")
        if route.model not in models and route.model not in PACKS:
            raise ConfigError(f"routes[{i}].model", f"no model or pack named {route.model!r}")


def check_dicom_tls(dicom_tls: DicomTlsConfig | None, node: NodeConfig) -> None:
    """A separate DICOM TLS port is not the plain DICOM port."""
    if dicom_tls is not None and dicom_tls.port is not None and dicom_tls.port == node.dicom_port != 0:
        raise ConfigError("dicom_tls.port", "must differ from node.dicom_port (leave it out for TLS on dicom_port)")


@dataclass(frozen=True)
class Extra:
    """One use of an optional package: the extra that installs it (``pip install 'ainode[NAME]'``),
    the module it must provide, and which keys of a configuration need it (``needed_by`` gives
    the key, or ``None`` when the configuration does not use it)."""

    extra: str
    module: str
    what: str
    needed_by: Callable[[Config], str | None]


def _store_url(config: Config) -> str | None:
    url = config.store.url or ""
    return "store.url" if url.startswith(("postgresql:", "postgres:")) else None


def _engine(*engines: str) -> Callable[[Config], str | None]:
    def needed_by(config: Config) -> str | None:
        for name, model in config.models.items():
            if str(getattr(model.engine, "value", model.engine)) in engines:
                return f"models.{name}.engine"
        return None
    return needed_by


def _format(fmt: str) -> Callable[[Config], str | None]:
    def needed_by(config: Config) -> str | None:
        for name, model in config.models.items():
            if byom_format(model) == fmt:
                return f"models.{name}.format"
        return None
    return needed_by


EXTRAS: tuple[Extra, ...] = (
    Extra("postgres", "psycopg", 'a PostgreSQL job store ([store] url = "postgresql://...")', _store_url),
    Extra("gpu", "tensorrt", 'engine "tensorrt"', _engine("tensorrt")),
    Extra("gpu", "onnxruntime", 'engine "onnxruntime-trt" / "onnxruntime-cuda" (onnxruntime-gpu)',
          _engine("onnxruntime-trt", "onnxruntime-cuda")),
    Extra("gpu", "tritonclient", 'engine "triton"', _engine("triton")),
    Extra("train", "torch", 'engine "torch"', _engine("torch")),
    Extra("byom", "monai", 'format "monai-bundle"', _format("monai-bundle")),
    Extra("byom", "nnunetv2", 'format "nnunet"', _format("nnunet")),
)
"""Extra → module → what in a configuration needs it (``pyproject.toml``'s optional dependencies)."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None in sys.modules
        return False


def check_extras(config: Config) -> None:
    """Refuse a configuration that needs an optional package that is not installed, naming the extra."""
    for extra in EXTRAS:
        key = extra.needed_by(config)
        if key is not None and not _installed(extra.module):
            raise ConfigError(key, f"{extra.what} needs the Python package {extra.module!r}, which is not "
                                   f"installed: pip install 'ainode[{extra.extra}]'")
