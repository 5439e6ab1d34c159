"""Configuration: the TOML file, its defaults and its validation.

A wrong key or value stops the node with a :class:`ConfigError` naming the key, e.g.
``routes[0].match.Modality: expected a string, a list of strings or "re:..."``.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from ..packs.registry import PACKS

__all__ = [
    "AssemblerConfig",
    "Config",
    "ConfigError",
    "DestinationConfig",
    "DicomTlsConfig",
    "EgressConfig",
    "HttpConfig",
    "IngestConfig",
    "ModelConfig",
    "NodeConfig",
    "PeerConfig",
    "RouteConfig",
    "RunnerConfig",
    "SpoolConfig",
    "StoreConfig",
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
accept_unknown_peers = true

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
complete_on_release = true

[[routes]]
name = "cxr-pneumonia"
model = "cxr-pneumonia"
destinations = ["pacs"]
match = { Modality = ["DX", "CR"], BodyPartExamined = "CHEST" }
complete_on_release = true

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
    accept_unknown_peers: bool = True
    """Whether a calling AE title not listed in ``[[peers]]`` may associate (off in production)."""
    listeners: int = _limited(1, ge=1, le=64)
    """DICOM listener processes sharing ``dicom_port`` (SO_REUSEPORT; the kernel spreads
    connections over them): ingest on several cores. See README "Scaling out"."""


@dataclass(frozen=True)
class PeerConfig:
    """A ``[[peers]]`` entry: a calling AE title the node accepts, from where, and how.

    ``host`` is an address or a network in CIDR form (``10.1.2.0/24``); ``tls`` requires
    the peer to come over the DICOM TLS listener; ``cert_cn`` (with ``tls``) requires its
    client certificate's subject common name to be this one.
    """

    ae_title: str
    host: str
    tls: bool = False
    cert_cn: str | None = None


@dataclass(frozen=True)
class DicomTlsConfig:
    """``[dicom_tls]``: the DICOM TLS listener (TLS 1.2+).

    ``port`` set: a second listener beside the plain ``dicom_port``; unset: ``dicom_port``
    itself speaks TLS and no plain listener runs. ``ca``: the CA that client certificates
    are verified against; ``require_client_cert`` (default: whether ``ca`` is set) refuses
    a client without a valid one.
    """

    cert: Path
    key: Path
    port: int | None = None
    ca: Path | None = None
    require_client_cert: bool = False


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: who may use the HTTP API, and HTTPS.

    With ``token_file``, every endpoint but ``open_paths`` needs ``Authorization: Bearer``
    with the file's content. Without it, anonymous use is allowed only when
    ``allow_anonymous`` (default: whether ``[node] http_host`` is a loopback address).
    ``cert`` + ``key``: serve HTTPS.
    """

    token_file: Path | None = None
    allow_anonymous: bool | None = None
    open_paths: tuple[str, ...] = ("/metrics", "/healthz")
    cert: Path | None = None
    key: Path | None = None


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
    association_idle_seconds: float = _limited(25.0, ge=0)
    """A DIMSE destination's association is kept open this long without a C-STORE (below
    Orthanc's 30 s SCP timeout); 0 opens one association per delivery batch."""
    deliver_as_written: bool = True
    """Each result object is queued for delivery as soon as the worker has written it
    (pipelined with writing the next); False waits for the job's last object."""


@dataclass(frozen=True)
class RunnerConfig:
    workers: int = _limited(1, ge=1)
    """Worker processes running jobs."""
    lease_seconds: float = _limited(60.0, gt=0)
    """How long a claimed job or delivery is held before another worker may take it back
    (after a crash of the one holding it)."""
    enabled: bool = True
    """False: ``ainode serve`` runs no jobs (an ingest-only node); ``ainode worker``
    processes sharing the store and the spool run them."""
    read_ahead: bool = True
    """Run a slice-wise model (``slice_wise`` packs: head CT) on a series' slices as they are
    filed, on an idle worker, so that its job at completion runs only the last ones."""
    metrics_port: int = _limited(0, ge=0, le=65535)
    """``ainode worker`` only (it has no HTTP API): serve ``GET /metrics`` on this port, on
    ``[node] http_host``; 0: no metrics server."""


