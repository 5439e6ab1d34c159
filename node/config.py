"""Configuration: the TOML file, its defaults and its validation.

A wrong key or value stops the node with a :class:`ConfigError` naming the key, e.g.
``routes[0].match.Modality: expected a string, a list of strings or "re:..."``.
"""
from __future__ import annotations

import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from .packs import PACKS

__all__ = [
    "AssemblerConfig",
    "Config",
    "ConfigError",
    "DestinationConfig",
    "EgressConfig",
    "ModelConfig",
    "NodeConfig",
    "RouteConfig",
    "RunnerConfig",
    "SpoolConfig",
    "DEFAULT_CONFIG_TOML",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_TOML = """\
[node]
ae_title = "AINODE"
dicom_port = 11112
http_port = 8080
data_dir = "var"
max_associations = 32
network_timeout_seconds = 30

[assembler]
quiet_seconds = 10

[egress]
max_attempts = 10
backoff_seconds = 2.0
backoff_max_seconds = 300.0

[spool]
retention_hours = 72
min_free_mb = 512
min_free_percent = 2
max_dataset_mb = 1024

[runner]
workers = 1
lease_seconds = 60

[[destinations]]
name = "pacs"
type = "dimse"
host = "127.0.0.1"
port = 4242
ae_title = "ORTHANC"

[[routes]]
name = "head-ct"
model = "head-ct-hematoma"
destinations = ["pacs"]
match = { Modality = "CT", BodyPartExamined = "HEAD" }

[[routes]]
name = "chest-ct"
model = "chest-ct-landmarks"
destinations = ["pacs"]
match = { Modality = "CT", BodyPartExamined = "CHEST" }

[[routes]]
name = "cxr-nodule"
model = "cxr-nodule"
destinations = ["pacs"]
match = { Modality = ["DX", "CR"], BodyPartExamined = "CHEST" }

[[routes]]
name = "cxr-pneumonia"
model = "cxr-pneumonia"
destinations = ["pacs"]
match = { Modality = ["DX", "CR"], BodyPartExamined = "CHEST" }

[[routes]]
name = "brain-mr"
model = "brain-mr"
destinations = ["pacs"]
match = { Modality = "MR", BodyPartExamined = "BRAIN", SeriesDescription = "re:^T1" }
"""
"""The embedded defaults: what ``ainode serve`` runs without ``--config``."""

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash
_ENGINES = ("auto", "tensorrt", "onnxruntime-trt", "onnxruntime-cuda", "onnxruntime-cpu", "torch", "triton")


class ConfigError(ValueError):
    """A configuration key is missing, unknown or has a wrong value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def _limited(default: Any, *, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:
    """A dataclass field whose configured value must be > ``gt``, >= ``ge`` and <= ``le``."""
    return field(default=default, metadata={"gt": gt, "ge": ge, "le": le})


@dataclass(frozen=True)
class NodeConfig:
    ae_title: str = "AINODE"
    dicom_port: int = 11112
    http_port: int = 8080
    http_host: str = "127.0.0.1"
    dicom_host: str = "0.0.0.0"
    data_dir: Path = Path("var")
    log_level: str = "INFO"
    max_associations: int = _limited(32, ge=1)
    """Concurrent DICOM associations the listener accepts."""
    network_timeout_seconds: float = _limited(30.0, gt=0)
    """Idle/read timeout after which a silent DICOM connection is closed."""


@dataclass(frozen=True)
class AssemblerConfig:
    quiet_seconds: float = _limited(10.0, ge=0)
    poll_seconds: float = _limited(0.5, gt=0)
    early_completion: bool = True


@dataclass(frozen=True)
class SpoolConfig:
    retention_hours: float = _limited(72.0, ge=0)
    """0 keeps everything."""
    sweep_seconds: float = _limited(600.0, gt=0)
    min_free_mb: float = _limited(512.0, ge=0)
    """C-STORE answers Out of Resources when less than this is free on the spool's disk..."""
    min_free_percent: float = _limited(2.0, ge=0, le=100)
    """...or less than this percentage of it."""
    max_dataset_mb: float = _limited(1024.0, gt=0)
    """The largest dataset accepted (for Deflated data: its inflated size)."""


@dataclass(frozen=True)
class EgressConfig:
    max_attempts: int = _limited(10, ge=1)
    backoff_seconds: float = _limited(2.0, gt=0)
    backoff_max_seconds: float = _limited(300.0, gt=0)
    timeout_seconds: float = _limited(30.0, gt=0)


@dataclass(frozen=True)
class RunnerConfig:
    workers: int = _limited(1, ge=1)
    """Worker processes running jobs."""
    lease_seconds: float = _limited(60.0, gt=0)
    """How long a claimed job or delivery is held before another worker may take it back
    (after a crash of the one holding it)."""


@dataclass(frozen=True)
class DestinationConfig:
    """A ``[[destinations]]`` entry: where results go, and how.

    ``type`` picks the protocol: ``dimse`` (C-STORE to ``host``, ``port``, ``ae_title``),
    ``dicomweb`` (STOW-RS to ``url``, the DICOMweb root; auth by ``token_file`` (bearer)
    or ``username`` + ``password_file`` (basic)) or ``orthanc`` (Orthanc's REST API at
    ``url``; ``username`` + ``password_file``). Secrets are files, read at send time.
    """

    name: str
    host: str | None = None
    port: int | None = None
    ae_title: str | None = None
    type: str = "dimse"
    url: str | None = None
    token_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None

    TYPES: ClassVar[tuple[str, ...]] = ("dimse", "dicomweb", "orthanc")
    KEYS: ClassVar[Mapping[str, frozenset[str]]] = {
        "dimse": frozenset({"host", "port", "ae_title"}),
        "dicomweb": frozenset({"url", "token_file", "username", "password_file"}),
        "orthanc": frozenset({"url", "username", "password_file"}),
    }
    """The keys each type takes besides ``name`` and ``type``."""


@dataclass(frozen=True)
class RouteConfig:
    name: str
    model: str
    destinations: tuple[str, ...]
    match: Mapping[str, tuple[str, ...] | re.Pattern[str]]
    quiet_seconds: float | None = None
    expected_instances: int | None = None
    on_late: str = "rerun"
    """What an image that arrives after the series' job ran does: ``rerun`` the job on the
    whole series (the new results go into the same result series), or ``ignore`` it."""


_ON_LATE = ("rerun", "ignore")
_SOURCE_TYPES = ("dicomweb", "orthanc")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    pack: str
    weights: Path | None = None
    engine: str = "auto"
    batch_size: int | None = None
    triton_url: str | None = None
    triton_model: str | None = None


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    assembler: AssemblerConfig = field(default_factory=AssemblerConfig)
    egress: EgressConfig = field(default_factory=EgressConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    destinations: tuple[DestinationConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    sources: tuple[DestinationConfig, ...] = ()
    """``[[sources]]``: archives the node retrieves studies from on request (``dicomweb`` or
    ``orthanc``; the same keys as a destination of that type)."""

    def source(self, name: str) -> DestinationConfig:
        """The source called ``name``."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def destination(self, name: str) -> DestinationConfig:
        """The destination called ``name``."""
        for dest in self.destinations:
            if dest.name == name:
                return dest
        raise KeyError(name)

    def model(self, name: str) -> ModelConfig:
        """The model called ``name``; a model without a table runs the pack of that name."""
        return self.models.get(name) or ModelConfig(name=name, pack=name)


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
    _only_keys("", raw, {"node", "assembler", "egress", "spool", "runner", "destinations", "sources", "routes",
                         "models"})
    node = _parse_node(_table(raw, "node"), base_dir)
    assembler = _parse_dataclass("assembler", _table(raw, "assembler"), AssemblerConfig)
    egress = _parse_dataclass("egress", _table(raw, "egress"), EgressConfig)
    if egress.backoff_max_seconds < egress.backoff_seconds:
        raise ConfigError("egress.backoff_max_seconds", f"expected a value >= backoff_seconds "
                          f"({egress.backoff_seconds}), got {egress.backoff_max_seconds}")
    spool = _parse_dataclass("spool", _table(raw, "spool"), SpoolConfig)
    runner = _parse_dataclass("runner", _table(raw, "runner"), RunnerConfig)
    destinations = tuple(
        _parse_destination(f"destinations[{i}]", item, base_dir)
        for i, item in enumerate(_array(raw, "destinations"))
    )
    names = [d.name for d in destinations]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise ConfigError(f"destinations[{i}].name", f"duplicate destination {name!r}")
    sources = tuple(
        _parse_destination(f"sources[{i}]", item, base_dir) for i, item in enumerate(_array(raw, "sources"))
    )
    source_names = [s.name for s in sources]
    for i, source in enumerate(sources):
        if source.type not in _SOURCE_TYPES:
            raise ConfigError(f"sources[{i}].type", f"expected one of {', '.join(_SOURCE_TYPES)}, got {source.type!r}")
        if source_names.index(source.name) != i:
            raise ConfigError(f"sources[{i}].name", f"duplicate source {source.name!r}")
    models = {
        name: _parse_model(f"models.{name}", name, item, base_dir)
        for name, item in _table(raw, "models").items()
    }
    routes = tuple(
        _parse_route(f"routes[{i}]", item, set(names)) for i, item in enumerate(_array(raw, "routes"))
    )
    for name, model in models.items():
        if model.pack not in PACKS:
            raise ConfigError(f"models.{name}.pack", f"unknown model pack {model.pack!r} (known: {', '.join(PACKS)})")
    route_names = [r.name for r in routes]
    for i, route in enumerate(routes):
        first = route_names.index(route.name)
        if first != i:
            raise ConfigError(f"routes[{i}].name", f"duplicate route {route.name!r} (first at routes[{first}])")
        if route.model not in models and route.model not in PACKS:
            raise ConfigError(f"routes[{i}].model", f"no model or pack named {route.model!r}")
    return Config(node, assembler, egress, spool, destinations, routes, models, runner, sources)


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(key, "expected a table")
    return value


def _array(raw: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(key, f"expected an array of tables ([[{key}]])")
    return value


def _only_keys(prefix: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _get(prefix: str, table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
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


def _number(prefix: str, table: Mapping[str, Any], key: str, f: Any) -> Any:
    """``table[key]`` (default ``f.default``) of the dataclass field ``f``'s type, within its limits."""
    is_float = str(f.type) == "float"
    value = _get(prefix, table, key, (int, float) if is_float else int, f.default)
    limits = f.metadata
    where = f"{prefix}.{key}"
    if limits.get("gt") is not None and not value > limits["gt"]:
        raise ConfigError(where, f"expected a value > {limits['gt']}, got {value}")
    if limits.get("ge") is not None and not value >= limits["ge"]:
        raise ConfigError(where, f"expected a value >= {limits['ge']}, got {value}")
    if limits.get("le") is not None and not value <= limits["le"]:
        raise ConfigError(where, f"expected a value <= {limits['le']}, got {value}")
    return float(value) if is_float else value


def _port(prefix: str, value: int) -> int:
    if not 0 <= value <= 65535:
        raise ConfigError(prefix, f"expected a port number 0..65535, got {value}")
    return value


def _ae_title(prefix: str, value: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ConfigError(prefix, f"expected an AE title of 1-16 printable characters, got {value!r}")
    return value


def _parse_node(table: Mapping[str, Any], base_dir: Path) -> NodeConfig:
    p = "node"
    fields = NodeConfig.__dataclass_fields__
    _only_keys(p, table, set(fields))
    d = NodeConfig()
    data_dir = Path(_get(p, table, "data_dir", str, str(d.data_dir)))
    level = _get(p, table, "log_level", str, d.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{p}.log_level", f"expected DEBUG, INFO, WARNING or ERROR, got {level!r}")
    return NodeConfig(
        ae_title=_ae_title(f"{p}.ae_title", _get(p, table, "ae_title", str, d.ae_title)),
        dicom_port=_port(f"{p}.dicom_port", _get(p, table, "dicom_port", int, d.dicom_port)),
        http_port=_port(f"{p}.http_port", _get(p, table, "http_port", int, d.http_port)),
        http_host=_get(p, table, "http_host", str, d.http_host),
        dicom_host=_get(p, table, "dicom_host", str, d.dicom_host),
        data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
        log_level=level,
        max_associations=_number(p, table, "max_associations", fields["max_associations"]),
        network_timeout_seconds=_number(p, table, "network_timeout_seconds", fields["network_timeout_seconds"]),
    )


def _parse_dataclass(prefix: str, table: Mapping[str, Any], cls: type) -> Any:
    """A section of bool, int and float keys; the limits are in each field's metadata."""
    fields = cls.__dataclass_fields__
    _only_keys(prefix, table, set(fields))
    values = {}
    for name, f in fields.items():
        if str(f.type) == "bool":
            values[name] = _get(prefix, table, name, bool, f.default)
        else:
            values[name] = _number(prefix, table, name, f)
    return cls(**values)


def _parse_destination(prefix: str, table: Mapping[str, Any], base_dir: Path | None = None) -> DestinationConfig:
    """One ``[[destinations]]`` table; relative secret files are taken from ``base_dir``."""
    kind = _get(prefix, table, "type", str, "dimse")
    if kind not in DestinationConfig.TYPES:
        expected = ", ".join(f'"{t}"' for t in DestinationConfig.TYPES)
        raise ConfigError(f"{prefix}.type", f"expected one of {expected}, got {kind!r}")
    _only_keys(prefix, table, {"name", "type", *DestinationConfig.KEYS[kind]})
    name = _get(prefix, table, "name", str)
    if kind == "dimse":
        return DestinationConfig(
            name=name,
            type=kind,
            host=_get(prefix, table, "host", str),
            port=_port(f"{prefix}.port", _get(prefix, table, "port", int)),
            ae_title=_ae_title(f"{prefix}.ae_title", _get(prefix, table, "ae_title", str)),
        )
    if "url" not in table:
        raise ConfigError(f"{prefix}.url", f'required when type = "{kind}"')
    url = _get(prefix, table, "url", str)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{prefix}.url", f"expected an http:// or https:// URL with a host, got {url!r}")
    try:
        parts.port
    except ValueError as exc:
        raise ConfigError(f"{prefix}.url", f"{exc} in {url!r}") from None
    username = _get(prefix, table, "username", str, None)
    secrets: dict[str, Path | None] = {}
    for key in ("token_file", "password_file"):  # only the path is kept: read at send time, it may rotate
        value = _get(prefix, table, key, str, None)
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


def _parse_model(prefix: str, name: str, table: Mapping[str, Any], base_dir: Path) -> ModelConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(prefix, "expected a table")
    _only_keys(prefix, table, {"pack", "weights", "engine", "batch_size", "triton_url", "triton_model"})
    weights = _get(prefix, table, "weights", str, None)
    engine = _get(prefix, table, "engine", str, "auto")
    if engine not in _ENGINES:
        raise ConfigError(f"{prefix}.engine", f"expected one of {', '.join(_ENGINES)}, got {engine!r}")
    batch = _get(prefix, table, "batch_size", int, None)
    if batch is not None and batch < 1:
        raise ConfigError(f"{prefix}.batch_size", f"expected a value >= 1, got {batch}")
    triton_url = _get(prefix, table, "triton_url", str, None)
    if engine == "triton" and not triton_url:
        raise ConfigError(f"{prefix}.triton_url", 'required when engine = "triton"')
    weights_path = None
    if weights is not None:
        weights_path = Path(weights) if Path(weights).is_absolute() else base_dir / weights
        if not weights_path.is_file():
            missing = "is not a file" if weights_path.exists() else "does not exist"
            raise ConfigError(f"{prefix}.weights", f"{str(weights_path)!r} {missing}")
    return ModelConfig(
        name=name,
        pack=_get(prefix, table, "pack", str, name),
        weights=weights_path,
        engine=engine,
        batch_size=batch,
        triton_url=triton_url,
        triton_model=_get(prefix, table, "triton_model", str, None),
    )


def _parse_route(prefix: str, table: Mapping[str, Any], destinations: set[str]) -> RouteConfig:
    _only_keys(prefix, table, {"name", "model", "destinations", "match", "quiet_seconds", "expected_instances", "on_late"})
    dests = _get(prefix, table, "destinations", list)
    for j, dest in enumerate(dests):
        if dest not in destinations:
            raise ConfigError(f"{prefix}.destinations[{j}]", f"no destination named {dest!r}")
    match_table = _get(prefix, table, "match", dict, {})
    # imported here, not at the top: node.index pulls in the store, which must stay free
    # to import this module without a cycle
    from .index import ROUTING_KEYWORDS

    match: dict[str, tuple[str, ...] | re.Pattern[str]] = {}
    for key, value in match_table.items():
        where = f"{prefix}.match.{key}"
        if key not in ROUTING_KEYWORDS:
            raise ConfigError(where, f"not a routing attribute, so it never matches "
                                     f"(routes match on: {', '.join(ROUTING_KEYWORDS)})")
        if isinstance(value, str) and value.startswith("re:"):
            try:
                match[key] = re.compile(value[3:])
            except re.error as exc:
                raise ConfigError(where, f"bad regular expression: {exc}") from exc
        elif isinstance(value, str):
            match[key] = (value,)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            match[key] = tuple(value)
        else:
            raise ConfigError(where, f'expected a string, a list of strings or "re:...", got {value!r}')
    quiet = _get(prefix, table, "quiet_seconds", (int, float), None)
    if quiet is not None and quiet < 0:
        raise ConfigError(f"{prefix}.quiet_seconds", f"expected a value >= 0, got {quiet}")
    expected = _get(prefix, table, "expected_instances", int, None)
    if expected is not None and expected < 1:
        raise ConfigError(f"{prefix}.expected_instances", f"expected a value >= 1, got {expected}")
    on_late = _get(prefix, table, "on_late", str, "rerun")
    if on_late not in _ON_LATE:
        raise ConfigError(f"{prefix}.on_late", f"expected one of {', '.join(_ON_LATE)}, got {on_late!r}")
    return RouteConfig(
        name=_get(prefix, table, "name", str),
        model=_get(prefix, table, "model", str),
        destinations=tuple(dests),
        match=match,
        quiet_seconds=None if quiet is None else float(quiet),
        expected_instances=expected,
        on_late=on_late,
    )
