"""``ainode bench faults``: the node under faults, with a real Orthanc and dcmtk on loopback.

Each scenario starts its own node (and, where it stops the PACS, its own Orthanc), drives
it, checks the outcome against the node's job API, its SQLite store and Orthanc, and
returns a report; nothing here asserts. The reliability tests (``tests/reliability``) call
the same functions with small counts and assert on the reports; the benchmark runs them
at larger counts and writes a "Faults" table to ``benchmarks/RESULTS.md``.

Scenarios:

- :func:`run_kill_trials`: SIGKILL of the node (and its workers) at seeded random
  moments, mid-ingest, during inference, during delivery; then restart. Every
  acknowledged instance must be in the store, every series' results in Orthanc exactly
  as the job recorded them.
- :func:`run_pacs_outage`: the PACS down while results are due, then up (all
  delivered); or down past ``max_attempts`` (dead-lettered, then delivered by
  ``POST /api/deadletters/retry``).
- :func:`run_disk_full`: the data folder on a small tmpfs; C-STOREs until one is
  refused with 0xA700; no temporary leftovers, the store intact; space freed, a new
  series is processed.
- :func:`run_fuzz`: mutated data sets, broken series and garbage PDUs, with idle TCP
  connections held open; C-ECHO and ``/healthz`` probed throughout.
- :func:`run_concurrent_senders`: K ``storescu`` processes of M series each at once;
  peak RSS of the node and its workers.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx

from .fuzz import FuzzCase, PduCase, association_rq, dataset_cases, garbage_pdus, renew_uids, series_cases
from .results import markdown_table
from .services import (
    HEAD_CT_ROUTE,
    NodeProcess,
    OrthancServer,
    echoscu,
    free_port,
    node_config,
    node_exit_code,
    node_pid,
    orthanc_study_instances,
    process_tree_rss,
    wait_for,
)

__all__ = [
    "ConcurrencyReport",
    "DiskFullReport",
    "FuzzReport",
    "KillReport",
    "OutageReport",
    "Prober",
    "RssSampler",
    "SlowProxy",
    "check_results",
    "node_instance_uids",
    "report_text",
    "reports_json",
    "run_concurrent_senders",
    "run_disk_full",
    "run_faults",
    "run_fuzz",
    "run_kill_trials",
    "run_pacs_outage",
    "send_datasets",
    "start_checked_node",
]

"""The one route of every scenario: small head CT phantoms, so inference is fast."""

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
_SETTLED = ("delivered", "failed")
_TERMINAL = ("delivered", "failed", "superseded")  # a superseded job was replaced by a re-run
_QUIET_SECONDS = 2.0


# ----------------------------------------------------------------------------- services


@dataclass(frozen=True)
class _Destination:
    """What :func:`node_config` needs of a PACS (a proxy in front of Orthanc, say)."""

    dicom_port: int
    ae_title: str


def start_checked_node(workdir: Path, pacs: OrthancServer | _Destination, routes: str = HEAD_CT_ROUTE,
                       **options: Any) -> NodeProcess:
    """Like :func:`node.bench.services.start_node`, but a configuration the node refuses
    fails at once with the node's own message instead of a 60 s wait for ``/healthz``."""
    http_port, dicom_port = free_port(), free_port()
    node = NodeProcess(workdir, node_config(dicom_port, http_port, pacs, routes, **options))  # type: ignore[arg-type]
    node.dicom_port = dicom_port
    check = subprocess.run([sys.executable, "-m", "node.cli", "check-config", str(node.config_path)],
                           capture_output=True, text=True, timeout=120)
    if check.returncode != 0:
        raise RuntimeError(f"the node refuses its configuration: {(check.stderr or check.stdout).strip()[-500:]}")
    return node.start(http_port)


def _http_port(node: NodeProcess) -> int:
    return int(node.http_url.rsplit(":", 1)[1])


def _get(node: NodeProcess, path: str, timeout: float = 10) -> Any:
    response = httpx.get(f"{node.http_url}{path}", timeout=timeout)
    response.raise_for_status()
    return response.json()


