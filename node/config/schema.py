"""The configuration's shape: one frozen dataclass per TOML section, with its defaults.

A field's limits (``gt``, ``ge``, ``le``) sit in its metadata, where the parser checks them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from .choices import DestinationType, EngineName, LogLevel, OnDuplicate, OnLate, OnOutOfDomain, Priority, RouteLevel

__all__ = [
    "AssemblerConfig",
    "Config",
    "DestinationConfig",
    "DicomTlsConfig",
    "EgressConfig",
    "HttpConfig",
    "IngestConfig",
    "ModelConfig",
    "NodeConfig",
    "PeerConfig",
    "PriorityFrom",
    "RouteConfig",
    "RunnerConfig",
    "SpoolConfig",
    "StoreConfig",
]

def _limited(default: Any, *, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:
    """A dataclass field whose configured value must be > ``gt``, >= ``ge`` and <= ``le``."""
    return field(default=default, metadata={"gt": gt, "ge": ge, "le": le})


@dataclass(frozen=True)
class NodeConfig:
    """``[node]``: the node's AE title, ports, hosts, data folder and log level."""

    ae_title: str = "AINODE"
    dicom_port: int = 11112
    http_port: int = 8080
    http_host: str = "127.0.0.1"
    dicom_host: str = "0.0.0.0"
    data_dir: Path = Path("var")
    log_level: LogLevel = LogLevel.INFO
    max_associations: int = _limited(32, ge=1)
    """Concurrent DICOM associations the listener accepts."""
    network_timeout_seconds: float = _limited(30.0, gt=0)
    """Idle/read timeout after which a silent DICOM connection is closed."""
    accept_unknown_peers: bool = True
    """Whether a calling AE title not listed in ``[[peers]]`` may associate (off in production)."""
    listeners: int = _limited(1, ge=1, le=64)
    """DICOM listener processes sharing ``dicom_port`` (SO_REUSEPORT; the kernel spreads
    connections over them): ingest on several cores. See docs/scaling-out.md."""
    shutdown_grace_seconds: float = _limited(10.0, ge=0, le=3600)
    """On SIGTERM/SIGINT, how long running C-STOREs and jobs may take to finish before the
    jobs are handed back to the queue and the node exits (docs/operating.md)."""


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
    sends_whole_series: bool = False
    """The peer forwards only whole, stable series (Orthanc's forwarding on a stable series, a
    PACS routing rule): the release of its association completes the series it brought,
    without waiting the quiet period (an image arriving later still reopens it)."""


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
    show_free_text: bool = False
    """Show free-text routing attributes (Study/Series Description, Protocol Name, Manufacturer)
    in the API; off by default: a technologist may type a patient's name there."""


@dataclass(frozen=True)
class AssemblerConfig:
    """``[assembler]``: when a series counts as complete."""

    quiet_seconds: float = _limited(10.0, ge=0)
    poll_seconds: float = _limited(0.5, gt=0)
    early_completion: bool = True


@dataclass(frozen=True)
class SpoolConfig:
    """``[spool]``: how long received instances are kept, and how much disk they may take."""

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
    """``[egress]``: delivery retries and connections to destinations."""

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
    """``[runner]``: the worker processes that run jobs."""

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
    reserve_for_stat: int = _limited(0, ge=0)
    """With several workers, how many are kept free for stat jobs (routine and urgent work
    takes at most ``workers - reserve_for_stat``)."""
    preempt_for_stat: bool = True
    """A stat job waiting with no worker free: the routine (else urgent) job that started last
    yields its worker at its next safe point (before its next step, or between inference
    batches) and is queued again as it was, then runs after. Once writing, with one worker, it
    parks after the object it just handed over and goes on from there; with several, it ends."""
    metrics_port: int = _limited(0, ge=0, le=65535)
    """``ainode worker`` only (it has no HTTP API): serve ``GET /metrics`` on this port, on
    ``[node] http_host``; 0: no metrics server."""


