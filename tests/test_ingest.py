"""Ingest with a real pynetdicom association: durable before Success, duplicates once."""
from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from node.pipeline.index import Indexer
from node.metrics import Metrics
from node.states import SeriesState
from node.store import JobStore


def _associate(port: int):
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="AINODE")
    assert assoc.is_established
    return assoc


def test_echo_and_store_are_durable_and_recorded(ingest, small_head_ct):
    server, store, spool, metrics = ingest
    _, files = small_head_ct
    assoc = _associate(server.port)
    try:
        assert assoc.send_c_echo().Status == 0x0000
        for path in files:
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0x0000
    finally:
        assoc.release()
    for path in files:
        sent = pydicom.dcmread(path)
        stored = spool.instance_path(sent.SOPInstanceUID)
        assert stored.exists(), "Success was returned before the file existed"
        assert pydicom.dcmread(stored).PixelData == sent.PixelData
        assert store.has_instance(sent.SOPInstanceUID)
    assert metrics.instances_received.labels("stored")._value.get() == len(files)


def test_duplicates_are_stored_once(ingest, small_head_ct):
    server, store, spool, metrics = ingest
    _, files = small_head_ct
    assoc = _associate(server.port)
    try:
        for _ in range(2):
            assert assoc.send_c_store(pydicom.dcmread(files[0])).Status == 0x0000
    finally:
        assoc.release()
    assert metrics.instances_received.labels("stored")._value.get() == 1
    assert metrics.instances_received.labels("duplicate")._value.get() == 1
    assert len(list(spool.instances.glob("*.dcm"))) == 1


def test_instances_are_filed_under_their_series_at_ingest_without_patient_data(ingest, small_head_ct):
    server, store, spool, metrics = ingest
    phantom, files = small_head_ct
    assoc = _associate(server.port)
    try:
        for path in files:
            assoc.send_c_store(pydicom.dcmread(path))
    finally:
        assoc.release()
    assert Indexer(store, metrics).run_once() == 0  # the headers were read on receipt: nothing left to index
    (series,) = store.series_in_state(SeriesState.RECEIVED)
    assert series.series_uid == phantom.datasets[0].SeriesInstanceUID
    assert series.instance_count == len(files)
    assert series.attrs["Modality"] == "CT" and series.attrs["BodyPartExamined"] == "HEAD"
    assert "PatientName" not in series.attrs and "PatientID" not in series.attrs


def test_unreadable_instance_is_recorded_not_fatal(tmp_path):
    store = JobStore(tmp_path / "db.sqlite")
    metrics = Metrics()
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    store.add_instance("1.2.3.4", CTImageStorage, str(bad), "X")
    Indexer(store, metrics).run_once()
    assert sum(s.value for s in metrics.instances_quarantined.collect()[0].samples if s.name.endswith("_total")) == 1
    assert [row["sop_instance_uid"] for row in store.quarantined_instances()] == ["1.2.3.4"]
    assert store.unindexed_instances() == []


def test_spool_files_missing_from_the_store_are_recovered(tmp_path, small_head_ct):
    """A power cut can lose the newest job-store rows, never an acknowledged file."""
    from node.config import Config, NodeConfig
    from node.service import Node

    _, files = small_head_ct
    config = Config(node=NodeConfig(data_dir=tmp_path / "data", dicom_port=0, http_port=0))
    node = Node(config)
    ds = pydicom.dcmread(files[0])
    path = node.spool.instance_path(ds.SOPInstanceUID)
    path.write_bytes(files[0].read_bytes())
    (node.spool.instances / ".half-written.tmp").write_bytes(b"partial")
    assert node.recover_spool() == 1
    assert node.store.has_instance(ds.SOPInstanceUID)
    assert not (node.spool.instances / ".half-written.tmp").exists()
    assert node.recover_spool() == 0
    node.store.close()