def _series_jobs(node: NodeProcess, series_uid: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{node.http_url}/api/series/{series_uid}", timeout=10)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return list(response.json().get("jobs") or [])


def _current_job(jobs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The series' job that counts: the newest one not superseded by a re-run."""
    live = [j for j in jobs if j["state"] != "superseded"]
    return max(live or jobs, key=lambda j: j["id"]) if jobs else None


def _wait_job(node: NodeProcess, series_uid: str, states: Sequence[str], timeout: float,
              interval: float = 0.1) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job = _current_job(_series_jobs(node, series_uid))
        return job if job is not None and job["state"] in states else None

    return wait_for(reached, timeout, interval, what=f"the job of series {series_uid} in {tuple(states)}")


def node_instance_uids(data_dir: Path) -> set[str]:
    """SOP Instance UIDs in the node's store (``instances`` table), read-only."""
    db = sqlite3.connect(f"file:{data_dir / 'ainode.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        return {row[0] for row in db.execute("SELECT sop_instance_uid FROM instances")}
    finally:
        db.close()


def _tail(node: NodeProcess, lines: int = 15) -> str:
    try:
        return "\n".join(node.log_text().splitlines()[-lines:])
    except OSError:
        return ""


class RssSampler:
    """Samples the resident memory of a process tree (a node and its workers) in a thread."""

    def __init__(self, pid: Callable[[], int | None], interval: float = 0.2) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            pid = self._pid()
            if pid is not None:
                self.peak = max(self.peak, process_tree_rss(pid))
                self.samples += 1
            self._stop.wait(self._interval)


class Prober:
    """C-ECHO (dcmtk ``echoscu``), ``GET /healthz`` and "is the process alive" every
    ``interval`` seconds in a thread; every failure is kept with its time and reason."""

    def __init__(self, node: NodeProcess, interval: float = 2.0, timeout: float = 10.0) -> None:
        self.node = node
        self.interval = interval
        self.timeout = timeout
        self.failures: list[str] = []
        self.probes = 0
        self.exited: int | None = None
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def __enter__(self) -> "Prober":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout * 2 + 10)

    def probe(self) -> list[str]:
        """One round of probes; returns (and keeps) what failed."""
        at = f"t+{time.monotonic() - self._started:.1f}s"
        failed = []
        code = node_exit_code(self.node)
        if code is not None:
            self.exited = code
            failed.append(f"{at} node process exited with status {code}")
        else:
            reason = echoscu(self.node.dicom_port or 0, timeout=self.timeout)
            if reason:
                failed.append(f"{at} C-ECHO: {reason}")
            try:
                response = httpx.get(f"{self.node.http_url}/healthz", timeout=self.timeout)
                if response.status_code != 200:
                    failed.append(f"{at} /healthz {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                failed.append(f"{at} /healthz: {exc!r}")
        self.probes += 1
        self.failures += failed
        return failed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.probe()


class SlowProxy:
    """A TCP relay to ``target`` that sleeps ``delay`` seconds before forwarding each chunk
    the client sends: delivery to the PACS takes long enough to be killed in the middle."""

    def __init__(self, target: tuple[str, int], delay: float = 0.02, chunk: int = 65536) -> None:
        self.target = target
        self.delay = delay
        self.chunk = chunk
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="slow-proxy", daemon=True)

    def start(self) -> "SlowProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            for src, dst, delay in ((client, upstream, self.delay), (upstream, client, 0.0)):
                threading.Thread(target=self._pump, args=(src, dst, delay), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while True:
                data = src.recv(self.chunk)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()


# ----------------------------------------------------------------------------- sending


def _no_delay(event: Any) -> None:
    """EVT_CONN_OPEN: TCP_NODELAY on the sender's socket, or every C-STORE waits ~40 ms
    for a delayed ACK (Nagle)."""
    raw = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _associate(ae: Any, port: int, called_ae: str) -> Any:
    from pynetdicom import evt

    return ae.associate("127.0.0.1", port, ae_title=called_ae, evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])


def send_datasets(port: int, datasets: Sequence[Any], *, on_status: Callable[[int, int | None], None] | None = None,
                  called_ae: str = "AINODE", timeout: float = 30.0) -> dict[str, int | None]:
    """C-STORE ``datasets`` over one pynetdicom association; ``{SOP Instance UID: status}``
    (``None``: no response: the association was aborted, or the peer went away). Stops at
    the first lost association; what was not sent is absent from the result."""
    from pynetdicom import AE

    ae = AE(ae_title="FAULTS")
    ae.maximum_pdu_size = 0
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [str(datasets[0].file_meta.TransferSyntaxUID)])
    statuses: dict[str, int | None] = {}
    assoc = _associate(ae, port, called_ae)
    if not assoc.is_established:
        return statuses
    try:
        for index, ds in enumerate(datasets):
            if not assoc.is_established:
                break
            try:
                status = assoc.send_c_store(ds)
                code = int(status.Status) if "Status" in status else None
            except Exception:
                code = None
            statuses[str(ds.SOPInstanceUID)] = code
            if on_status is not None:
                on_status(index, code)
            if code is None:
                break
    finally:
        if assoc.is_established:
            with contextlib.suppress(Exception):
                assoc.release()
    return statuses


@contextlib.contextmanager
def _raw_file_sending() -> Iterator[None]:
    """pynetdicom sends a file's data set bytes as they are (no decode, no re-encode).

    Its own splitter misplaces the start of a data set shorter than one element header
    (a 1-7 byte body), so the offset is taken from the meta group lengths instead.
    """
    import pynetdicom._config as config
    import pynetdicom.association as association
    from pydicom.filereader import read_file_meta_info

    from .fuzz import _meta_end

    def split(path: Path) -> tuple[Any, int]:
        raw = Path(path).read_bytes()
        return read_file_meta_info(path), _meta_end(raw)

    saved = config.STORE_SEND_CHUNKED_DATASET, association.split_dataset
    config.STORE_SEND_CHUNKED_DATASET = True
    association.split_dataset = split  # type: ignore[assignment]
    try:
        yield
    finally:
        config.STORE_SEND_CHUNKED_DATASET, association.split_dataset = saved  # type: ignore[assignment]


class _RawSender:
    """C-STOREs :class:`FuzzCase` files as they are, re-associating as contexts require."""

    def __init__(self, port: int, workdir: Path, called_ae: str = "AINODE", timeout: float = 30.0) -> None:
        self.port = port
        self.called_ae = called_ae
        self.timeout = timeout
        self.path = workdir / "case.dcm"
        workdir.mkdir(parents=True, exist_ok=True)
        self._assoc: Any = None
        self._contexts: set[tuple[str, str]] = set()

    def _associate(self, needed: tuple[str, str]) -> str | None:
        from pynetdicom import AE

        self.close()
        contexts = self._contexts | {needed}
        if len(contexts) > 120:
            contexts = {needed}
        ae = AE(ae_title="FUZZ")
        ae.maximum_pdu_size = 0
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        by_class: dict[str, list[str]] = {}
        for sop_class, syntax in sorted(contexts):
            by_class.setdefault(sop_class, []).append(syntax)
        for sop_class, syntaxes in by_class.items():
            for syntax in syntaxes:  # one context per syntax: the node picks no other
                ae.add_requested_context(sop_class, [syntax])
        assoc = _associate(ae, self.port, self.called_ae)
        if not assoc.is_established:
            return "association rejected" if assoc.is_rejected else "association not established"
        self._assoc, self._contexts = assoc, contexts
        return None

    def send(self, case: FuzzCase) -> tuple[str, int | None, str]:
        """``(outcome, status, detail)``: outcome ``status`` (a DIMSE status came back),
        ``no-context`` (the node accepted no context for it: not sent), ``no-association``
        or ``no-reply``."""
        needed = (case.sop_class_uid, case.transfer_syntax)
        if self._assoc is None or not self._assoc.is_established or needed not in self._contexts:
            error = self._associate(needed)
            if error:
                return "no-association", None, error
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in self._assoc.accepted_contexts}
        if needed not in accepted:
            return "no-context", None, "no accepted presentation context"
        self.path.write_bytes(case.data)
        try:
            with _raw_file_sending():
                status = self._assoc.send_c_store(self.path)
        except Exception as exc:
            self.close()
            return "no-reply", None, f"send failed: {exc!r}"[:300]
        if "Status" not in status:
            self.close()
            return "no-reply", None, "no C-STORE response (association aborted or timed out)"
        return "status", int(status.Status), ""

    def close(self) -> None:
        if self._assoc is not None:
            if self._assoc.is_established:
                with contextlib.suppress(Exception):
                    self._assoc.release()
            self._assoc = None


def _send_pdu(port: int, case: PduCase, timeout: float = 2.0) -> str:
    """Send one garbage case on a fresh socket; what came back (``reply 0xNN``, ``closed``, ``silent``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if case.associate:
                s.sendall(association_rq())
                header = s.recv(6)
                if not header or header[0] != 0x02:
                    return f"association not accepted ({header[:1].hex() or 'closed'})"
                length = int.from_bytes(header[2:6], "big")
                remaining = length
                while remaining > 0:
                    chunk = s.recv(min(remaining, 65536))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            try:
                s.sendall(case.data)
            except OSError as exc:
                return f"closed while sending ({type(exc).__name__})"
            s.settimeout(0.3)
            try:
                reply = s.recv(6)
            except socket.timeout:
                return "silent"
            except OSError as exc:
                return f"reset ({type(exc).__name__})"
            return f"reply 0x{reply[0]:02X}" if reply else "closed"
    except OSError as exc:
        return f"connect failed ({type(exc).__name__})"


class _IdleConnections:
    """``count`` TCP connections to the node that never say a word, held open."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.sockets: list[socket.socket] = []
        self.failed_to_open = 0

    def __enter__(self) -> "_IdleConnections":
        for _ in range(self.count):
            try:
                self.sockets.append(socket.create_connection(("127.0.0.1", self.port), timeout=5))
            except OSError:
                self.failed_to_open += 1
        return self

    def closed_by_peer(self) -> int:
        """How many of the held connections the node has closed."""
        closed = 0
        for s in self.sockets:
            try:
                s.setblocking(False)
                data = s.recv(1, socket.MSG_PEEK)
                closed += data == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        return closed

    def __exit__(self, *exc: Any) -> None:
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