@dataclass(frozen=True)
class IngestConfig:
    """``[ingest]``: how received instances are taken in."""

    on_duplicate: str = "keep-first"
    """A copy of a held instance (same SOP Instance UID) with different content: ``keep-first``
    drops it, ``replace`` keeps it instead (the series is processed again). Identical copies
    are always dropped; a quarantined first copy is always replaced."""


_ON_DUPLICATE = ("keep-first", "replace")


@dataclass(frozen=True)
class StoreConfig:
    """``[store]``: where the job store lives."""

    url: str | None = None
    """``postgresql://user@host:port/dbname``: a PostgreSQL server shared by several nodes
    and workers. Left out: SQLite in ``data_dir`` (one node). The password belongs in a
    libpq password file (``PGPASSFILE`` or ``~/.pgpass``), never in the URL."""


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
    tls: bool = False
    """``dimse``: DICOM TLS (TLS 1.2+) to the destination; ``ca`` verifies its certificate
    (else the system's CAs), ``cert`` + ``key`` are the node's client certificate."""
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    calling_ae_title: str = "AINODE"
    """``dimse``: the node's own AE title in associations it opens (``[node] ae_title``)."""

    TYPES: ClassVar[tuple[str, ...]] = ("dimse", "dicomweb", "orthanc")
    KEYS: ClassVar[Mapping[str, frozenset[str]]] = {
        "dimse": frozenset({"host", "port", "ae_title", "tls", "ca", "cert", "key"}),
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
    complete_on_release: bool = False
    """The series is complete as soon as the association (or STOW-RS request) that brought
    it ends normally, without waiting the quiet period (a radiograph comes in one)."""
    level: str = "series"
    """``series``: one job per matching series. ``study``: one job per study, once a complete
    series of the study matches each of ``requires`` (with ``match`` too), or a
    decision that it is incomplete after ``study_timeout_seconds``."""
    requires: tuple[Mapping[str, tuple[str, ...] | re.Pattern[str]], ...] = ()
    """A study route's required series: one table of rules (as in ``match``) per series."""
    study_timeout_seconds: float = 3600.0
    """How long a study route waits, from the first complete matching series, for the rest."""


_ON_LATE = ("rerun", "ignore")
_LEVELS = ("series", "study")
_SOURCE_TYPES = ("dicomweb", "orthanc", "dimse")


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
    peers: tuple[PeerConfig, ...] = ()
    """``[[peers]]``: the calling AE titles the node knows (see ``accept_unknown_peers``)."""
    dicom_tls: DicomTlsConfig | None = None
    http: HttpConfig = field(default_factory=HttpConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)

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
                         "models", "peers", "dicom_tls", "http", "store", "ingest"})
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
        dataclasses.replace(_parse_destination(f"sources[{i}]", item, base_dir), calling_ae_title=node.ae_title)
        for i, item in enumerate(_array(raw, "sources"))
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
    peers = tuple(_parse_peer(f"peers[{i}]", item) for i, item in enumerate(_array(raw, "peers")))
    dicom_tls = _parse_dicom_tls(raw["dicom_tls"], base_dir) if "dicom_tls" in raw else None
    if dicom_tls is not None and dicom_tls.port is not None and dicom_tls.port == node.dicom_port != 0:
        raise ConfigError("dicom_tls.port", "must differ from node.dicom_port (leave it out for TLS on dicom_port)")
    http = _parse_http(_table(raw, "http"), base_dir)
    return Config(node, assembler, egress, spool, destinations, routes, models, runner, sources,
                  peers, dicom_tls, http, store=_parse_store(_table(raw, "store")),
                  ingest=_parse_ingest(_table(raw, "ingest")))


