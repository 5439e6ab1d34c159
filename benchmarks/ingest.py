"""``ainode bench ingest``: C-STORE into the node (durable, indexed) vs a raw-write receiver.

Every receiver gets the same N 512×512 CT instances from dcmtk's ``storescu`` in the same
run, several times over (medians): once over one association, once from several senders
at the same time. The
baseline (:mod:`benchmarks.raw_scp`) only writes the bytes; the node fsyncs each file and
its directory, and files it under its series in its job store, before answering. The
same raw receiver with the node's fsyncs is timed too: what durability alone costs.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import httpx
import pydicom
from pydicom.uid import generate_uid

from benchmarks.results import markdown_table
from benchmarks.services import NodeProcess, free_port, storescu, wait_for
from benchmarks.progress import progress

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


class _Receiver:
    """One receiver under test, kept running across the repeats."""

    def __init__(self, label: str, key: str, port: int, stop: Callable[[], None],
                 indexed: Callable[[str, int], bool] | None = None) -> None:
        self.label, self.key, self.port, self.stop, self.indexed = label, key, port, stop, indexed

    def time(self, batch: Sequence[Path], senders: int) -> tuple[float, float | None]:
        """Seconds until every C-STORE of ``batch`` is answered, and (a node) until all are filed."""
        uid = pydicom.dcmread(batch[0], stop_before_pixels=True).SeriesInstanceUID
        t0 = time.perf_counter()
        acked = _send(batch, self.port, senders)
        if self.indexed is None:
            return acked, None
        check = self.indexed
        wait_for(lambda: check(uid, len(batch)), 120, 0.02, what="the node to file every instance")
        return acked, time.perf_counter() - t0


def run_ingest(count: int = 300, senders: int = 4, workdir: Path | None = None,
               listeners: int = 1, repeats: int = 3) -> tuple[str, dict[str, float]]:
    """Run the benchmark; returns the markdown section body and the raw figures (medians).

    Every receiver runs at once (idle while another is timed); each repeat sends a new
    series (new UIDs: a node answers a repeated instance without storing it) to each of
    them in turn, in a rotated order, once from one sender and once from ``senders``.
    ``listeners`` above 1: the node is also timed with that many listener processes.
    """
    from models.phantoms.head_ct import generate_head_ct, write_phantom

    tmp = Path(workdir or tempfile.mkdtemp(prefix="ainode-bench-ingest-"))
    phantom = generate_head_ct(seed=0, slices=count, hematoma=False)
    files = sorted(p for p in write_phantom(phantom, tmp / "series-a") if p.suffix == ".dcm")
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    batches = [(_series_copy(files, tmp / f"one-{r}"), _series_copy(files, tmp / f"many-{r}"))
               for r in progress(range(repeats), "ingest: series copies")]
    receivers = [_raw(tmp / "raw", "raw", "raw-write pynetdicom SCP (baseline)"),
                 _raw(tmp / "raw-durable", "durable", "raw-write pynetdicom SCP + fsync, rename, directory fsync",
                      "--durable")]
    for n in dict.fromkeys((1, listeners)):
        receivers.append(_node(tmp / f"node-{n}", n))
    times: dict[str, list[float]] = {}
    try:
        for receiver in receivers:
            _send(files[:10], receiver.port, 1)  # warm-up
        for r in progress(range(repeats), "ingest: repeats"):
            one, many = batches[r]
            for receiver in receivers[r % len(receivers):] + receivers[:r % len(receivers)]:
                for suffix, batch, n_senders in (("one", one, 1), ("many", many, senders)):
                    acked, indexed = receiver.time(batch, n_senders)
                    times.setdefault(f"{receiver.key}_{suffix}", []).append(acked)
                    if indexed is not None:
                        times.setdefault(f"{receiver.key}_{suffix}_indexed", []).append(indexed)
    finally:
        for receiver in receivers:
            receiver.stop()
    figures: dict[str, float] = {"count": count, "megabytes": megabytes, "repeats": repeats}
    figures.update({key: statistics.median(values) for key, values in times.items()})
    rows = []
    for n_senders, suffix in ((1, "one"), (senders, "many")):
        raw = figures[f"raw_{suffix}"]
        for receiver in receivers:
            key = f"{receiver.key}_{suffix}"
            spread = f"{min(times[key]):.2f}–{max(times[key]):.2f}"
            indexed = f"{figures[key + '_indexed']:.2f}" if key + "_indexed" in figures else "–"
            rows.append([receiver.label, n_senders, f"{figures[key]:.2f}", spread, indexed,
                         f"{count / figures[key]:.0f}", f"{raw / figures[key]:.2f}×"])
    body = (
        f"{count} CT instances of 512×512 int16 ({megabytes:.0f} MB) per series, sent with dcmtk `storescu` over "
        f"loopback; {repeats} repeats, each a new series to every receiver in turn (rotated order, all receivers "
        "running throughout). 'acked' is the senders' wall time (every C-STORE answered), median and range; "
        "'filed' adds the time until the node's job store holds every instance under its series (median). "
        "Ratio = median baseline time / median time (above 1: faster than the baseline).\n\n"
        + markdown_table(["receiver", "senders", "acked (s)", "acked range (s)", "filed (s)", "instances/s",
                          "ratio"], rows)
    )
    return body, figures


def _raw(out: Path, key: str, label: str, *flags: str) -> _Receiver:
    """The raw pynetdicom receiver (:mod:`benchmarks.raw_scp`), started."""
    port = free_port()
    raw = subprocess.Popen([sys.executable, "-m", "benchmarks.raw_scp", "--port", str(port), "--out", str(out),
                            *flags])

    def stop() -> None:
        raw.terminate()
        raw.wait()

    try:
        _wait_port(port)
    except BaseException:
        stop()
        raise
    return _Receiver(label, key, port, stop)


def _node(workdir: Path, listeners: int) -> _Receiver:
    """A node with ``listeners`` listener processes and nothing to route, started."""
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

    def filed(series_uid: str, count: int) -> bool:
        response = httpx.get(f"{node.http_url}/api/series/{series_uid}", timeout=5)
        return response.status_code == 200 and response.json()["instance_count"] == count

    label = f"ainode, {listeners} listener{'s' if listeners > 1 else ''} (fsync + job store, filed under its series)"
    return _Receiver(label, "node" if listeners == 1 else f"node{listeners}", dicom_port, node.stop, filed)