def _head_ct(seed: int, slices: int, hematoma: bool = True) -> list[Any]:
    from models.phantoms.head_ct import generate_head_ct

    return list(generate_head_ct(seed=seed, slices=slices, hematoma=hematoma).datasets)


def _fresh_series(base: Sequence[Any], slices: int) -> list[Any]:
    series = renew_uids(base[:slices])
    for ds in series:
        ds.ImagesInAcquisition = slices
    return series


def _write_series(datasets: Sequence[Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets):
        path = folder / f"{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- checks


@dataclass
class ResultCheck:
    """How one series' results in Orthanc compare with what the node's job recorded."""

    series_uid: str
    job_state: str | None = None
    recorded: int = 0        # result objects the job lists for the destination
    in_orthanc: int = 0      # result objects Orthanc holds for the study (outside the source series)
    missing: list[str] = field(default_factory=list)      # recorded, not in Orthanc
    duplicated: list[str] = field(default_factory=list)   # in Orthanc, not recorded (an earlier run's objects)
    problems: list[str] = field(default_factory=list)


def check_results(node: NodeProcess, orthanc: OrthancServer, series_uid: str, study_uid: str, *,
                  slices: int | None = None, destination: str = "pacs") -> ResultCheck:
    """Compare the series' job (state delivered, its results all delivered) with Orthanc's
    copy of the study: the same set of result SOP Instance UIDs, one SEG and one SR, and a
    SEG with one frame per slice when ``slices`` is given."""
    check = ResultCheck(series_uid)
    jobs = _series_jobs(node, series_uid)
    current = _current_job(jobs)
    if len(jobs) != 1:
        check.problems.append(f"series {series_uid}: {len(jobs)} jobs (expected 1): "
                              + ", ".join(f"{j['id']} {j['state']}" for j in jobs))
    if current is None:
        return check
    job = _get(node, f"/api/jobs/{current['id']}")
    check.job_state = job["state"]
    if job["state"] != "delivered":
        check.problems.append(f"job {job['id']} is {job['state']} "
                              f"(stage={job.get('stage')}, reason={job.get('reason')})")
    results = [r for r in job.get("results", []) if r["destination"] == destination]
    not_delivered = [r for r in results if r["state"] != "delivered"]
    if not_delivered:
        check.problems.append(f"job {job['id']}: {len(not_delivered)} results not delivered: "
                              + ", ".join(f"{r['state']}({r.get('last_error')})" for r in not_delivered[:3]))
    recorded = {r["sop_instance_uid"]: r["sop_class_uid"] for r in results}
    stored = [i for i in orthanc_study_instances(orthanc, study_uid) if i["series_uid"] != series_uid]
    in_orthanc = {i["sop_instance_uid"]: i["sop_class_uid"] for i in stored}
    check.recorded, check.in_orthanc = len(recorded), len(in_orthanc)
    check.missing = sorted(set(recorded) - set(in_orthanc))
    check.duplicated = sorted(set(in_orthanc) - set(recorded))
    if check.missing:
        check.problems.append(f"job {job['id']}: {len(check.missing)} recorded results not in Orthanc")
    if check.duplicated:
        check.problems.append(f"job {job['id']}: {len(check.duplicated)} result objects in Orthanc the job does "
                              f"not list (a second run's results): {check.duplicated[:3]}")
    by_class: dict[str, int] = {}
    for sop_class in in_orthanc.values():
        by_class[sop_class] = by_class.get(sop_class, 0) + 1
    for sop_class, name in ((SEG_STORAGE, "SEG"), (COMPREHENSIVE_3D_SR, "SR")):
        if by_class.get(sop_class, 0) != 1:
            check.problems.append(f"study {study_uid}: {by_class.get(sop_class, 0)} {name} objects in Orthanc "
                                  "(expected 1)")
    if slices is not None and by_class.get(SEG_STORAGE) == 1:
        import io

        import pydicom

        seg_id = next(i["orthanc_id"] for i in stored if i["sop_class_uid"] == SEG_STORAGE)
        seg = pydicom.dcmread(io.BytesIO(orthanc.instance_file(seg_id)), stop_before_pixels=True)
        if int(seg.NumberOfFrames) != slices:
            check.problems.append(f"SEG of series {series_uid} has {seg.NumberOfFrames} frames for {slices} slices "
                                  "(an acknowledged instance is missing from the results)")
    return check


# ----------------------------------------------------------------------------- kill -9


@dataclass
class KillReport:
    trials: int = 0
    phases: dict[str, int] = field(default_factory=dict)         # planned phase -> trials
    killed_in_state: dict[str, int] = field(default_factory=dict)  # job state seen just before the kill
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)         # acknowledged, not in the store after restart
    duplicated: int = 0
    missing_results: int = 0
    crashes: list[str] = field(default_factory=list)      # the node exited by itself
    problems: list[str] = field(default_factory=list)
    trial_log: list[str] = field(default_factory=list)
    peak_rss: int = 0
    seconds: float = 0.0
    log_tail: str = ""