def _parse_ingest(table: Mapping[str, Any]) -> IngestConfig:
    """``[ingest]``: ``on_duplicate``."""
    _only_keys("ingest", table, {"on_duplicate"})
    on_duplicate = _get("ingest", table, "on_duplicate", str, IngestConfig.on_duplicate)
    if on_duplicate not in _ON_DUPLICATE:
        raise ConfigError("ingest.on_duplicate", f"expected one of {', '.join(_ON_DUPLICATE)}, got {on_duplicate!r}")
    return IngestConfig(on_duplicate=on_duplicate)


def _parse_store(table: Mapping[str, Any]) -> StoreConfig:
    """``[store]``: nothing (SQLite), or the ``url`` of a PostgreSQL database without a password in it."""
    _only_keys("store", table, {"url"})
    url = _get("store", table, "url", str, None)
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
        accept_unknown_peers=_get(p, table, "accept_unknown_peers", bool, d.accept_unknown_peers),
        listeners=_number(p, table, "listeners", fields["listeners"]),
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
        tls = _get(prefix, table, "tls", bool, False)
        files = {key: _file(prefix, table, key, base_dir) for key in ("ca", "cert", "key")}
        if not tls and any(files.values()):
            raise ConfigError(f"{prefix}.tls", "ca, cert and key need tls = true")
        if (files["cert"] is None) != (files["key"] is None):
            raise ConfigError(f"{prefix}.{'key' if files['key'] is None else 'cert'}", "cert and key go together")
        return DestinationConfig(
            name=name,
            type=kind,
            host=_get(prefix, table, "host", str),
            port=_port(f"{prefix}.port", _get(prefix, table, "port", int)),
            ae_title=_ae_title(f"{prefix}.ae_title", _get(prefix, table, "ae_title", str)),
            tls=tls, **files,
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
    _only_keys(prefix, table, {"name", "model", "destinations", "match", "quiet_seconds", "expected_instances", "on_late",
                               "level", "requires", "study_timeout_seconds", "complete_on_release"})
    dests = _get(prefix, table, "destinations", list)
    for j, dest in enumerate(dests):
        if dest not in destinations:
            raise ConfigError(f"{prefix}.destinations[{j}]", f"no destination named {dest!r}")
    match = _parse_rules(f"{prefix}.match", _get(prefix, table, "match", dict, {}))
    level = _get(prefix, table, "level", str, "series")
    if level not in _LEVELS:
        raise ConfigError(f"{prefix}.level", f"expected one of {', '.join(_LEVELS)}, got {level!r}")
    requires_list = _get(prefix, table, "requires", list, [])
    if level == "study" and not requires_list:
        raise ConfigError(f"{prefix}.requires", 'required when level = "study": one table of rules per series, '
                                                'e.g. [{SeriesDescription = "re:^T1"}, {SeriesDescription = "re:^T2"}]')
    if level != "study" and (requires_list or "study_timeout_seconds" in table):
        key = "requires" if requires_list else "study_timeout_seconds"
        raise ConfigError(f"{prefix}.{key}", 'only for a study-level route (level = "study")')
    requires = []
    for j, rules in enumerate(requires_list):
        if not isinstance(rules, dict) or not rules:
            raise ConfigError(f"{prefix}.requires[{j}]", f"expected a table of rules, got {rules!r}")
        requires.append(_parse_rules(f"{prefix}.requires[{j}]", rules))
    timeout = _get(prefix, table, "study_timeout_seconds", (int, float), 3600.0)
    if not timeout > 0:
        raise ConfigError(f"{prefix}.study_timeout_seconds", f"expected a value > 0, got {timeout}")
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
        complete_on_release=_get(prefix, table, "complete_on_release", bool, False),
        level=level,
        requires=tuple(requires),
        study_timeout_seconds=float(timeout),
    )


