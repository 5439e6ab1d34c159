"""The transport-independent acceptor: Part-10 files (as a STOW-RS endpoint hands them over),
encoded datasets (as a C-STORE carries them) and files on disk go through one path."""
from __future__ import annotations

import errno
import io
import os
import sqlite3
import threading
from enum import StrEnum
from pathlib import Path

import pydicom
import pytest
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import MPEG2MPML, generate_uid

from node.ingest import InstanceAcceptor, Outcome, Receipt
from node.ingest.header import read_file_meta
from node.metrics import Metrics
from node.store.spool import Spool
from node.store import JobStore
from node.states import InstanceState, SeriesState

_SUCCESS, _OUT_OF_RESOURCES, _MISMATCH, _CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xA900, 0xC000


class _Setup:
    """An acceptor over a fresh job store and spool, and what it counted."""

    def __init__(self, root: Path, **kwargs: object) -> None:
        self.db = root / "db.sqlite"
        self.store = JobStore(self.db)
        self.spool = Spool(root / "spool")
        self.metrics = Metrics()
        self.stored_calls = 0  # stored, left to the indexer
        self.filed_calls = 0  # stored and filed under its series at once
        self.acceptor = InstanceAcceptor(self.store, self.spool, self.metrics, wakeups=self,
                                         **kwargs)  # type: ignore[arg-type]

    def produced(self, *states: StrEnum) -> None:  # the acceptor's wake-ups, counted
        for state in states:
            if state is InstanceState.RECEIVED:
                self.stored_calls += 1
            elif state is SeriesState.RECEIVED:
                self.filed_calls += 1

    def released(self, series_uids: object) -> None:
        pass

    def rejected(self, reason: str) -> float:
        return self.metrics.instances_rejected.labels(reason)._value.get()

    def received(self, outcome: str) -> float:
        return self.metrics.instances_received.labels(outcome)._value.get()

    def spool_files(self) -> list[Path]:
        return sorted(self.spool.instances.iterdir())

    def row(self, sop_uid: str) -> sqlite3.Row:
        db = sqlite3.connect(self.db)
        db.row_factory = sqlite3.Row
        try:
            return db.execute("SELECT * FROM instances WHERE sop_instance_uid=?", (sop_uid,)).fetchone()
        finally:
            db.close()


