"""Ingest under faults, over real associations: pynetdicom SCUs, dcmtk ``echoscu``, raw TCP
garbage, and a real (small) tmpfs for the disk watermark. No network mocks."""
from __future__ import annotations

import errno
import logging
import os
import random
import resource
import shutil
import socket
import struct
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification  # type: ignore[attr-defined]

from node.ingest.disk import DiskGuard
from node.ingest import IngestServer
from node.logs import _JsonFormatter
from node.metrics import Metrics
from node.store.spool import Spool, write_durable
from node.store import JobStore
from node.dicom.uids import is_valid_uid

_MIB = 1024 * 1024
_SUCCESS, _OUT_OF_RESOURCES, _MISMATCH, _CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xA900, 0xC000


@dataclass
class _Node:
    server: IngestServer
    store: JobStore
    spool: Spool
    metrics: Metrics

    @property
    def port(self) -> int:
        return self.server.port

    def rejected(self, reason: str) -> float:
        return self.metrics.instances_rejected.labels(reason)._value.get()

    def received(self, outcome: str) -> float:
        return self.metrics.instances_received.labels(outcome)._value.get()

    def spool_files(self) -> list[Path]:
        """Everything in the instance spool, temporary files included."""
        return sorted(self.spool.instances.iterdir())


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., _Node]]:
    """Start IngestServers on 127.0.0.1, port 0; all are stopped after the test."""
    nodes: list[_Node] = []

    def make(spool_root: Path | None = None, **kwargs: object) -> _Node:
        n = len(nodes)
        store = JobStore(tmp_path / f"db{n}.sqlite")
        spool = Spool(spool_root or tmp_path / f"spool{n}")
        metrics = Metrics()
        server = IngestServer("AINODE", "127.0.0.1", 0, store, spool, metrics, **kwargs)  # type: ignore[arg-type]
        server.start()
        nodes.append(_Node(server, store, spool, metrics))
        return nodes[-1]

    yield make
    for node in nodes:
        node.server.stop()
        node.store.close()


@pytest.fixture
def send_files_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom sends a file's encoded dataset byte for byte, its command UIDs from the file meta."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def _associate(port: int, **kwargs: object):
    ae = AE(ae_title="TESTSCU")
    for sop_class in (CTImageStorage, MRImageStorage):
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
            ae.add_requested_context(sop_class, syntax)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="AINODE", **kwargs)


def _store(port: int, *items: Path | Dataset) -> list[int]:
    assoc = _associate(port)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(item).Status) for item in items]
    finally:
        assoc.release()


def _header(**values: object) -> Dataset:
    """A small CT header with patient data that must never reach a log."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "SECRET^PATIENT"
    ds.PatientID = "SECRET-ID-4711"
    ds.Modality = "CT"
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def _encode(ds: Dataset, implicit: bool = False) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_dataset(fp, ds)
    return fp.getvalue()


def _part10(path: Path, sop_class: str, sop_instance: str, syntax: str, body: bytes | Iterator[bytes]) -> Path:
    """A DICOM file whose dataset bytes are exactly ``body`` (which need not parse)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    with path.open("wb") as out:
        out.write(b"\0" * 128 + b"DICM" + fp.getvalue())
        for chunk in [body] if isinstance(body, bytes) else body:
            out.write(chunk)
    return path