def _parse_rules(prefix: str, table: Mapping[str, Any]) -> dict[str, tuple[str, ...] | re.Pattern[str]]:
    """A table of routing rules (``match``, or one ``requires`` entry): attribute → value(s) or ``re:``."""
    # imported here, not at the top: node.index pulls in the store, which must stay free
    # to import this module without a cycle
    from ..pipeline.index import ROUTING_KEYWORDS

    match: dict[str, tuple[str, ...] | re.Pattern[str]] = {}
    for key, value in table.items():
        where = f"{prefix}.{key}"
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
    return match


def _file(prefix: str, table: Mapping[str, Any], key: str, base_dir: Path | None, *,
          required: bool = False, must_exist: bool = True) -> Path | None:
    """The file named by ``table[key]`` (relative to ``base_dir``), checked to exist unless
    ``must_exist`` is false (a secret mounted at run time); ``None`` when absent."""
    value = _get(prefix, table, key, str, ... if required else None)
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if must_exist and not path.is_file():
        raise ConfigError(f"{prefix}.{key}", f"{str(path)!r} {'is not a file' if path.exists() else 'does not exist'}")
    return path


def _parse_peer(prefix: str, table: Mapping[str, Any]) -> PeerConfig:
    import ipaddress

    _only_keys(prefix, table, {"ae_title", "host", "tls", "cert_cn"})
    host = _get(prefix, table, "host", str)
    try:
        ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ConfigError(f"{prefix}.host", f"expected an IP address or a CIDR network, got {host!r}") from None
    tls = _get(prefix, table, "tls", bool, False)
    cert_cn = _get(prefix, table, "cert_cn", str, None)
    if cert_cn is not None and (not tls or not cert_cn.strip()):
        raise ConfigError(f"{prefix}.cert_cn", "expected a non-empty common name, with tls = true")
    return PeerConfig(ae_title=_ae_title(f"{prefix}.ae_title", _get(prefix, table, "ae_title", str)).strip(),
                      host=host, tls=tls, cert_cn=cert_cn)


def _parse_dicom_tls(table: Any, base_dir: Path) -> DicomTlsConfig:
    p = "dicom_tls"
    if not isinstance(table, Mapping):
        raise ConfigError(p, "expected a table")
    _only_keys(p, table, {"port", "cert", "key", "ca", "require_client_cert"})
    port = _get(p, table, "port", int, None)
    ca = _file(p, table, "ca", base_dir)
    require = _get(p, table, "require_client_cert", bool, ca is not None)
    if require and ca is None:
        raise ConfigError(f"{p}.ca", "required with require_client_cert = true")
    return DicomTlsConfig(cert=_file(p, table, "cert", base_dir, required=True),  # type: ignore[arg-type]
                          key=_file(p, table, "key", base_dir, required=True),  # type: ignore[arg-type]
                          port=None if port is None else _port(f"{p}.port", port), ca=ca,
                          require_client_cert=require)


def _parse_http(table: Mapping[str, Any], base_dir: Path) -> HttpConfig:
    p = "http"
    _only_keys(p, table, {"token_file", "allow_anonymous", "open_paths", "cert", "key"})
    token_file = _file(p, table, "token_file", base_dir, must_exist=False)  # read when the node starts
    allow = _get(p, table, "allow_anonymous", bool, None)
    if token_file is not None and allow:
        raise ConfigError(f"{p}.allow_anonymous", "cannot be true with a token_file")
    open_paths = _get(p, table, "open_paths", list, list(HttpConfig.open_paths))
    if not all(isinstance(x, str) and x.startswith("/") for x in open_paths):
        raise ConfigError(f"{p}.open_paths", f"expected a list of paths starting with '/', got {open_paths!r}")
    cert, key = _file(p, table, "cert", base_dir), _file(p, table, "key", base_dir)
    if (cert is None) != (key is None):
        raise ConfigError(f"{p}.{'key' if key is None else 'cert'}", "cert and key go together")
    return HttpConfig(token_file=token_file, allow_anonymous=allow, open_paths=tuple(open_paths), cert=cert, key=key)
