"""A large instance never sits whole in the node's memory, and nothing of a transfer cut off stays.

pynetdicom writes each received dataset to a file as it arrives; the node advertises a
1 MiB maximum PDU, reads the header from that file and copies it into the spool. The
dataset here is a 200 MiB CT generated straight to disk and sent with dcmtk's storescu;
the node runs in this process, so its peak resident memory is this process's.
"""
from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import _config
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from node.ingest import IngestServer
from node.ingest.header import read_file_meta
from node.metrics import Metrics
from node.store.spool import Spool
from node.store import JobStore

_MIB = 1024 * 1024
_PIXEL_BYTES = 200 * _MIB
_ROWS = 10240


def _write_large_ct(path: Path) -> str:
    """A CT whose 200 MiB of pixel data are written in 1 MiB pieces, never held whole."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = _ROWS
    ds.Columns = _PIXEL_BYTES // 2 // _ROWS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    write_file_meta_info(head, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    block = bytes(range(256)) * (_MIB // 256)
    with path.open("wb") as out:
        out.write(b"\0" * 128 + b"DICM" + head.getvalue() + body.getvalue())
        out.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, _PIXEL_BYTES))
        for _ in range(_PIXEL_BYTES // _MIB):
            out.write(block)
    return str(ds.SOPInstanceUID)


def _dataset_digest(path: Path) -> str:
    """SHA-256 of a DICOM file's dataset (after its file meta), read in pieces."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        _, offset = read_file_meta(fp, size)
        fp.seek(offset)
        while chunk := fp.read(_MIB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def large_ct(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("large") / "large-ct.dcm"
    uid = _write_large_ct(path)
    return path, uid


@pytest.fixture
def received_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where pynetdicom (and inflation) put temporary files during the test: watched, then empty."""
    directory = tmp_path / "received"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[..., tuple[IngestServer, JobStore, Spool, Metrics]]]:
    made = []

    def make(**kwargs: object) -> tuple[IngestServer, JobStore, Spool, Metrics]:
        store = JobStore(tmp_path / f"db{len(made)}.sqlite")
        spool = Spool(tmp_path / f"spool{len(made)}")
        metrics = Metrics()
        server = IngestServer("AINODE", "127.0.0.1", 0, store, spool, metrics, **kwargs)  # type: ignore[arg-type]
        server.start()
        made.append((server, store, spool, metrics))
        return made[-1]

    yield make
    for server, store, _, _ in made:
        server.stop()
        store.close()


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/self/status")


def _storescu(port: int, path: Path) -> subprocess.Popen[str]:
    """dcmtk's storescu sending ``path``, verbose (it names the response status)."""
    return subprocess.Popen(["storescu", "-v", "-aet", "MODALITY", "-aec", "AINODE", "-to", "30", "-ta", "30",
                             "-td", "30", "127.0.0.1", str(port), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(condition: Callable[[], bool], seconds: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def test_a_200_mib_instance_is_stored_without_sitting_in_memory(node, large_ct, received_files) -> None:
    path, uid = large_ct
    server, store, spool, metrics = node()
    assert _reset_peak_rss(), "this kernel cannot reset VmHWM"
    before = _status_bytes("VmRSS")
    sender = _storescu(server.port, path)
    out, _ = sender.communicate(timeout=300)
    growth = _status_bytes("VmHWM") - before
    assert sender.returncode == 0, out
    stored = spool.instance_path(uid)
    assert store.has_instance(uid)
    assert _dataset_digest(stored) == _dataset_digest(path), "the stored dataset is not the one sent"
    assert metrics.instances_received.labels("stored")._value.get() == 1
    print(f"peak RSS growth for a {path.stat().st_size / _MIB:.0f} MiB instance: {growth / _MIB:.1f} MiB")
    assert growth < 32 * _MIB, f"peak RSS grew {growth / _MIB:.0f} MiB for a 200 MiB dataset"
    assert list(received_files.iterdir()) == [], "pynetdicom's file of the dataset was left behind"


def test_an_oversized_instance_is_refused_by_its_file_size_before_it_is_read(node, large_ct, received_files) -> None:
    path, uid = large_ct
    server, store, spool, metrics = node(max_dataset_bytes=100 * _MIB)
    assert _reset_peak_rss()
    before = _status_bytes("VmRSS")
    sender = _storescu(server.port, path)
    out, _ = sender.communicate(timeout=300)
    growth = _status_bytes("VmHWM") - before
    assert "Received Store Response (Refused: OutOfResources)" in out, out
    assert metrics.instances_rejected.labels("too_large")._value.get() == 1
    assert not store.has_instance(uid) and list(spool.instances.iterdir()) == []
    assert growth < 32 * _MIB, f"peak RSS grew {growth / _MIB:.0f} MiB"
    assert list(received_files.iterdir()) == []


def test_a_transfer_cut_off_midway_leaves_no_file(node, large_ct, received_files) -> None:
    """A sender that stalls mid-dataset is timed out; one that dies is noticed: no file of either stays."""
    path, uid = large_ct
    server, store, spool, _ = node(network_timeout=2.0)

    def partial() -> list[Path]:
        return [p for p in received_files.iterdir() if p.stat().st_size > 16 * _MIB]

    for stop in (signal.SIGSTOP, signal.SIGKILL):
        sender = _storescu(server.port, path)
        try:
            assert _wait_for(lambda: bool(partial()), 60, every=0.005), "the transfer never started"
            os.kill(sender.pid, stop)
            assert _wait_for(lambda: list(received_files.iterdir()) == [], 20), \
                f"after {stop.name}, a partial dataset stayed: {list(received_files.iterdir())}"
        finally:
            sender.kill()
            sender.wait(timeout=30)
    assert not store.has_instance(uid) and list(spool.instances.iterdir()) == []


def test_datasets_pynetdicom_holds_in_memory_are_accepted_too(node, small_head_ct, monkeypatch) -> None:
    """With pynetdicom's flag turned off again (another SCP in the process), C-STORE still works."""
    _, files = small_head_ct
    server, store, spool, metrics = node()
    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", False)
    sender = _storescu(server.port, files[0])
    out, _ = sender.communicate(timeout=60)
    assert sender.returncode == 0, out
    assert metrics.instances_received.labels("stored")._value.get() == 1
    assert _dataset_digest(next(spool.instances.iterdir())) == _dataset_digest(files[0])
