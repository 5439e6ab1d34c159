"""Configuration: the TOML file, its defaults and its validation.

A wrong key or value stops the node with a :class:`ConfigError` naming the key, e.g.
``routes[0].match.Modality: expected a string, a list of strings or "re:..."``.

Where things live: :mod:`.schema` (one frozen dataclass per section), :mod:`.choices` (the
fixed sets of words, as string enums), :mod:`.keys` (reading one key, checked),
:mod:`.sections`, :mod:`.destinations` and :mod:`.routes` (parsing each section),
:mod:`.checks` (checks across sections), :mod:`.parse` (the whole file, and the embedded
defaults in ``defaults.toml``).
"""
from __future__ import annotations

from .checks import EXTRAS, check_extras
from .choices import DestinationType, EngineName, LogLevel, OnDuplicate, OnLate, Priority, RouteLevel
from .destinations import parse_destination as _parse_destination  # noqa: F401  (tests import it)
from .keys import ConfigError
from .parse import DEFAULT_CONFIG_TOML, load_config, parse_config
from .schema import (
    AssemblerConfig,
    Config,
    DestinationConfig,
    DicomTlsConfig,
    EgressConfig,
    HttpConfig,
    IngestConfig,
    ModelConfig,
    NodeConfig,
    PeerConfig,
    PriorityFrom,
    RouteConfig,
    RunnerConfig,
    SpoolConfig,
    StoreConfig,
)

__all__ = [
    "EXTRAS",
    "AssemblerConfig",
    "Config",
    "ConfigError",
    "check_extras",
    "DestinationConfig",
    "DestinationType",
    "DicomTlsConfig",
    "EgressConfig",
    "EngineName",
    "HttpConfig",
    "IngestConfig",
    "LogLevel",
    "ModelConfig",
    "NodeConfig",
    "OnDuplicate",
    "OnLate",
    "PeerConfig",
    "Priority",
    "PriorityFrom",
    "RouteConfig",
    "RouteLevel",
    "RunnerConfig",
    "SpoolConfig",
    "StoreConfig",
    "DEFAULT_CONFIG_TOML",
    "load_config",
    "parse_config",
]