def run_kill_trials(workdir: Path, orthanc: OrthancServer, *, trials: int = 10, seed: int = 0,
                    slices: tuple[int, int] = (3, 5), delivery_delay: float = 0.02,
                    deadline_s: float = 300.0) -> KillReport:
    """``trials`` rounds of: send a head CT, SIGKILL the node (and its workers) at a seeded
    random moment of a seeded random phase, restart it, check that every acknowledged
    instance is in the store, resend what was not acknowledged, wait for the results.
    Then every series' results are compared with Orthanc (:func:`check_results`).

    Delivery goes through a :class:`SlowProxy` so that it lasts long enough to be
    interrupted. The trials stop early (reported) after ``deadline_s``.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    report = KillReport()
    base = _head_ct(seed, slices[1])
    proxy = SlowProxy(("127.0.0.1", orthanc.dicom_port), delay=delivery_delay).start()
    node = start_checked_node(Path(workdir) / "node", _Destination(proxy.port, orthanc.ae_title),
                              quiet_seconds=_QUIET_SECONDS)
    data_dir = Path(workdir) / "node" / "data"
    sent: list[tuple[str, str, int]] = []  # (series, study, slices)
    try:
        with RssSampler(lambda: node_pid(node)) as rss:
            for trial in range(trials):
                if time.monotonic() - started > deadline_s:
                    report.problems.append(f"stopped after {trial} of {trials} trials: over {deadline_s:.0f}s")
                    break
                n = rng.randint(*slices)
                phase = rng.choice(("ingest", "inference", "delivery"))
                series = _fresh_series(base, n)
                uid, study = str(series[0].SeriesInstanceUID), str(series[0].StudyInstanceUID)
                sent.append((uid, study, n))
                report.phases[phase] = report.phases.get(phase, 0) + 1
                statuses: dict[str, int | None] = {}
                state_at_kill = "?"
                if phase == "ingest":
                    kill_after = rng.randrange(0, n)
                    pause = rng.uniform(0.0, 0.03)
                    acked = threading.Event()

                    def on_status(index: int, code: int | None, _k: int = kill_after) -> None:
                        if index + 1 >= _k:
                            acked.set()

                    if kill_after == 0:
                        acked.set()
                    sender = threading.Thread(
                        target=lambda: statuses.update(send_datasets(node.dicom_port, series, on_status=on_status)))
                    sender.start()
                    acked.wait(30)
                    time.sleep(pause)
                    state_at_kill = "ingest"
                    detail = f"after {kill_after} acks + {pause * 1000:.0f} ms"
                else:
                    statuses.update(send_datasets(node.dicom_port, series))
                    sender = None
                    wanted = ("running",) if phase == "inference" else ("written",)
                    try:
                        _wait_job(node, uid, (*wanted, *_SETTLED, "written"), 60, interval=0.02)
                    except TimeoutError as exc:
                        report.problems.append(f"trial {trial}: {exc}")
                    pause = rng.uniform(0.0, 0.6 if phase == "inference" else 0.4)
                    time.sleep(pause)
                    with contextlib.suppress(Exception):
                        job = _current_job(_series_jobs(node, uid))
                        state_at_kill = job["state"] if job else "no job yet"
                    detail = f"{pause * 1000:.0f} ms after the job reached {wanted[0]}"
                code = node_exit_code(node)
                if code is not None:
                    report.crashes.append(f"trial {trial}: the node had exited by itself (status {code})")
                node.kill()
                if sender is not None:
                    sender.join(60)
                report.killed_in_state[state_at_kill] = report.killed_in_state.get(state_at_kill, 0) + 1
                acknowledged = {u for u, c in statuses.items() if c == SUCCESS}
                report.acknowledged += len(acknowledged)
                node.start(_http_port(node))
                lost = sorted(acknowledged - node_instance_uids(data_dir))
                report.lost += lost
                report.trial_log.append(f"trial {trial}: {n} slices, kill in {phase} ({detail}), job was "
                                        f"{state_at_kill}; {len(acknowledged)} acknowledged, {len(lost)} lost")
                rest = [ds for ds in series if statuses.get(str(ds.SOPInstanceUID)) != SUCCESS]
                if rest:
                    again = send_datasets(node.dicom_port, rest)
                    report.acknowledged += sum(1 for c in again.values() if c == SUCCESS)
                    if any(c != SUCCESS for c in again.values()) or len(again) != len(rest):
                        report.problems.append(f"trial {trial}: resending after the restart: {again}")
                try:
                    _wait_job(node, uid, _SETTLED, 90)
                except TimeoutError as exc:
                    report.problems.append(f"trial {trial}: {exc}")
            for uid, study, n in sent:
                try:
                    _wait_job(node, uid, _SETTLED, 60)
                    check = check_results(node, orthanc, uid, study, slices=n)
                except Exception as exc:
                    report.problems.append(f"series {uid}: {exc!r}")
                    continue
                report.duplicated += len(check.duplicated)
                report.missing_results += len(check.missing)
                report.problems += check.problems
            report.peak_rss = rss.peak
        report.trials = len(sent)
    finally:
        report.log_tail = _tail(node)
        node.stop()
        proxy.stop()
        report.seconds = time.monotonic() - started
    return report


# ----------------------------------------------------------------------------- PACS outage


@dataclass
class OutageReport:
    mode: str = ""
    acknowledged: int = 0
    attempts_while_down: int = 0
    dead_lettered: int = 0
    requeued: int | None = None
    failed_job: dict[str, Any] | None = None
    delivered: bool = False
    duplicated: int = 0
    missing_results: int = 0
    problems: list[str] = field(default_factory=list)
    peak_rss: int = 0
    seconds: float = 0.0
    log_tail: str = ""


def run_pacs_outage(workdir: Path, *, dead_letter: bool = False, max_attempts: int = 3, down_seconds: float = 4.0,
                    slices: int = 3, seed: int = 0) -> OutageReport:
    """The PACS (its own Orthanc) stopped before a series is sent.

    ``dead_letter=False``: retries go on (``max_attempts`` 200) while it is down for
    ``down_seconds`` past the second attempt; once it is up, everything is delivered.
    ``dead_letter=True``: with ``max_attempts`` tries the results are dead-lettered and
    the job fails at stage ``deliver``; the PACS comes back; ``POST
    /api/deadletters/retry`` delivers them.
    """
    started = time.monotonic()
    report = OutageReport(mode="dead-letter" if dead_letter else "down-then-up")
    orthanc = OrthancServer(Path(workdir) / "orthanc").start()
    node: NodeProcess | None = None
    try:
        node = start_checked_node(Path(workdir) / "node", orthanc, quiet_seconds=_QUIET_SECONDS,
                                  max_attempts=max_attempts if dead_letter else 200)
        series = _fresh_series(_head_ct(seed, slices), slices)
        uid, study = str(series[0].SeriesInstanceUID), str(series[0].StudyInstanceUID)
        with RssSampler(lambda: node_pid(node)) as rss:
            orthanc.stop()
            statuses = send_datasets(node.dicom_port, series)
            report.acknowledged = sum(1 for c in statuses.values() if c == SUCCESS)
            if report.acknowledged != slices:
                report.problems.append(f"not every instance was acknowledged: {statuses}")
            job = _wait_job(node, uid, ("written", *_SETTLED), 90)
            if dead_letter:
                try:
                    job = _wait_job(node, uid, ("failed", "delivered"), 60)
                except TimeoutError as exc:
                    report.problems.append(str(exc))
                failed = [j for j in _get(node, "/api/jobs?state=failed&limit=1000")["jobs"] if j["id"] == job["id"]]
                report.failed_job = failed[0] if failed else None
                if not failed:
                    report.problems.append(f"job {job['id']} is not listed by /api/jobs?state=failed "
                                           f"(state {job['state']})")
                elif failed[0].get("stage") != "deliver" or not failed[0].get("reason"):
                    report.problems.append(f"dead-lettered job without stage 'deliver' and a reason: {failed[0]}")
                results = _get(node, f"/api/jobs/{job['id']}")["results"]
                report.dead_lettered = sum(1 for r in results if r["state"] == "dead")
                report.attempts_while_down = max((r["attempts"] for r in results), default=0)
                if report.dead_lettered != len(results) or not results:
                    report.problems.append(f"{report.dead_lettered} of {len(results)} results dead-lettered")
                orthanc.start()
                response = httpx.post(f"{node.http_url}/api/deadletters/retry", timeout=10)
                response.raise_for_status()
                report.requeued = int(response.json().get("requeued", 0))
                if report.requeued != len(results):
                    report.problems.append(f"retry requeued {report.requeued} of {len(results)} dead letters")
            else:
                def retried() -> bool:
                    results = _get(node, f"/api/jobs/{job['id']}")["results"]
                    return bool(results) and all(r["attempts"] >= 2 for r in results)

                try:
                    wait_for(retried, 60, what="two delivery attempts while the PACS is down")
                except TimeoutError as exc:
                    report.problems.append(str(exc))
                time.sleep(down_seconds)
                results = _get(node, f"/api/jobs/{job['id']}")["results"]
                report.attempts_while_down = max((r["attempts"] for r in results), default=0)
                if any(r["state"] != "pending" for r in results):
                    report.problems.append("results left the queue while the PACS was down: "
                                           + ", ".join(r["state"] for r in results))
                orthanc.start()
            try:
                _wait_job(node, uid, ("delivered",), 90)
                report.delivered = True
            except TimeoutError as exc:
                report.problems.append(str(exc))
            check = check_results(node, orthanc, uid, study, slices=slices)
            report.duplicated, report.missing_results = len(check.duplicated), len(check.missing)
            report.problems += check.problems
            report.peak_rss = rss.peak
    finally:
        if node is not None:
            report.log_tail = _tail(node)
            node.stop()
        orthanc.stop()
        report.seconds = time.monotonic() - started
    return report


# ----------------------------------------------------------------------------- disk full


@dataclass
class DiskFullReport:
    size_mb: int = 0
    min_free_mb: int = 0
    floor_mb: float = 0.0                    # max(min_free_mb, min_free_percent of the file system)
    min_free_seen_mb: float | None = None    # the least free space seen before any refusal
    sent: int = 0
    acknowledged: int = 0
    statuses: dict[str, int] = field(default_factory=dict)   # "0xA700" -> count
    refused_at: int | None = None            # index of the first instance answered 0xA700
    free_mb_at_refusal: float | None = None
    tmp_leftovers: list[str] = field(default_factory=list)
    integrity: str = ""
    enospc_log_lines: int = 0
    alive_after: bool = False
    probe_failures: list[str] = field(default_factory=list)
    after_free_statuses: dict[str, int] = field(default_factory=dict)
    delivered_after: bool = False
    lost: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    peak_rss: int = 0
    seconds: float = 0.0
    log_tail: str = ""


def _free_mb(path: Path) -> float:
    return shutil.disk_usage(path).free / 2**20


def run_disk_full(workdir: Path, orthanc: OrthancServer, *, size_mb: int = 48, min_free_mb: int = 16,
                  min_free_percent: int = 10, headroom_mb: int = 10, max_instances: int = 200,
                  seed: int = 0) -> DiskFullReport:
    """The node's data folder on a ``size_mb`` tmpfs, with ``[spool] min_free_mb`` /
    ``min_free_percent`` set. A filler file leaves ``headroom_mb`` above the floor; a
    series (not routed) is sent one instance at a time until one is refused with 0xA700.
    Then: no ``*.tmp`` left, ``PRAGMA integrity_check`` of the store, the node alive; the
    filler is removed and a head CT sent afterwards must be processed and delivered.

    Needs root (``mount``); raises ``PermissionError`` otherwise.
    """
    if os.geteuid() != 0:
        raise PermissionError("mounting a tmpfs needs root")
    started = time.monotonic()
    report = DiskFullReport(size_mb=size_mb, min_free_mb=min_free_mb,
                            floor_mb=max(float(min_free_mb), size_mb * min_free_percent / 100))
    node_dir = Path(workdir) / "node"
    data_dir = node_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(data_dir)], check=True,
                   capture_output=True, timeout=30)
    node: NodeProcess | None = None
    try:
        extra = f"[spool]\nmin_free_mb = {min_free_mb}\nmin_free_percent = {min_free_percent}\n"
        node = start_checked_node(node_dir, orthanc, quiet_seconds=_QUIET_SECONDS, extra=extra)
        filler = data_dir / "filler.bin"
        fill = int((_free_mb(data_dir) - min_free_mb - headroom_mb) * 2**20)
        if fill > 0:
            with open(filler, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, fill)
        base = _head_ct(seed, 1, hematoma=False)[0]
        with RssSampler(lambda: node_pid(node)) as rss:
            # A series no route takes (Body Part PELVIS), one instance per C-STORE.
            stream = renew_uids([base] * max_instances)
            for index, ds in enumerate(stream):
                ds.BodyPartExamined = "PELVIS"
                ds.InstanceNumber = index + 1
                ds.ImagePositionPatient = [0.0, 0.0, float(index)]
                del ds.ImagesInAcquisition
            acknowledged: set[str] = set()
            for index, ds in enumerate(stream):
                free = _free_mb(data_dir)
                seen = report.min_free_seen_mb
                report.min_free_seen_mb = free if seen is None else min(seen, free)
                statuses = send_datasets(node.dicom_port, [ds])
                code = statuses.get(str(ds.SOPInstanceUID))
                key = "no reply" if code is None else f"0x{code:04X}"
                report.statuses[key] = report.statuses.get(key, 0) + 1
                report.sent += 1
                if code == SUCCESS:
                    acknowledged.add(str(ds.SOPInstanceUID))
                if code == OUT_OF_RESOURCES:
                    report.refused_at, report.free_mb_at_refusal = index, free
                    break
                if code is None and node_exit_code(node) is not None:
                    report.problems.append(f"the node exited (status {node_exit_code(node)}) at instance {index}")
                    break
            report.acknowledged = len(acknowledged)
            if report.refused_at is None:
                report.problems.append(f"no C-STORE was refused with 0xA700 in {report.sent} instances "
                                       f"({_free_mb(data_dir):.1f} MB free at the end): {report.statuses}")
            for extra_try in renew_uids([stream[0]] * 2):
                code = send_datasets(node.dicom_port, [extra_try]).get(str(extra_try.SOPInstanceUID))
                key = "no reply" if code is None else f"0x{code:04X}"
                report.statuses[key] = report.statuses.get(key, 0) + 1
            report.tmp_leftovers = sorted(str(Path(root) / name) for root, _, names in os.walk(data_dir)
                                          for name in names if name.endswith(".tmp"))
            try:
                db = sqlite3.connect(f"file:{data_dir / 'ainode.sqlite'}?mode=ro", uri=True, timeout=30)
                try:
                    report.integrity = "; ".join(str(r[0]) for r in db.execute("PRAGMA integrity_check"))
                finally:
                    db.close()
            except sqlite3.Error as exc:
                report.integrity = f"cannot open: {exc!r}"
            report.lost = sorted(acknowledged - node_instance_uids(data_dir)) if "ok" == report.integrity else []
            prober = Prober(node, interval=3600)
            report.probe_failures = prober.probe()
            report.alive_after = node_exit_code(node) is None
            # Room again: a new series must go through.
            filler.unlink(missing_ok=True)
            good = _fresh_series(_head_ct(seed + 1, 3), 3)
            deadline = time.monotonic() + 20
            pending = list(good)
            while pending and time.monotonic() < deadline:
                statuses = send_datasets(node.dicom_port, pending)
                for code in statuses.values():
                    key = "no reply" if code is None else f"0x{code:04X}"
                    report.after_free_statuses[key] = report.after_free_statuses.get(key, 0) + 1
                pending = [ds for ds in pending if statuses.get(str(ds.SOPInstanceUID)) != SUCCESS]
                if pending:
                    time.sleep(1.0)
            if pending:
                report.problems.append(f"after freeing space, {len(pending)} of {len(good)} instances still refused: "
                                       f"{report.after_free_statuses}")
            else:
                uid, study = str(good[0].SeriesInstanceUID), str(good[0].StudyInstanceUID)
                try:
                    _wait_job(node, uid, ("delivered",), 90)
                    report.delivered_after = True
                except TimeoutError as exc:
                    report.problems.append(str(exc))
                report.problems += check_results(node, orthanc, uid, study, slices=3).problems
            report.peak_rss = rss.peak
        report.enospc_log_lines = sum("No space left" in line or "ENOSPC" in line
                                      for line in node.log_text().splitlines())
    finally:
        if node is not None:
            report.log_tail = _tail(node)
            node.stop()
        for attempt in range(3):
            done = subprocess.run(["umount", str(data_dir)], capture_output=True, timeout=30)
            if done.returncode == 0:
                break
            time.sleep(1)
        else:
            subprocess.run(["umount", "-l", str(data_dir)], capture_output=True, timeout=30)
        report.seconds = time.monotonic() - started
    return report


# ----------------------------------------------------------------------------- fuzz


@dataclass
class FuzzReport:
    dataset_cases: int = 0
    series_cases: int = 0
    pdus: int = 0
    idle_connections: int = 0
    idle_closed_by_node: int = 0
    families: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)        # "0x0000" -> count
    outcomes: dict[str, int] = field(default_factory=dict)        # status / no-context / no-reply / ...
    no_reply: list[str] = field(default_factory=list)
    pdu_outcomes: dict[str, int] = field(default_factory=dict)
    probes: int = 0
    probe_failures: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    jobs: dict[str, int] = field(default_factory=dict)
    failed_without_reason: list[dict[str, Any]] = field(default_factory=list)
    unsettled: list[dict[str, Any]] = field(default_factory=list)
    series_outcomes: dict[str, str] = field(default_factory=dict)
    good_series_delivered: bool = False
    problems: list[str] = field(default_factory=list)
    peak_rss: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    log_tail: str = ""


def run_fuzz(workdir: Path, orthanc: OrthancServer, *, cases: int = 2000, pdus: int = 300, seed: int = 0,
             idle_connections: int = 0, probe_interval: float = 2.0, settle_timeout: float = 120.0,
             real: bool = True) -> FuzzReport:
    """Mutated data sets (:func:`node.bench.fuzz.dataset_cases`), then the broken series
    (:func:`~node.bench.fuzz.series_cases`), while garbage PDUs go in on other
    connections and ``idle_connections`` sockets sit open; C-ECHO, ``/healthz`` and the
    process are probed every ``probe_interval`` seconds. Then the jobs must settle
    (delivered or failed with a stage and a reason) and a good head CT, sent with
    ``storescu`` while the idle connections are still open, must be delivered."""
    from .services import storescu

    started = time.monotonic()
    report = FuzzReport(idle_connections=idle_connections)
    workdir = Path(workdir)
    node = start_checked_node(workdir / "node", orthanc, quiet_seconds=_QUIET_SECONDS)
    series_by_case: dict[str, str] = {}
    try:
        with RssSampler(lambda: node_pid(node)) as rss, Prober(node, interval=probe_interval) as prober, \
                _IdleConnections(node.dicom_port or 0, idle_connections) as idle:
            if idle.failed_to_open:
                report.problems.append(f"{idle.failed_to_open} of {idle_connections} idle connections did not open")
            pdu_thread = threading.Thread(target=_pdu_storm, args=(node.dicom_port, pdus, seed, report), daemon=True)
            pdu_thread.start()
            sender = _RawSender(node.dicom_port or 0, workdir / "sender")
            head = _head_ct(seed, 3)
            broken_series = series_cases(head, seed, real=real)

            def record(case: FuzzCase) -> None:
                outcome, status, detail = sender.send(case)
                report.families[case.family] = report.families.get(case.family, 0) + 1
                report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
                if status is not None:
                    key = f"0x{status:04X}"
                    report.statuses[key] = report.statuses.get(key, 0) + 1
                if outcome in ("no-reply", "no-association"):
                    report.no_reply.append(f"{case.name}: {detail}")
                    if node_exit_code(node) is not None:
                        raise RuntimeError(f"the node exited (status {node_exit_code(node)}) after {case.name}")

            try:
                for case in dataset_cases(cases, seed, real=real):
                    record(case)
                    report.dataset_cases += 1
                for broken in broken_series:
                    for case in broken.cases:
                        record(case)
                    series_by_case[broken.name] = broken.series_uid
                    report.series_cases += 1
            except RuntimeError as exc:
                report.crashes.append(str(exc))
            finally:
                sender.close()
                report.phase_seconds["send"] = round(time.monotonic() - started, 1)
                pdu_thread.join(600)
                report.phase_seconds["pdus"] = round(time.monotonic() - started, 1)
            if node_exit_code(node) is None:
                time.sleep(_QUIET_SECONDS + 1.0)  # every series sent is complete by now
                _settle(node, report, settle_timeout, list(series_by_case.values()))
                report.phase_seconds["settled"] = round(time.monotonic() - started, 1)
                for name, uid in series_by_case.items():
                    report.series_outcomes[name] = _series_outcome(node, uid)
                good = _fresh_series(_head_ct(seed + 7, 3), 3)
                files = _write_series(good, workdir / "good")
                try:
                    storescu(files, node.dicom_port or 0)
                    _wait_job(node, str(good[0].SeriesInstanceUID), ("delivered",), 120)
                    check = check_results(node, orthanc, str(good[0].SeriesInstanceUID),
                                          str(good[0].StudyInstanceUID), slices=3)
                    report.problems += check.problems
                    report.good_series_delivered = not check.problems
                except Exception as exc:
                    report.problems.append(f"good series after the fuzz: {exc}")
                report.phase_seconds["good series"] = round(time.monotonic() - started, 1)
            report.idle_closed_by_node = idle.closed_by_peer()
            prober.probe()
        report.probes = prober.probes
        report.probe_failures = prober.failures
        if prober.exited is not None:
            report.crashes.append(f"the node exited with status {prober.exited}")
        report.peak_rss = rss.peak
    finally:
        report.log_tail = _tail(node)
        node.stop()
        report.seconds = time.monotonic() - started
    return report


def _pdu_storm(port: int | None, count: int, seed: int, report: FuzzReport, workers: int = 4) -> None:
    """Send ``count`` garbage cases, ``workers`` sockets at a time."""
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()

    def one(case: PduCase) -> None:
        outcome = _send_pdu(port or 0, case)
        key = f"{case.family}: {outcome.split(' (')[0]}"
        with lock:
            report.pdu_outcomes[key] = report.pdu_outcomes.get(key, 0) + 1
            report.pdus += 1

    with ThreadPoolExecutor(workers, thread_name_prefix="pdu") as pool:
        list(pool.map(one, garbage_pdus(count, seed)))


def _series_outcome(node: NodeProcess, series_uid: str) -> str:
    response = httpx.get(f"{node.http_url}/api/series/{series_uid}", timeout=10)
    if response.status_code == 404:
        return "no series (no instance of it was indexed)"
    response.raise_for_status()
    series = response.json()
    job = _current_job(series.get("jobs") or [])
    if job is None:
        return f"series {series.get('state')}, no job"
    return f"{job['state']}" + (f" at {job.get('stage')}: {str(job.get('reason'))[:160]}"
                                if job["state"] == "failed" else "")


def _series_settled(node: NodeProcess, series_uid: str) -> bool:
    response = httpx.get(f"{node.http_url}/api/series/{series_uid}", timeout=10)
    if response.status_code == 404:
        return True
    series = response.json()
    if series.get("state") in ("received", "complete"):
        return False
    job = _current_job(series.get("jobs") or [])
    return job is None or job["state"] in _TERMINAL


def _settle(node: NodeProcess, report: FuzzReport, timeout: float, series: Sequence[str] = ()) -> None:
    """Wait until every job is delivered, failed or superseded and every series in
    ``series`` has its outcome; fill the job counts and the failures."""
    def settled() -> bool:
        jobs = _get(node, "/api/jobs?limit=10000")["jobs"]
        return (all(j["state"] in _TERMINAL for j in jobs) and not _get(node, "/healthz").get("missing")
                and all(_series_settled(node, uid) for uid in series))

    try:
        wait_for(settled, timeout, 1.0, what="every job delivered or failed")
    except TimeoutError as exc:
        report.problems.append(str(exc))
    jobs = _get(node, "/api/jobs?limit=10000")["jobs"]
    for job in jobs:
        report.jobs[job["state"]] = report.jobs.get(job["state"], 0) + 1
    report.unsettled = [{k: j.get(k) for k in ("id", "series_uid", "state", "stage", "reason")}
                        for j in jobs if j["state"] not in _TERMINAL]
    failed = _get(node, "/api/jobs?state=failed&limit=10000")["jobs"]
    report.failed_without_reason = [{k: j.get(k) for k in ("id", "series_uid", "stage", "reason")}
                                    for j in failed if not j.get("stage") or not j.get("reason")]


# ----------------------------------------------------------------------------- concurrency


@dataclass
class ConcurrencyReport:
    senders: int = 0
    series: int = 0
    instances: int = 0
    sender_errors: list[str] = field(default_factory=list)
    delivered: int = 0
    duplicated: int = 0
    missing_results: int = 0
    problems: list[str] = field(default_factory=list)
    peak_rss: int = 0
    rss_samples: int = 0
    send_seconds: float = 0.0
    seconds: float = 0.0
    log_tail: str = ""


def run_concurrent_senders(workdir: Path, orthanc: OrthancServer, *, senders: int = 8, series_per_sender: int = 8,
                           slices: int = 2, seed: int = 0, timeout: float = 300.0) -> ConcurrencyReport:
    """``senders`` dcmtk ``storescu`` processes at once, each with ``series_per_sender``
    head CT series of ``slices`` slices (fresh UIDs each); every series must be delivered
    with its results exactly once; the node's peak RSS (node + workers) is sampled."""
    started = time.monotonic()
    workdir = Path(workdir)
    report = ConcurrencyReport(senders=senders, series=senders * series_per_sender)
    hematoma = _head_ct(seed, slices, hematoma=True)
    clear = _head_ct(seed + 1, slices, hematoma=False)
    plan: list[tuple[int, list[Path], str, str]] = []
    for sender in range(senders):
        for index in range(series_per_sender):
            series = _fresh_series(hematoma if (sender + index) % 2 == 0 else clear, slices)
            files = _write_series(series, workdir / "in" / f"s{sender}" / f"{index}")
            plan.append((sender, files, str(series[0].SeriesInstanceUID), str(series[0].StudyInstanceUID)))
    report.instances = sum(len(files) for _, files, _, _ in plan)
    node = start_checked_node(workdir / "node", orthanc, quiet_seconds=_QUIET_SECONDS)
    try:
        with RssSampler(lambda: node_pid(node), interval=0.1) as rss:
            t0 = time.monotonic()
            procs = []
            for sender in range(senders):
                files = [str(p) for s, fs, _, _ in plan if s == sender for p in fs]
                cmd = ["storescu", "-aet", f"MODALITY{sender}", "-aec", "AINODE", "127.0.0.1", str(node.dicom_port),
                       *files]
                procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for sender, proc in enumerate(procs):
                try:
                    _, err = proc.communicate(timeout=180)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                    report.sender_errors.append(f"sender {sender}: storescu did not finish in 180 s")
                    continue
                if proc.returncode != 0:
                    report.sender_errors.append(f"sender {sender}: storescu exit {proc.returncode}: {err[-300:]}")
            report.send_seconds = time.monotonic() - t0
            remaining = max(30.0, timeout - (time.monotonic() - started))
            deadline = time.monotonic() + remaining
            for _, _, uid, _ in plan:
                try:
                    _wait_job(node, uid, _SETTLED, max(1.0, deadline - time.monotonic()), interval=0.5)
                except TimeoutError as exc:
                    report.problems.append(str(exc))
            report.peak_rss, report.rss_samples = rss.peak, rss.samples
        for _, files, uid, study in plan:
            check = check_results(node, orthanc, uid, study, slices=len(files))
            report.delivered += check.job_state == "delivered"
            report.duplicated += len(check.duplicated)
            report.missing_results += len(check.missing)
            report.problems += check.problems
        code = node_exit_code(node)
        if code is not None:
            report.problems.append(f"the node exited with status {code}")
    finally:
        report.log_tail = _tail(node)
        node.stop()
        report.seconds = time.monotonic() - started
    return report


