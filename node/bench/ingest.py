"""``ainode bench ingest``: C-STORE into the node (durable, indexed) vs a raw-write receiver.

Both receivers get the same N 512×512 CT instances from dcmtk's ``storescu`` in the same
run: once over one association, once from several senders at the same time. The
baseline (:mod:`node.bench.raw_scp`) only writes the bytes; the node fsyncs each file and
its directory, and files it under its series in its job store, before answering. The
same raw receiver with the node's fsyncs is timed too: what durability alone costs.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import httpx
import pydicom
from pydicom.uid import generate_uid

from .results import markdown_table
from .services import NodeProcess, free_port, storescu, wait_for
from .progress import progress

__all__ = ["run_ingest"]


def _series_copy(files: Sequence[Path], out: Path) -> list[Path]:
    """The same pixels as a new series (new Series and SOP Instance UIDs)."""
    out.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    copies = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        copy = out / path.name
        ds.save_as(copy, enforce_file_format=True)
        copies.append(copy)
    return copies


def _send(files: Sequence[Path], port: int, senders: int) -> float:
    """Seconds for ``senders`` storescu processes to send ``files`` (split evenly)."""
    parts = [list(files[i::senders]) for i in range(senders)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(lambda part: storescu(part, port), parts))
    return time.perf_counter() - t0


def _wait_port(port: int) -> None:
    import socket

    def accepts() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(accepts, 30, 0.05, what=f"port {port}")


def run_ingest(count: int = 300, senders: int = 4, workdir: Path | None = None,
               listeners: int = 1) -> tuple[str, dict[str, float]]:
    """Run the benchmark; returns the markdown section body and the raw figures.

    ``listeners`` above 1: the node is timed once with one listener process and once
    with ``listeners`` (``[node] listeners``), against the same baseline.
    """
    from models.phantoms.head_ct import generate_head_ct, write_phantom

    tmp = Path(workdir or tempfile.mkdtemp(prefix="ainode-bench-ingest-"))
    phantom = generate_head_ct(seed=0, slices=count, hematoma=False)
    files = sorted(p for p in write_phantom(phantom, tmp / "series-a") if p.suffix == ".dcm")
    files_b = _series_copy(files, tmp / "series-b")
    megabytes = sum(p.stat().st_size for p in files) / 1e6

    raw_one, raw_many = _time_raw(tmp / "raw", files, files_b, senders)
    durable_one, durable_many = _time_raw(tmp / "raw-durable", files, files_b, senders, "--durable")
    figures: dict[str, float] = {"count": count, "megabytes": megabytes, "raw_one": raw_one, "raw_many": raw_many,
                                 "raw_durable_one": durable_one, "raw_durable_many": durable_many}
    for n in progress(dict.fromkeys((1, listeners)), "ingest: listener counts"):
        figures.update(_time_node(tmp / f"node-{n}", n, files, files_b, senders, "node" if n == 1 else f"node{n}"))
    rows = []
    for n_senders, raw, suffix in ((1, raw_one, "one"), (senders, raw_many, "many")):
        rows.append(["raw-write pynetdicom SCP (baseline)", n_senders, f"{raw:.2f}", "–", f"{count / raw:.0f}", "1.00×"])
        durable = figures[f"raw_durable_{suffix}"]
        rows.append(["raw-write pynetdicom SCP + fsync, rename, directory fsync", n_senders, f"{durable:.2f}", "–",
                     f"{count / durable:.0f}", f"{raw / durable:.2f}×"])
        for n in dict.fromkeys((1, listeners)):
            label = f"{'node' if n == 1 else f'node{n}'}_{suffix}"
            rows.append([f"ainode, {n} listener{'s' if n > 1 else ''} (fsync + job store, filed under its series)", n_senders,
                         f"{figures[label]:.2f}", f"{figures[label + '_indexed']:.2f}", f"{count / figures[label]:.0f}",
                         f"{raw / figures[label]:.2f}×"])
    body = (
        f"{count} CT instances of 512×512 int16 ({megabytes:.0f} MB), sent with dcmtk `storescu` over loopback. "
        "'acked' is the senders' wall time (every C-STORE answered); 'indexed' adds the time until the "
        "node's job store holds every instance under its series. Ratio = baseline time / node time "
        "(above 1: the node is faster).\n\n"
        + markdown_table(["receiver", "senders", "acked (s)", "indexed (s)", "instances/s", "ratio"], rows)
    )
    return body, figures


def _time_raw(out: Path, files: Sequence[Path], files_b: Sequence[Path], senders: int,
              *flags: str) -> tuple[float, float]:
    """Seconds for the raw receiver to take ``files`` from one sender, then ``files_b`` from ``senders``."""
    port = free_port()
    raw = subprocess.Popen([sys.executable, "-m", "node.bench.raw_scp", "--port", str(port), "--out", str(out),
                            *flags])
    try:
        _wait_port(port)
        _send(files[:10], port, 1)  # warm-up
        return _send(files, port, 1), _send(files_b, port, senders)
    finally:
        raw.terminate()
        raw.wait()


def _time_node(workdir: Path, listeners: int, files: Sequence[Path], files_b: Sequence[Path], senders: int,
               prefix: str) -> dict[str, float]:
    """Seconds for the node (``listeners`` processes) to ack, and to index, each series."""
    http_port, dicom_port = free_port(), free_port()
    node = NodeProcess(workdir, f"""
[node]
dicom_host = "127.0.0.1"
dicom_port = {dicom_port}
http_port = {http_port}
data_dir = "data"
listeners = {listeners}
[assembler]
quiet_seconds = 600
""").start(http_port)
    figures: dict[str, float] = {}
    count = len(files)
    try:
        for label, batch, n_senders in ((f"{prefix}_one", files, 1), (f"{prefix}_many", files_b, senders)):
            uid = pydicom.dcmread(batch[0], stop_before_pixels=True).SeriesInstanceUID
            t0 = time.perf_counter()
            figures[label] = _send(batch, dicom_port, n_senders)

            def indexed() -> bool:
                response = httpx.get(f"{node.http_url}/api/series/{uid}", timeout=5)
                return response.status_code == 200 and response.json()["instance_count"] == count

            wait_for(indexed, 120, 0.02, what="the node to index every instance")
            figures[label + "_indexed"] = time.perf_counter() - t0
    finally:
        node.stop()
    return figures