def _deflate(*parts: bytes | tuple[int, int]) -> Iterator[bytes]:
    """Raw deflate of ``parts``; ``(n, byte)`` stands for n copies of one byte, never held whole."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    for part in parts:
        if isinstance(part, bytes):
            yield deflater.compress(part)
            continue
        count, value = part
        block = bytes([value]) * _MIB
        for start in range(0, count, _MIB):
            yield deflater.compress(block[: min(_MIB, count - start)])
    yield deflater.flush()


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """An Explicit VR Little Endian element (short or long length form by VR)."""
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV"):
        return struct.pack("<HH2sHL", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _temp_files(node: _Node) -> list[Path]:
    return [p for p in node.spool_files() if p.name.endswith(".tmp")]


# 1. concurrent stores of one SOP Instance UID


def test_write_durable_gives_every_writer_its_own_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "1.2.3.dcm"
    payloads = [bytes([i]) * 200_000 for i in range(30)]
    barrier = threading.Barrier(len(payloads))
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        barrier.wait()
        try:
            write_durable(target, data)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.2.3.dcm"]


def test_write_durable_removes_its_temporary_file_when_the_write_fails(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * 1000
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        write_durable(tmp_path / "1.2.3.dcm", chunks())
    assert list(tmp_path.iterdir()) == []


def test_concurrent_stores_of_one_uid_all_succeed_and_store_it_once(make_node, small_head_ct) -> None:
    node = make_node()
    _, files = small_head_ct
    senders = 30
    barrier = threading.Barrier(senders)
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        assoc = _associate(node.port)
        try:
            barrier.wait(timeout=60)
            status = int(assoc.send_c_store(files[0]).Status)
        finally:
            assoc.release()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert statuses == [_SUCCESS] * senders
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID
    assert [p.name for p in node.spool_files()] == [f"{uid}.dcm"]
    assert pydicom.dcmread(node.spool.instance_path(uid)).PixelData == pydicom.dcmread(files[0]).PixelData
    assert node.store.has_instance(uid)
    assert node.received("stored") == 1 and node.received("duplicate") == senders - 1


# 2. UID validation


@pytest.mark.parametrize("uid", ["1.2.3", "0", "1.2.0.3", "2.25." + "9" * 59, "1.2.840.10008.5.1.4.1.1.2"])
def test_valid_uids_are_accepted(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize("uid", [
    "", ".", "..", "1..2", "1.2.", ".1.2", "1.2\n", "1.2 ", "1.2\0", "1.02", "01.2", "1.a", "../1",
    "1" * 65, "1.2/3", None, 12,
])
def test_invalid_uids_are_refused(uid: object) -> None:
    assert not is_valid_uid(uid)


@pytest.mark.parametrize("uid", [".", "..", "1..2", "1.2\n", "../1.2"])
def test_spool_names_no_file_after_something_that_is_not_a_uid(tmp_path: Path, uid: str) -> None:
    with pytest.raises(ValueError):
        Spool(tmp_path).instance_path(uid)


def test_spool_recovery_still_removes_leftover_temporary_files(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    leftover = spool.instances / ".1.2.3.dcm.k2j4h5.tmp"
    leftover.write_bytes(b"partial")
    assert spool.temporary_files() == [leftover]
    assert spool.recover(set()) == []
    assert not leftover.exists()


# 3. the header is read before the answer


@pytest.mark.parametrize("values", [
    {"SeriesInstanceUID": "1.02.3"},
    {"StudyInstanceUID": "1..2"},
    {"SeriesInstanceUID": None},
    {"StudyInstanceUID": None},
])
def test_invalid_or_missing_study_and_series_uids_are_refused(make_node, tmp_path, send_files_raw, values) -> None:
    node = make_node()
    ds = _header(**values)
    path = _part10(tmp_path / "x.dcm", ds.SOPClassUID, ds.SOPInstanceUID, ExplicitVRLittleEndian, _encode(ds))
    assert _store(node.port, path) == [_CANNOT_UNDERSTAND]
    assert node.rejected("invalid_uid") == 1
    assert node.spool_files() == [] and not node.store.has_instance(ds.SOPInstanceUID)


def test_a_sop_instance_uid_with_an_empty_component_is_refused(make_node, tmp_path, send_files_raw) -> None:
    node = make_node()
    ds = _header(SOPInstanceUID="1.2..3")
    path = _part10(tmp_path / "x.dcm", CTImageStorage, "1.2..3", ExplicitVRLittleEndian, _encode(ds))
    assert _store(node.port, path) == [_CANNOT_UNDERSTAND]
    assert node.rejected("invalid_uid") == 1
    assert node.spool_files() == []


def test_the_dataset_sop_class_must_be_the_commands(make_node, tmp_path, send_files_raw) -> None:
    node = make_node()
    ds = _header(SOPClassUID=MRImageStorage)
    path = _part10(tmp_path / "x.dcm", CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian, _encode(ds))
    assert _store(node.port, path) == [_MISMATCH]
    assert node.rejected("uid_mismatch") == 1
    assert node.spool_files() == []


def test_the_dataset_sop_instance_uid_must_be_the_commands(make_node, tmp_path, send_files_raw) -> None:
    node = make_node()
    ds = _header()
    other = generate_uid()
    path = _part10(tmp_path / "x.dcm", CTImageStorage, other, ExplicitVRLittleEndian, _encode(ds))
    assert _store(node.port, path) == [_MISMATCH]
    assert node.rejected("uid_mismatch") == 1
    assert node.spool_files() == [] and not node.store.has_instance(other)


def _unknown_vr(ds: Dataset) -> bytes:
    return _element(0x0008, 0x0016, b"ZZ", b"1.2\0") + _encode(ds)[_encode(ds).index(b"\x08\x00\x18\x00"):]


def _overlong(ds: Dataset) -> bytes:
    return _encode(ds) + struct.pack("<HH2sH", 0x0020, 0x0011, b"IS", 0xFFF0) + b"12"


def _truncated(ds: Dataset) -> bytes:
    return _encode(ds)[:-10]


def _random(ds: Dataset) -> bytes:
    return random.Random(3).randbytes(4000)


@pytest.mark.parametrize("body", [_unknown_vr, _overlong, _truncated, _random],
                         ids=["unknown-vr", "overlong-length", "truncated", "random"])
def test_a_header_that_does_not_parse_is_refused_and_leaves_nothing(make_node, tmp_path, send_files_raw, body) -> None:
    node = make_node()
    ds = _header()
    path = _part10(tmp_path / "x.dcm", CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian, body(ds))
    assert _store(node.port, path) == [_CANNOT_UNDERSTAND]
    assert node.rejected("unreadable") == 1
    assert node.spool_files() == [] and not node.store.has_instance(ds.SOPInstanceUID)


def test_refusals_are_logged_with_uids_and_never_patient_data(make_node, tmp_path, send_files_raw, caplog) -> None:
    node = make_node()
    ds = _header(SOPClassUID=MRImageStorage)
    path = _part10(tmp_path / "x.dcm", CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian, _encode(ds))
    with caplog.at_level(logging.DEBUG, logger="ainode.ingest"):
        assert _store(node.port, path) == [_MISMATCH]
    lines = [_JsonFormatter().format(r) for r in caplog.records if r.name.startswith("ainode")]
    assert any(ds.SOPInstanceUID in line and "uid_mismatch" in line for line in lines)
    assert not any("SECRET" in line for line in lines)


def test_a_dataset_larger_than_the_limit_is_refused(make_node, small_head_ct) -> None:
    node = make_node(max_dataset_bytes=64 * 1024)
    _, files = small_head_ct
    assert _store(node.port, files[0]) == [_OUT_OF_RESOURCES]
    assert node.rejected("too_large") == 1
    assert node.spool_files() == []


def test_a_deflated_dataset_is_read_and_stored(make_node, tmp_path, send_files_raw) -> None:
    node = make_node(max_dataset_bytes=4 * _MIB)
    ds = _header()
    data = _encode(ds) + _element(0x0042, 0x0011, b"OB", b"\x07" * (3 * _MIB))
    path = _part10(tmp_path / "x.dcm", CTImageStorage, ds.SOPInstanceUID, DeflatedExplicitVRLittleEndian,
                   _deflate(data))
    assert _store(node.port, path) == [_SUCCESS]
    stored = pydicom.dcmread(node.spool.instance_path(ds.SOPInstanceUID))
    assert stored.SOPInstanceUID == ds.SOPInstanceUID and len(stored.EncapsulatedDocument) == 3 * _MIB


def test_a_deflate_bomb_is_refused_without_being_inflated(make_node, tmp_path, send_files_raw) -> None:
    """512 MiB of zeros deflate to half a MiB; the node stops inflating at its limit."""
    node = make_node(max_dataset_bytes=8 * _MIB)
    ds = _header()
    bomb = 512 * _MIB
    path = _part10(tmp_path / "bomb.dcm", CTImageStorage, ds.SOPInstanceUID, DeflatedExplicitVRLittleEndian,
                   _deflate(_encode(ds), struct.pack("<HH2sHL", 0x0042, 0x0011, b"OB", 0, bomb), (bomb, 0)))
    assert path.stat().st_size < 2 * _MIB
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert _store(node.port, path) == [_OUT_OF_RESOURCES]
    peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert peak_growth < 128 * _MIB, f"the bomb was inflated in memory ({peak_growth / _MIB:.0f} MiB)"
    assert node.rejected("too_large") == 1
    assert node.spool_files() == []


def test_a_truncated_deflate_stream_is_refused(make_node, tmp_path, send_files_raw) -> None:
    node = make_node()
    ds = _header()
    deflated = b"".join(_deflate(_encode(ds)))
    path = _part10(tmp_path / "x.dcm", CTImageStorage, ds.SOPInstanceUID, DeflatedExplicitVRLittleEndian,
                   deflated[: len(deflated) // 2])
    assert _store(node.port, path) == [_CANNOT_UNDERSTAND]
    assert node.rejected("unreadable") == 1
    assert node.spool_files() == []


# 4. garbage on the DICOM port


def _echoscu(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["echoscu", "-aet", "MODALITY", "-aec", "AINODE", "-to", "10", "-ta", "10", "-td", "10",
         "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=60,
    )


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (TimeoutError, BlockingIOError):
        return False


def _garbage_connections(port: int, count: int) -> list[socket.socket]:
    """Half PDUs, random bytes, random PDUs of the right length, and silence."""
    rng = random.Random(11)
    socks = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        kind = i % 4
        if kind == 0:  # an A-ASSOCIATE-RQ header announcing 1000 bytes, and one of them: 7 bytes
            sock.sendall(struct.pack(">BBL", 0x01, 0, 1000) + b"\x01")
        elif kind == 1:
            sock.sendall(rng.randbytes(rng.randrange(1, 300)))
        elif kind == 2:
            payload = rng.randbytes(rng.randrange(0, 200))
            sock.sendall(struct.pack(">BBL", rng.randrange(1, 8), 0, len(payload)) + payload)
        socks.append(sock)
    return socks


def _broken_p_data(port: int):
    """An established association, then half of a P-DATA-TF PDU and nothing more."""
    assoc = _associate(port)
    assert assoc.is_established
    assoc.dul.socket.socket.sendall(struct.pack(">BBL", 0x04, 0, 1000) + b"\x00" * 10)
    return assoc


def test_garbage_connections_are_closed_their_threads_end_and_senders_get_in(make_node) -> None:
    node = make_node(network_timeout=2.0)
    time.sleep(0.3)
    baseline = threading.active_count()
    garbage = _garbage_connections(node.port, 50)
    broken = [_broken_p_data(node.port) for _ in range(3)]
    broken.append(_associate(node.port))  # established, then silent
    echo = _echoscu(node.port)
    assert echo.returncode == 0, f"C-ECHO while garbage connections are open: {echo.stdout}{echo.stderr}"
    assert _wait_for(lambda: all(_closed_by_peer(s) for s in garbage), 20), \
        "idle and half-open connections were not closed"
    assert _wait_for(lambda: not any(a.is_alive() for a in broken), 20), \
        "silent associations, or ones with half a P-DATA-TF PDU, were not ended"
    assert all(a.is_aborted for a in broken)
    assert _wait_for(lambda: threading.active_count() <= baseline, 20), \
        f"{threading.active_count()} threads, {baseline} before the garbage"
    echo = _echoscu(node.port)
    assert echo.returncode == 0, echo.stdout + echo.stderr
    for sock in garbage:
        sock.close()


def test_two_hundred_idle_connections_do_not_lock_a_modality_out(make_node) -> None:
    node = make_node(network_timeout=2.0)
    time.sleep(0.3)
    baseline = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(200)]
    echoes = [_echoscu(node.port).returncode for _ in range(16)]
    assert echoes == [0] * 16
    assert _wait_for(lambda: threading.active_count() <= baseline, 20)
    for sock in idle:
        sock.close()


def test_a_half_sent_pdu_does_not_hold_a_connection_forever(make_node) -> None:
    node = make_node(network_timeout=1.0)
    time.sleep(0.3)
    baseline = threading.active_count()
    sock = socket.create_connection(("127.0.0.1", node.port))
    sock.sendall(struct.pack(">BBL", 0x01, 0, 1000) + b"\x01")
    assert _wait_for(lambda: _closed_by_peer(sock), 10)
    assert _wait_for(lambda: threading.active_count() <= baseline, 10)
    sock.close()


def test_the_association_limit_rejects_transiently_and_idle_connections_take_no_slot(make_node) -> None:
    node = make_node(max_associations=2, network_timeout=5.0)
    time.sleep(0.3)
    baseline = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(10)]
    held = [_associate(node.port) for _ in range(2)]
    assert all(a.is_established for a in held), "idle connections took association slots"
    received: list[object] = []
    extra = _associate(node.port, evt_handlers=[(evt.EVT_ACSE_RECV, lambda e: received.append(e.primitive))])
    assert extra.is_rejected
    (reply,) = received
    assert (reply.result, reply.result_source, reply.diagnostic) == (0x02, 0x03, 0x02)  # type: ignore[attr-defined]
    echo = _echoscu(node.port)
    assert echo.returncode != 0 and "Rejected Transient" in echo.stdout + echo.stderr
    assert node.metrics.associations_rejected.labels("association_limit")._value.get() == 2
    held[0].release()
    assert _wait_for(lambda: _echoscu(node.port).returncode == 0, 10)
    held[1].release()
    for sock in idle:
        sock.close()
    assert _wait_for(lambda: threading.active_count() <= baseline, 20), "rejected associations left threads"


# 5. disk watermark


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MiB tmpfs, mounted for the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (this test runs as root in CI)")
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _free(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _fill(path: Path, leave_free: int) -> None:
    """Grow ``path`` until its file system has about ``leave_free`` bytes free (0: full)."""
    with path.open("ab") as f:
        while (room := _free(path.parent) - leave_free) > 0:
            try:
                f.write(b"\xff" * min(room, _MIB))
                f.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


def _gauge(metrics: Metrics, name: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_disk_guard_floor_and_incoming_size(small_disk: Path) -> None:
    guard = DiskGuard(small_disk, min_free_mb=4, min_free_percent=0, cache_seconds=0)
    status = guard.status()
    assert status["total_bytes"] == 16 * _MIB and status["floor_bytes"] == 4 * _MIB
    assert not status["below_watermark"] and status["free_bytes"] == _free(small_disk)
    room = status["free_bytes"] - status["floor_bytes"]
    assert guard.ok() and guard.ok(room) and not guard.ok(room + 1)
    assert DiskGuard(small_disk, min_free_mb=1, min_free_percent=50).status()["floor_bytes"] == 8 * _MIB
    _fill(small_disk / "filler", leave_free=3 * _MIB)
    assert not guard.ok() and guard.status()["below_watermark"]
    (small_disk / "filler").unlink()
    assert guard.ok()


def test_disk_guard_counts_what_it_admitted_until_it_looks_again(small_disk: Path) -> None:
    guard = DiskGuard(small_disk, min_free_mb=4, min_free_percent=0, cache_seconds=3600)
    room = guard.status()["free_bytes"] - 4 * _MIB
    assert guard.reserve(room - _MIB)
    assert guard.ok(_MIB) and not guard.ok(_MIB + 1)
    assert not guard.reserve(2 * _MIB)
    with pytest.raises(ValueError):
        DiskGuard(small_disk, min_free_mb=-1, min_free_percent=0)
    with pytest.raises(ValueError):
        DiskGuard(small_disk, min_free_mb=0, min_free_percent=101)


def test_below_the_floor_stores_are_refused_before_the_disk_fills_and_resume_after(
    make_node, small_disk, small_head_ct,
) -> None:
    _, files = small_head_ct
    floor = 6 * _MIB
    node = make_node(spool_root=small_disk / "spool",
                     disk_guard=DiskGuard(small_disk, min_free_mb=floor / _MIB, min_free_percent=0))
    size = files[0].stat().st_size
    _fill(small_disk / "filler", leave_free=floor + 2 * size + size // 2)
    time.sleep(0.6)
    statuses = _store(node.port, *files)
    assert statuses[:2] == [_SUCCESS, _SUCCESS]
    assert set(statuses[2:]) == {_OUT_OF_RESOURCES}
    assert _free(small_disk) > floor - size, "the floor was not kept"
    assert node.rejected("disk_full") == len(files) - 2
    assert _temp_files(node) == [] and len(node.spool_files()) == 2
    _fill(small_disk / "filler2", leave_free=floor - _MIB)
    time.sleep(0.6)
    assert _gauge(node.metrics, "ainode_disk_below_watermark") == 1.0
    assert _gauge(node.metrics, "ainode_disk_free_bytes") == pytest.approx(_free(small_disk), abs=_MIB)
    (small_disk / "filler").unlink()
    (small_disk / "filler2").unlink()
    time.sleep(0.6)
    assert _gauge(node.metrics, "ainode_disk_below_watermark") == 0.0
    assert _store(node.port, *files[2:]) == [_SUCCESS] * (len(files) - 2)
    assert len(node.spool_files()) == len(files) and _temp_files(node) == []


def test_a_write_that_runs_out_of_space_leaves_no_temporary_file(make_node, small_disk, small_head_ct) -> None:
    """The guard's view can be stale (another writer filled the disk): ENOSPC is still Out of Resources."""
    _, files = small_head_ct
    guard = DiskGuard(small_disk, min_free_mb=0, min_free_percent=0, cache_seconds=3600)
    node = make_node(spool_root=small_disk / "spool", disk_guard=guard)
    assert guard.ok()
    _fill(small_disk / "filler", leave_free=0)
    assert _store(node.port, files[0]) == [_OUT_OF_RESOURCES]
    assert node.rejected("disk_full") == 1
    assert node.spool_files() == [] and not node.store.has_instance(pydicom.dcmread(files[0]).SOPInstanceUID)
    (small_disk / "filler").unlink()
    assert _store(node.port, files[0]) == [_SUCCESS]
    assert _temp_files(node) == []


def test_tools_are_present() -> None:
    assert shutil.which("echoscu"), "dcmtk's echoscu is needed (apt-get install dcmtk)"