@dataclass(frozen=True)
class IngestConfig:
    """``[ingest]``: how received instances are taken in."""

    on_duplicate: OnDuplicate = OnDuplicate.KEEP_FIRST
    """A copy of a held instance (same SOP Instance UID) with different content: ``keep-first``
    drops it, ``replace`` keeps it instead (the series is processed again). Identical copies
    are always dropped; a quarantined first copy is always replaced."""


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
    type: DestinationType = DestinationType.DIMSE
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

    TYPES: ClassVar[tuple[DestinationType, ...]] = tuple(DestinationType)
    KEYS: ClassVar[Mapping[DestinationType, frozenset[str]]] = {
        DestinationType.DIMSE: frozenset({"host", "port", "ae_title", "tls", "ca", "cert", "key"}),
        DestinationType.DICOMWEB: frozenset({"url", "token_file", "username", "password_file"}),
        DestinationType.ORTHANC: frozenset({"url", "username", "password_file"}),
    }
    """The keys each type takes besides ``name`` and ``type``."""


@dataclass(frozen=True)
class PriorityFrom:
    """``[[routes]] priority_from``: what raises a series' priority above its route's ``priority``.

    ``attribute`` (a routing attribute the sender sets, e.g. Requested Procedure Priority)
    with ``values`` (its value, upper case → priority), and ``calling_ae`` (the calling AE
    title that sent the series → priority). The highest of the route's priority and what
    these give applies; they never lower it.
    """

    attribute: str | None = None
    values: Mapping[str, Priority] = field(default_factory=dict)
    calling_ae: Mapping[str, Priority] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteConfig:
    """A ``[[routes]]`` entry: which series (or studies) go to which model, and where its results go."""

    name: str
    model: str
    destinations: tuple[str, ...]
    match: Mapping[str, tuple[str, ...] | re.Pattern[str]]
    quiet_seconds: float | None = None
    expected_instances: int | None = None
    on_late: OnLate = OnLate.RERUN
    """What an image that arrives after the series' job ran does: ``rerun`` the job on the
    whole series (the new results go into the same result series), or ``ignore`` it."""
    retract_superseded: bool = True
    """Whether the delivered results of a superseded job (a late image re-ran it, or an
    operator did) are retracted from each destination: deleted from an Orthanc, an IOCM
    rejection note to a DIMSE or DICOMweb one. A rejected job's results always are."""
    on_out_of_domain: OnOutOfDomain = OnOutOfDomain.WITHHOLD
    """What a job whose input scores outside its model's domain does: ``withhold`` its findings
    (only a report that the image was not evaluated, and why), ``flag`` them, or ``ignore`` it."""
    complete_on_release: bool = False
    """The series is complete as soon as the association (or STOW-RS request) that brought
    it ends normally, without waiting the quiet period (a radiograph comes in one)."""
    level: RouteLevel = RouteLevel.SERIES
    """``series``: one job per matching series. ``study``: one job per study, once a complete
    series of the study matches each of ``requires`` (with ``match`` too), or a
    decision that it is incomplete after ``study_timeout_seconds``."""
    requires: tuple[Mapping[str, tuple[str, ...] | re.Pattern[str]], ...] = ()
    """A study route's required series: one table of rules (as in ``match``) per series."""
    study_timeout_seconds: float = 3600.0
    """How long a study route waits, from the first complete matching series, for the rest."""
    priority: Priority = Priority.ROUTINE
    """``stat``, ``urgent`` or ``routine``: claimed by the workers and delivered in that order."""
    priority_from: PriorityFrom = field(default_factory=PriorityFrom)
    """What raises a series' priority above ``priority`` (its data, its sender)."""


@dataclass(frozen=True)
class ModelConfig:
    """A ``[models.NAME]`` table: the pack, weights and engine a route's model runs with."""

    name: str
    pack: str
    weights: Path | None = None
    engine: EngineName = EngineName.AUTO
    batch_size: int | None = None
    triton_url: str | None = None
    triton_model: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole configuration: one field per TOML section."""

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