# ----------------------------------------------------------------------------- the benchmark


def _mib(value: int) -> str:
    return f"{value / 2**20:.0f}" if value else "–"


def run_faults(fuzz: int = 10_000, kills: int = 50, seed: int = 0, workdir: Path | None = None,
               idle_connections: int = 200, pdus: int | None = None) -> tuple[str, dict[str, Any]]:
    """Every scenario at benchmark counts; returns the markdown body and the reports."""
    tmp = Path(workdir or tempfile.mkdtemp(prefix="ainode-bench-faults-"))
    reports: dict[str, Any] = {}
    rows: list[list[object]] = []
    orthanc = OrthancServer(tmp / "orthanc").start()

    def scenario(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        print(f"[faults] {name} ...", file=sys.stderr, flush=True)
        try:
            result = fn()
        except Exception as exc:  # a scenario that cannot run is a row that says why
            result = exc
        reports[name] = result
        print(f"[faults] {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        return result

    try:
        kill = scenario("kill -9", lambda: run_kill_trials(tmp / "kill", orthanc, trials=kills, seed=seed,
                                                           deadline_s=max(600.0, kills * 20.0)))
        up = scenario("PACS down, then up", lambda: run_pacs_outage(tmp / "outage-up", seed=seed))
        dead = scenario("PACS down past max_attempts", lambda: run_pacs_outage(tmp / "outage-dead", dead_letter=True,
                                                                               seed=seed))
        disk = scenario("disk full", lambda: run_disk_full(tmp / "disk", orthanc, seed=seed))
        fuzzed = scenario("fuzz", lambda: run_fuzz(tmp / "fuzz", orthanc, cases=fuzz,
                                                   pdus=pdus if pdus is not None else max(100, fuzz // 5), seed=seed,
                                                   idle_connections=idle_connections, settle_timeout=600))
        many = scenario("8 senders x 8 series", lambda: run_concurrent_senders(tmp / "senders", orthanc, seed=seed))
    finally:
        orthanc.stop()

    def row(name: str, result: Any, trials: object, acked: object, lost: object, dup: object, crashes: object,
            hangs: object, notes: str) -> None:
        if isinstance(result, Exception):
            rows.append([name, trials, "–", "–", "–", "–", "–", "–", f"did not run: {result}"[:200]])
            return
        rows.append([name, trials, acked, lost, dup, crashes, hangs, _mib(result.peak_rss),
                     (notes + (f"; problems: {len(result.problems)} (first: {result.problems[0][:120]})"
                               if result.problems else "")).strip("; ")])

    if isinstance(kill, KillReport):
        row("kill -9 (ingest / inference / delivery)", kill, kill.trials, kill.acknowledged, len(kill.lost),
            kill.duplicated, len(kill.crashes), "–",
            f"planned {kill.phases}; job state at the kill {kill.killed_in_state}; "
            f"{kill.missing_results} results missing")
    else:
        row("kill -9", kill, kills, 0, 0, 0, 0, 0, "")
    for name, result in (("PACS down, then up", up), ("PACS down past max_attempts", dead)):
        if isinstance(result, OutageReport):
            row(name, result, 1, result.acknowledged, "–", result.duplicated, "–", "–",
                f"{result.attempts_while_down} attempts while down; dead-lettered {result.dead_lettered}; "
                f"requeued {result.requeued}; delivered: {result.delivered}")
        else:
            row(name, result, 1, 0, 0, 0, 0, 0, "")
    if isinstance(disk, DiskFullReport):
        row("disk full (48 MB tmpfs)", disk, disk.sent, disk.acknowledged, len(disk.lost), "–",
            0 if disk.alive_after else 1, len(disk.probe_failures),
            f"statuses {disk.statuses}; first 0xA700 at instance {disk.refused_at} with "
            f"{disk.free_mb_at_refusal if disk.free_mb_at_refusal is None else round(disk.free_mb_at_refusal, 1)} MB "
            f"free; .tmp left {len(disk.tmp_leftovers)}; integrity {disk.integrity or '?'}; "
            f"ENOSPC log lines {disk.enospc_log_lines}; delivered after freeing: {disk.delivered_after}")
    else:
        row("disk full", disk, 1, 0, 0, 0, 0, 0, "")
    if isinstance(fuzzed, FuzzReport):
        row(f"fuzz ({idle_connections} idle connections held)", fuzzed,
            f"{fuzzed.dataset_cases} data sets + {fuzzed.series_cases} series + {fuzzed.pdus} PDUs",
            fuzzed.statuses.get("0x0000", 0), "–", "–", len(fuzzed.crashes), len(fuzzed.probe_failures),
            f"statuses {fuzzed.statuses}; no reply {len(fuzzed.no_reply)}; jobs {fuzzed.jobs}; failed without "
            f"stage/reason {len(fuzzed.failed_without_reason)}; unsettled {len(fuzzed.unsettled)}; idle closed by "
            f"node {fuzzed.idle_closed_by_node}; good series delivered: {fuzzed.good_series_delivered}")
    else:
        row("fuzz", fuzzed, fuzz, 0, 0, 0, 0, 0, "")
    if isinstance(many, ConcurrencyReport):
        row("8 senders x 8 series (storescu)", many, many.series, many.instances - 0, "–", many.duplicated,
            "–", "–", f"{many.delivered} of {many.series} delivered; sent in {many.send_seconds:.1f} s; "
            f"{many.missing_results} results missing; sender errors {len(many.sender_errors)}")
    else:
        row("8 senders x 8 series", many, 64, 0, 0, 0, 0, 0, "")
    headers = ["scenario", "trials", "instances acknowledged", "lost", "duplicated results", "crashes",
               "hangs (echo/healthz failures)", "peak RSS (MiB)", "notes"]
    body = (
        f"Seed {seed}. Real Orthanc 1.10 and dcmtk on loopback; route `head-ct-hematoma` on small head CT phantoms. "
        "'lost': acknowledged instances missing from the node's store after a restart; 'duplicated results': result "
        "objects in Orthanc beyond those the job recorded as delivered; 'crashes': the node process exited by "
        "itself; 'hangs': C-ECHO (dcmtk `echoscu`) or `GET /healthz` unanswered during the run (probed every 2 s); "
        "peak RSS: node process + worker processes, sampled from /proc. Fuzz cases are mutations of the project's "
        "phantoms and of real files from `pydicom-data` (truncated, wrong VRs, absurd lengths, pixel-size "
        "mismatches, missing Rows/Columns, broken series) plus garbage PDUs on raw sockets.\n\n"
        + markdown_table(headers, rows)
    )
    return body, reports


def reports_json(reports: dict[str, Any]) -> str:
    """The reports as JSON (exceptions as their text)."""
    return json.dumps({k: (asdict(v) if hasattr(v, "__dataclass_fields__") else repr(v)) for k, v in reports.items()},
                      indent=2, default=str)


def report_text(report: Any, limit: int = 25) -> str:
    """A report as indented JSON, long lists cut to ``limit`` items (for assertion messages)."""
    def cut(value: Any) -> Any:
        if isinstance(value, list) and len(value) > limit:
            return [cut(v) for v in value[:limit]] + [f"... {len(value) - limit} more"]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(v) for v in value]
        return value

    data = asdict(report) if hasattr(report, "__dataclass_fields__") else {"error": repr(report)}
    return json.dumps(cut(data), indent=2, default=str)