@pytest.fixture
def setup(tmp_path: Path):
    made: list[_Setup] = []

    def make(**kwargs: object) -> _Setup:
        root = tmp_path / f"n{len(made)}"
        root.mkdir()
        made.append(_Setup(root, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.store.close()


def test_a_part10_file_is_stored_durably_and_recorded_with_its_series(setup, small_head_ct) -> None:
    node = setup()
    _, files = small_head_ct
    sent = pydicom.dcmread(files[0])
    receipt = node.acceptor.accept_part10(files[0].read_bytes(), "STOW:10.0.0.7")
    assert receipt == Receipt(Outcome.STORED, _SUCCESS, None, receipt.header)
    assert receipt.accepted
    assert receipt.header is not None
    assert (receipt.header.sop_instance_uid, receipt.header.series_instance_uid, receipt.header.study_instance_uid) \
        == (sent.SOPInstanceUID, sent.SeriesInstanceUID, sent.StudyInstanceUID)
    stored = pydicom.dcmread(node.spool.instance_path(sent.SOPInstanceUID))
    assert stored.PixelData == sent.PixelData
    assert stored.file_meta.MediaStorageSOPInstanceUID == sent.SOPInstanceUID
    assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    row = node.row(sent.SOPInstanceUID)
    assert (row["series_uid"], row["calling_ae"]) == (sent.SeriesInstanceUID, "STOW:10.0.0.7")
    assert node.received("stored") == 1 and (node.filed_calls, node.stored_calls) == (1, 0)
    assert row["state"] == "indexed"  # its header was read here: filed at once, the indexer has nothing to do
    series = node.store.get_series(sent.SeriesInstanceUID)
    assert series is not None and series.instance_count == 1 and series.attrs["Modality"] == sent.Modality


def test_a_duplicate_part10_file_is_reported_as_duplicate_and_stored_once(setup, small_head_ct) -> None:
    node = setup()
    _, files = small_head_ct
    data = files[0].read_bytes()
    first, again = node.acceptor.accept_part10(data, "A"), node.acceptor.accept_part10(data, "B")
    assert first.outcome is Outcome.STORED
    assert again.outcome is Outcome.DUPLICATE and again.status == _SUCCESS and again.accepted
    assert len(node.spool_files()) == 1
    assert node.received("stored") == 1 and node.received("duplicate") == 1 and node.filed_calls == 1


def _with_meta(path: Path, out: Path, sop_instance_uid: str | None = None) -> bytes:
    """``path``'s dataset after the meta pynetdicom writes when it receives a C-STORE into a
    file (naming ``sop_instance_uid`` instead of the dataset's own, if given); returns the dataset."""
    from pynetdicom.dsutils import create_file_meta, encode_file_meta

    sent = pydicom.dcmread(path, stop_before_pixels=True)
    meta, offset = read_file_meta(memoryview(path.read_bytes()), path.stat().st_size)
    dataset = path.read_bytes()[offset:]
    out.write_bytes(b"\0" * 128 + b"DICM" + encode_file_meta(create_file_meta(
        sop_class_uid=sent.SOPClassUID, sop_instance_uid=sop_instance_uid or sent.SOPInstanceUID,
        transfer_syntax=meta.TransferSyntaxUID)) + dataset)
    return dataset


def test_a_received_file_is_moved_into_the_spool_not_copied(setup, small_head_ct, tmp_path) -> None:
    """``take``: a file whose meta names the instance is renamed into the spool; any other
    is copied and left where it is."""
    node = setup()
    _, files = small_head_ct
    own, other = tmp_path / "own.dcm", tmp_path / "other.dcm"
    own_dataset = _with_meta(files[0], own)
    _with_meta(files[1], other, sop_instance_uid=generate_uid())  # its meta names another instance
    other_bytes = other.read_bytes()
    sent = [pydicom.dcmread(f) for f in files[:2]]
    assert node.acceptor.accept_file(own, "MOD", take=True).outcome is Outcome.STORED
    assert node.acceptor.accept_file(other, "MOD", sop_class_uid=sent[1].SOPClassUID,
                                     sop_instance_uid=sent[1].SOPInstanceUID, take=True).outcome is Outcome.STORED
    assert not own.exists(), "moved into the spool"
    assert other.read_bytes() == other_bytes, "copied, left as it was"
    stored = node.spool.instance_path(sent[0].SOPInstanceUID)
    assert stored.read_bytes().endswith(own_dataset) and pydicom.dcmread(stored).PixelData == sent[0].PixelData
    copied = pydicom.dcmread(node.spool.instance_path(sent[1].SOPInstanceUID))
    assert copied.file_meta.MediaStorageSOPInstanceUID == sent[1].SOPInstanceUID == copied.SOPInstanceUID


def test_a_received_file_on_another_file_system_is_copied(setup, small_head_ct, tmp_path, monkeypatch) -> None:
    node = setup()
    _, files = small_head_ct
    shm = Path("/dev/shm")
    if shm.is_dir() and shm.stat().st_dev != node.spool.instances.stat().st_dev:
        received = shm / f"ainode-test-{generate_uid()}.dcm"  # a real second file system
    else:  # none here: the move fails as a rename across file systems does
        received = tmp_path / "received.dcm"

        def cross_device(_source: object, _target: object) -> None:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

        monkeypatch.setattr("node.ingest.accept.move_durable", cross_device)
    try:
        dataset = _with_meta(files[0], received)
        assert node.acceptor.accept_file(received, "MOD", take=True).outcome is Outcome.STORED
        assert received.exists(), "left where it was: it could not be renamed"
        sent = pydicom.dcmread(files[0])
        assert node.spool.instance_path(sent.SOPInstanceUID).read_bytes().endswith(dataset)
    finally:
        received.unlink(missing_ok=True)


@pytest.mark.parametrize("corrupt", [
    lambda data: data[:100],                                   # ends inside the preamble
    lambda data: data[:128] + b"XXXX" + data[132:],            # no DICM prefix
    lambda data: data[:140] + b"\xff" * 64 + data[204:],       # a broken meta group
    lambda data: data[:600] + b"\x00" * 7,                     # ends inside an element of the header
    lambda data: data[: len(data) // 2],                       # the pixel data cut short
], ids=["short", "no-prefix", "broken-meta", "cut-header", "cut-pixel-data"])
def test_a_corrupt_part10_file_is_refused_with_a_reason_and_leaves_nothing(setup, small_head_ct, corrupt) -> None:
    node = setup()
    _, files = small_head_ct
    data = corrupt(files[0].read_bytes())
    receipt = node.acceptor.accept_part10(data, "STOW")
    assert receipt.outcome is Outcome.REFUSED
    assert (receipt.status, receipt.reason) == (_CANNOT_UNDERSTAND, "unreadable")
    assert node.rejected("unreadable") == 1 and node.received("error") == 1
    assert node.spool_files() == [] and node.stored_calls == node.filed_calls == 0


def test_a_part10_file_in_a_syntax_the_node_does_not_accept_is_refused(setup, small_head_ct) -> None:
    node = setup()
    _, files = small_head_ct
    receipt = node.acceptor.accept_part10(_with_syntax(files[0].read_bytes(), MPEG2MPML), "STOW")  # no decoder exists
    assert (receipt.outcome, receipt.status) == (Outcome.REFUSED, _CANNOT_UNDERSTAND)
    assert receipt.reason == "unsupported_syntax"
    assert node.spool_files() == [] and node.rejected("unsupported_syntax") == 1


def _with_syntax(part10: bytes, syntax: str) -> bytes:
    """``part10`` with its meta's Transfer Syntax UID replaced (the dataset left as it is)."""
    meta, offset = read_file_meta(memoryview(part10), len(part10))
    meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    return out.getvalue() + part10[offset:]


def test_a_dataset_whose_uids_disagree_with_the_claim_is_refused(setup, small_head_ct) -> None:
    node = setup()
    _, files = small_head_ct
    data = files[0].read_bytes()
    _, offset = read_file_meta(memoryview(data), len(data))
    sent = pydicom.dcmread(files[0], stop_before_pixels=True)
    receipt = node.acceptor.accept(memoryview(data)[offset:], sent.file_meta.TransferSyntaxUID, "MOD",
                                   sop_class_uid=sent.SOPClassUID, sop_instance_uid=generate_uid())
    assert (receipt.outcome, receipt.status, receipt.reason) == (Outcome.REFUSED, _MISMATCH, "uid_mismatch")
    assert receipt.header is not None and receipt.header.sop_instance_uid == sent.SOPInstanceUID
    receipt = node.acceptor.accept(memoryview(data)[offset:], sent.file_meta.TransferSyntaxUID, "MOD",
                                   sop_class_uid="1.2..3", sop_instance_uid=sent.SOPInstanceUID)
    assert (receipt.status, receipt.reason) == (_CANNOT_UNDERSTAND, "invalid_uid")
    assert node.spool_files() == []
    receipt = node.acceptor.accept(data[offset:], sent.file_meta.TransferSyntaxUID, "MOD")
    assert receipt.outcome is Outcome.STORED, "without a claim the header alone decides"


def test_a_file_on_disk_is_accepted_in_place_and_checked_by_size_first(setup, small_head_ct) -> None:
    node = setup(max_dataset_bytes=64 * 1024)
    _, files = small_head_ct
    receipt = node.acceptor.accept_file(files[0], "MOD")
    assert (receipt.outcome, receipt.status, receipt.reason) == (Outcome.REFUSED, _OUT_OF_RESOURCES, "too_large")
    assert receipt.header is None, "refused by its size before its header was read"
    node = setup()
    receipt = node.acceptor.accept_file(files[1], "MOD")
    assert receipt.outcome is Outcome.STORED and files[1].exists()
    assert pydicom.dcmread(node.spool.instance_path(receipt.header.sop_instance_uid)).PixelData \
        == pydicom.dcmread(files[1]).PixelData
    missing = node.acceptor.accept_file(files[1].parent / "gone.dcm", "MOD")
    assert (missing.outcome, missing.reason) == (Outcome.REFUSED, "out_of_resources")


def test_concurrent_part10_deliveries_of_one_instance_store_it_once(setup, small_head_ct) -> None:
    node = setup()
    _, files = small_head_ct
    data = files[2].read_bytes()
    barrier = threading.Barrier(12)
    receipts: list[Receipt] = []

    def deliver() -> None:
        barrier.wait()
        receipts.append(node.acceptor.accept_part10(data, "STOW"))

    threads = [threading.Thread(target=deliver) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.outcome.value for r in receipts) == ["duplicate"] * 11 + ["stored"]
    assert len(node.spool_files()) == 1


def test_the_acceptor_validates_its_limit() -> None:
    with pytest.raises(ValueError, match="max_dataset_bytes"):
        InstanceAcceptor(None, None, None, max_dataset_bytes=0)  # type: ignore[arg-type]


def test_the_stored_meta_is_the_nodes_whatever_the_sender_wrote(setup, small_head_ct) -> None:
    """A sender's preamble can be anything (a polyglot file); the spool gets zeros and a plain meta."""
    node = setup()
    _, files = small_head_ct
    data = bytearray(files[3].read_bytes())
    data[:128] = b"MZ" + b"\xcc" * 126
    receipt = node.acceptor.accept_part10(bytes(data), "STOW")
    assert receipt.outcome is Outcome.STORED
    path = node.spool.instance_path(receipt.header.sop_instance_uid)
    assert path.read_bytes()[:132] == b"\0" * 128 + b"DICM"
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.dcmread(files[3]).file_meta.TransferSyntaxUID
