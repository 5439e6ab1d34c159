"""Beyond one machine, on one machine: PostgreSQL + two ingest-only nodes + two workers + a real Orthanc.

Every process is real (``ainode serve`` / ``ainode worker`` as child processes, PostgreSQL
and Orthanc from Debian's packages, dcmtk's storescu as the modalities). The processes
share only the PostgreSQL job store; each has its own data_dir on this disk.
"""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from models.phantoms.head_ct import generate_head_ct, write_phantom
from benchmarks.postgres import PostgresServer
from benchmarks.scale_out import WorkerProcess, audit_records, shared_store_toml
from benchmarks.services import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, storescu, wait_for
from node.config import ConfigError, parse_config
from node.states import JobState, ResultState
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture

pytestmark = pytest.mark.e2e

LEASE = 3.0


class Site:
    """The processes of one site and a handle on their shared store."""

    def __init__(self, root: Path, url: str) -> None:
        from node.store.postgres import PostgresJobStore

        self.orthanc = OrthancServer(root / "orthanc").start()
        self.ingest: list[NodeProcess] = []
        for name in ("ingest-a", "ingest-b"):
            http_port, dicom_port = free_port(), free_port()
            config = node_config(dicom_port, http_port, self.orthanc, HEAD_CT_ROUTE, quiet_seconds=2.0,
                                 extra=shared_store_toml(url, runner_enabled=False, lease_seconds=LEASE))
            node = NodeProcess(root / name, config)
            node.dicom_port = dicom_port
            self.ingest.append(node.start(http_port))
        worker_config = node_config(0, 0, self.orthanc, HEAD_CT_ROUTE,
                                    extra=shared_store_toml(url, runner_enabled=True, lease_seconds=LEASE))
        self.workers = [WorkerProcess(root / name, worker_config).start() for name in ("worker-a", "worker-b")]
        self.store = PostgresJobStore(url)

    def stop(self) -> None:
        for process in [*self.workers, *self.ingest]:
            process.stop()
        self.orthanc.stop()
        self.store.close()

    def logs(self) -> list[str]:
        return [p.log_text() for p in [*self.ingest, *self.workers]]

    def delivered_jobs(self, series_uid: str) -> list[dict]:
        jobs = self.store.jobs_for_series(series_uid)
        return jobs if jobs and all(j.state == JobState.DELIVERED for j in jobs) else []


@pytest.fixture
def site(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[Site]:  # noqa: F811 - the fixture above
    site = Site(tmp_path, postgres_server.create_database())
    yield site
    site.stop()


def _series(root: Path, seed: int, slices: int = 4) -> tuple[str, list[Path]]:
    phantom = generate_head_ct(seed=seed, slices=slices, hematoma=True)
    files = sorted(p for p in write_phantom(phantom, root / f"series-{seed}") if p.suffix == ".dcm")
    return str(phantom.datasets[0].SeriesInstanceUID), files


def _send_together(sends: list[tuple[list[Path], int, str]]) -> None:
    """Several modalities sending at once: ``(files, port, calling AE)`` each, in its own thread."""
    errors: list[BaseException] = []

    def _send(files: list[Path], port: int, calling: str) -> None:
        try:
            storescu(files, port, calling_ae=calling)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=_send, args=send) for send in sends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_a_site_of_two_ingest_nodes_and_two_workers(site: Site, tmp_path: Path):
    a, b = site.ingest

    # one series sent half to each ingest node is processed once
    split_uid, files = _series(tmp_path, seed=1, slices=6)
    _send_together([(files[:3], a.dicom_port, "MOD1"), (files[3:], b.dicom_port, "MOD2")])
    (job,) = wait_for(lambda: site.delivered_jobs(split_uid), 90, what="the split series delivered")
    assert site.store.get_series(split_uid).instance_count == 6
    assert len(site.store.series_instances(split_uid)) == 6, "the job saw both halves"

    # several series over several senders: all processed, each result delivered exactly once
    many = [_series(tmp_path, seed=10 + i) for i in range(4)]
    ports = [a.dicom_port, b.dicom_port]
    _send_together([(files, ports[i % 2], f"MOD{i}") for i, (_uid, files) in enumerate(many)])
    for series_uid, _files in many:
        wait_for(lambda uid=series_uid: site.delivered_jobs(uid), 120, what=f"series {series_uid} delivered")
    jobs = [j for uid, _ in [(split_uid, None), *many] for j in site.store.jobs_for_series(uid)]
    assert len(jobs) == 5, "one job per series"
    results = [r for j in jobs for r in site.store.job_results(j.id)]
    assert results and {r.state for r in results} == {ResultState.DELIVERED}
    assert {r.attempts for r in results} == {1}, "no result sent twice"
    sent = sum(r.get("delivered", 0) for text in site.logs() for r in audit_records(text, "delivery"))
    assert sent == len(results), f"{sent} deliveries for {len(results)} results"
    owners = {e["detail"].split(":")[1] for j in jobs for e in site.store.job_events(j.id)
              if e["state"] == JobState.RUNNING}
    assert owners == {str(w.pid) for w in site.workers}, "both workers took jobs"
    assert site.store.job_counts() == {JobState.DELIVERED: 5}

    # a worker killed mid-job: its job is claimed again after its lease and finished by the other
    survivor, victim = site.workers
    survivor.signal(signal.SIGSTOP)  # the victim alone takes the next job
    try:
        killed_uid, files = _series(tmp_path, seed=30, slices=24)
        storescu(files, a.dicom_port, calling_ae="MOD9")
        (running,) = wait_for(lambda: [j for j in site.store.jobs_for_series(killed_uid)
                                       if j.state == JobState.RUNNING], 90, interval=0.05,
                              what="the victim running the job")
        assert f":{victim.pid}:" in running.lease_owner
        victim.signal(signal.SIGKILL)
    finally:
        survivor.signal(signal.SIGCONT)
    killed_at = time.monotonic()
    (done,) = wait_for(lambda: site.delivered_jobs(killed_uid), 120, what="the killed worker's job finished")
    runs = [e["detail"] for e in site.store.job_events(done.id) if e["state"] == JobState.RUNNING]
    assert done.runs == 2 and len(runs) == 2, runs
    assert f":{victim.pid}:" in runs[0] and f":{survivor.pid}:" in runs[1], runs
    assert any("worker lost" in (e["detail"] or "") for e in site.store.job_events(done.id))
    assert time.monotonic() - killed_at < 60


def test_a_shared_store_is_configured_by_url_without_a_password():
    config = parse_config({"store": {"url": "postgresql://ainode@db:5432/ainode"},
                           "runner": {"enabled": False}}, Path("."))
    assert config.store.url == "postgresql://ainode@db:5432/ainode" and not config.runner.enabled
    with pytest.raises(ConfigError, match="password"):
        parse_config({"store": {"url": "postgresql://ainode:secret@db/ainode"}}, Path("."))
    with pytest.raises(ConfigError, match="store.url"):
        parse_config({"store": {"url": "sqlite:///var/ainode.sqlite"}}, Path("."))
    with pytest.raises(ConfigError, match="store.nope"):
        parse_config({"store": {"nope": 1}}, Path("."))


def test_a_worker_without_a_shared_store_refuses_to_start(tmp_path: Path):
    import subprocess
    import sys

    config = tmp_path / "config.toml"
    config.write_text('[node]\ndata_dir = "data"\n')
    done = subprocess.run([sys.executable, "-m", "node.cli", "worker", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "[store] url" in done.stderr
