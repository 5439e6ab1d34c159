"""A SOP Instance UID received twice: identical copies once, a quarantined first copy replaced by a
valid one, different content kept or replaced as ``[ingest] on_duplicate`` says. Real storescu,
the real head CT slice of pydicom-data, the real indexer."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from node.config import ConfigError, parse_config
from node.pipeline.index import Indexer
from node.ingest import IngestServer, OnDuplicate
from node.metrics import Metrics
from node.store.spool import Spool
from node.states import InstanceState
from node.store import JobStore


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest):
    policy = getattr(request, "param", OnDuplicate.KEEP_FIRST)
    store = JobStore(tmp_path / "db.sqlite")
    spool = Spool(tmp_path / "spool")
    metrics = Metrics()
    server = IngestServer("AINODE", "127.0.0.1", 0, store, spool, metrics, on_duplicate=policy)
    server.start()
    yield server, store, spool, metrics, Indexer(store, metrics)
    server.stop()
    store.close()


def _slice(tmp_path: Path, name: str, uid: str, series: str, window: str = "40") -> Path:
    """The real head CT slice under new UIDs (``window`` changes its content)."""
    ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    ds.SOPInstanceUID, ds.SeriesInstanceUID = uid, series
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.WindowCenter = window
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _storescu(port: int, path: Path) -> None:
    result = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "AINODE", "127.0.0.1", str(port), str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-1500:]


def _duplicates(metrics: Metrics, action: str) -> float:
    return metrics.instances_duplicate.labels(action)._value.get()


def test_a_quarantined_first_copy_is_replaced_by_a_valid_one(node, tmp_path):
    server, store, spool, metrics, indexer = node
    uid, series = generate_uid(), generate_uid()
    valid = _slice(tmp_path, "valid.dcm", uid, series)
    data = valid.read_bytes()
    at = data.find(b"\x08\x00\x60\x00CS")  # Modality: a VR no reader knows; the UIDs still read
    broken = data[:at] + b"\x08\x00\x60\x00ZZ" + data[at + 6:]
    assert server.acceptor.accept_part10(broken, "STOW-RS 10.0.0.9").accepted
    indexer.run_once()
    assert store.instance_state(uid) is InstanceState.QUARANTINED
    _storescu(server.port, valid)  # the modality sends it again, intact
    assert store.instance_state(uid) is InstanceState.RECEIVED, "not a silent duplicate"
    assert _duplicates(metrics, "replaced_quarantined") == 1
    indexer.run_once()
    assert store.instance_state(uid) is InstanceState.INDEXED
    assert pydicom.dcmread(spool.instance_path(uid)).Modality == "CT"
    assert store.get_series(series).instance_count == 1


def test_identical_copies_are_stored_once_and_different_content_keeps_the_first(node, tmp_path):
    server, store, spool, metrics, indexer = node
    uid, series = generate_uid(), generate_uid()
    first = _slice(tmp_path, "first.dcm", uid, series, window="40")
    _storescu(server.port, first)
    indexer.run_once()
    stored = spool.instance_path(uid).read_bytes()
    _storescu(server.port, first)
    assert _duplicates(metrics, "identical") == 1
    _storescu(server.port, _slice(tmp_path, "second.dcm", uid, series, window="400"))  # answered Success
    assert _duplicates(metrics, "kept_first") == 1
    assert spool.instance_path(uid).read_bytes() == stored
    assert store.instance_state(uid) is InstanceState.INDEXED
    assert metrics.instances_received.labels("duplicate")._value.get() == 2


@pytest.mark.parametrize("node", [OnDuplicate.REPLACE], indirect=True)
def test_with_replace_a_different_copy_replaces_the_first_and_is_indexed_again(node, tmp_path):
    server, store, spool, metrics, indexer = node
    uid, series = generate_uid(), generate_uid()
    _storescu(server.port, _slice(tmp_path, "first.dcm", uid, series, window="40"))
    indexer.run_once()
    _storescu(server.port, _slice(tmp_path, "second.dcm", uid, series, window="400"))
    assert _duplicates(metrics, "replaced") == 1
    assert metrics.instances_received.labels("replaced")._value.get() == 1
    assert pydicom.dcmread(spool.instance_path(uid)).WindowCenter == 400
    assert store.instance_state(uid) is InstanceState.RECEIVED
    indexer.run_once()
    assert store.instance_state(uid) is InstanceState.INDEXED
    assert store.get_series(series).instance_count == 1, "the new copy replaces the first, it is not counted twice"


def test_on_duplicate_is_configured_and_checked(tmp_path):
    assert parse_config({}, tmp_path).ingest.on_duplicate == "keep-first"
    assert parse_config({"ingest": {"on_duplicate": "replace"}}, tmp_path).ingest.on_duplicate == "replace"
    with pytest.raises(ConfigError, match="ingest.on_duplicate"):
        parse_config({"ingest": {"on_duplicate": "newest"}}, tmp_path)
