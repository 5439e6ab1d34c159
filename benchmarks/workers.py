"""``ainode bench workers``: job throughput of one vs two ``ainode worker`` processes on a PostgreSQL store.

Each run is a fresh site on this machine: a PostgreSQL database, an ingest-only node
(``[runner] enabled = false``) delivering to a raw-write pynetdicom receiver as its
PACS, and K workers (one job at a time each). The workers are started and their models
loaded, then paused (SIGSTOP); the head CT phantoms are sent and routed into
queued jobs; the workers are resumed and the clock runs until the last job is written.
So the figure is jobs per second of the workers alone, start-up and ingest left out.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from node.states import JobState
from benchmarks.postgres import PostgresServer
from benchmarks.results import markdown_table
from benchmarks.scale_out import WorkerProcess, shared_store_toml
from benchmarks.services import HEAD_CT_ROUTE, NodeProcess, free_port, storescu, wait_for
from benchmarks.progress import progress

__all__ = ["run_workers"]


def _site_toml(dicom_port: int, http_port: int, pacs_port: int, url: str, *, runner_enabled: bool) -> str:
    return f"""
[node]
dicom_host = "127.0.0.1"
dicom_port = {dicom_port}
http_port = {http_port}
data_dir = "data"

[assembler]
quiet_seconds = 1.0
poll_seconds = 0.2

[[destinations]]
name = "pacs"
host = "127.0.0.1"
port = {pacs_port}
ae_title = "RAWSCP"
{HEAD_CT_ROUTE}
{shared_store_toml(url, runner_enabled=runner_enabled, lease_seconds=120)}
"""


def _one_run(root: Path, postgres: PostgresServer, workers: int, series: list[list[Path]], pacs_port: int,
             ) -> dict[str, float]:
    """Seconds from resuming ``workers`` workers to the last of ``series`` jobs written."""
    from node.store.postgres import PostgresJobStore

    url = postgres.create_database(f"bench_workers_{workers}")
    http_port, dicom_port = free_port(), free_port()
    ingest = NodeProcess(root / "ingest", _site_toml(dicom_port, http_port, pacs_port, url, runner_enabled=False))
    ingest.start(http_port)
    pool = [WorkerProcess(root / f"worker-{i}", _site_toml(0, 0, pacs_port, url, runner_enabled=True), deliver=True)
            for i in range(workers)]
    store = PostgresJobStore(url)
    try:
        for worker in pool:
            worker.start()
            wait_for(lambda w=worker: "models loaded" in w.log_text(), 120, what="the worker's models")
            worker.signal(signal.SIGSTOP)
        for files in series:
            storescu(files, dicom_port)
        wait_for(lambda: store.job_counts().get(JobState.QUEUED, 0) == len(series), 120, what="every job queued")
        started = time.time()
        for worker in pool:
            worker.signal(signal.SIGCONT)

        def finished() -> bool:
            counts = store.job_counts()
            return counts.get(JobState.WRITTEN, 0) + counts.get(JobState.DELIVERED, 0) == len(series)

        wait_for(finished, 600, 0.1, what="every job written")
        jobs = [j for files in series for j in store.jobs_for_series(_series_uid(files))]
        written = [e["at"] for j in jobs for e in store.job_events(j.id) if e["state"] == JobState.WRITTEN]
        owners = {e["detail"].split(":")[1] for j in jobs for e in store.job_events(j.id)
                  if e["state"] == JobState.RUNNING}
        return {"seconds": max(written) - started, "jobs": len(jobs), "workers_used": len(owners)}
    finally:
        for worker in pool:
            worker.stop()
        ingest.stop()
        store.close()


def _series_uid(files: list[Path]) -> str:
    import pydicom

    return str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


def run_workers(series: int = 8, slices: int = 24, workdir: Path | None = None) -> tuple[str, dict[str, float]]:
    """Run the benchmark; returns the markdown section body and the raw figures."""
    from models.phantoms.head_ct import generate_head_ct, write_phantom

    tmp = Path(workdir or tempfile.mkdtemp(prefix="ainode-bench-workers-"))
    batch = []
    for i in range(series):
        phantom = generate_head_ct(seed=100 + i, slices=slices, hematoma=bool(i % 2))
        batch.append(sorted(p for p in write_phantom(phantom, tmp / f"series-{i}") if p.suffix == ".dcm"))
    pacs_port = free_port()
    pacs = subprocess.Popen([sys.executable, "-m", "benchmarks.raw_scp", "--port", str(pacs_port),
                             "--out", str(tmp / "pacs")])
    figures: dict[str, float] = {"series": series, "slices": slices}
    try:
        with PostgresServer() as postgres:
            for workers in progress((1, 2), "workers: runs"):
                run = _one_run(tmp / f"site-{workers}", postgres, workers, batch, pacs_port)
                figures[f"seconds_{workers}"] = run["seconds"]
                figures[f"used_{workers}"] = run["workers_used"]
    finally:
        pacs.terminate()
        pacs.wait()
    one, two = figures["seconds_1"], figures["seconds_2"]
    rows = [
        ["1 worker (baseline)", f"{one:.1f}", f"{series / one:.2f}", int(figures["used_1"]), "1.00×"],
        ["2 workers", f"{two:.1f}", f"{series / two:.2f}", int(figures["used_2"]), f"{one / two:.2f}×"],
    ]
    body = (
        f"{series} head CT phantoms of {slices} slices (512×512), `head-ct-hematoma` on ONNX Runtime CPU; PostgreSQL "
        "job store; an ingest-only node; each worker one job at a time (`[runner] workers = 1`). Timed from "
        "resuming the paused, warmed-up workers with every job queued to the last job written. Ratio = "
        "1-worker time / 2-worker time.\n\n"
        + markdown_table(["workers", "seconds", "jobs/s", "workers that ran jobs", "ratio"], rows)
    )
    return body, figures
