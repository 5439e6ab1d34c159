"""Kept DIMSE associations (issue 17): one association serves many deliveries and jobs, a
dropped one is replaced, an idle one is released. A real pynetdicom SCP counts them."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from node.config import Config, DestinationConfig, EgressConfig
from node.egress.associations import AssociationPool
from node.egress.dimse import DimseSender
from node.egress.outbox import Outbox
from node.store import ResultObject
from node.ingest.connections import raw_socket
from node.metrics import Metrics
from node.states import JobState, SeriesState
from node.store import JobStore
from tests.support import free_port


class _CountingScp:
    """A storage SCP that counts the associations it accepted and the instances it stored."""

    def __init__(self) -> None:
        self.port = free_port()
        self.associations = 0
        self.stored: list[str] = []
        self._lock = threading.Lock()
        self._ae = AE(ae_title="PACS")
        self._ae.add_supported_context("1.2.840.10008.1.1")
        for context in AllStoragePresentationContexts:
            self._ae.add_supported_context(context.abstract_syntax)
        self._server = None

    def start(self) -> "_CountingScp":
        def accepted(_event):
            with self._lock:
                self.associations += 1

        def store(event):
            with self._lock:
                self.stored.append(str(event.request.AffectedSOPInstanceUID))
            return 0x0000

        self._server = self._ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_ACCEPTED, accepted), (evt.EVT_C_STORE, store)])
        return self

    def drop_all(self) -> None:
        """Abort every open association from the SCP's side, as a restarting PACS would."""
        for assoc in list(self._server.active_associations):
            assoc.abort()
        time.sleep(0.2)  # the SCU's reader notices the closed socket

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def scp():
    server = _CountingScp().start()
    yield server
    server.stop()


def _files(small_head_ct) -> list[ResultObject]:
    _, paths = small_head_ct
    out = []
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out.append(ResultObject(str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(path), "head-ct-hematoma"))
    return out


def _sender(scp: _CountingScp, idle_seconds: float = 30.0) -> DimseSender:
    return DimseSender(DestinationConfig("pacs", "127.0.0.1", scp.port, "PACS"), calling_ae="AINODE", timeout=5,
                       idle_seconds=idle_seconds)


def test_one_association_serves_several_deliveries(scp, small_head_ct):
    files = _files(small_head_ct)
    sender = _sender(scp)
    try:
        for f in files:  # one object per delivery, as objects are written one by one
            assert sender.send([f]).errors == {f.path: None}
    finally:
        sender.close()
    assert sorted(scp.stored) == sorted(f.sop_instance_uid for f in files)
    assert scp.associations == 1


def test_one_association_per_batch_when_not_kept(scp, small_head_ct):
    files = _files(small_head_ct)[:3]
    sender = _sender(scp, idle_seconds=0)
    for f in files:
        assert sender.send([f]).errors == {f.path: None}
    assert scp.associations == 3


def test_a_dropped_association_is_replaced_and_the_delivery_succeeds(scp, small_head_ct):
    first, second, third = _files(small_head_ct)[:3]
    sender = _sender(scp)
    try:
        assert sender.send([first]).errors == {first.path: None}
        scp.drop_all()
        assert sender.send([second, third]).errors == {second.path: None, third.path: None}
    finally:
        sender.close()
    assert scp.associations == 2
    assert sorted(scp.stored) == sorted(f.sop_instance_uid for f in (first, second, third))


def test_a_peer_that_goes_away_fails_the_delivery_and_a_later_one_reconnects(small_head_ct):
    first, second = _files(small_head_ct)[:2]
    scp = _CountingScp().start()
    sender = DimseSender(DestinationConfig("pacs", "127.0.0.1", scp.port, "PACS"), calling_ae="AINODE", timeout=2,
                         idle_seconds=30)
    try:
        assert sender.send([first]).errors == {first.path: None}
        scp.drop_all()
        scp.stop()
        (error,) = sender.send([second]).errors.values()
        assert error is not None and "association" in error
        back = _CountingScp()
        back.port = scp.port
        back.start()
        try:
            assert sender.send([second]).errors == {second.path: None}
            assert back.associations == 1
        finally:
            back.stop()
    finally:
        sender.close()


def test_an_idle_association_is_released_and_checked_before_reuse(scp, small_head_ct):
    first, second, third = _files(small_head_ct)[:3]
    now = [0.0]
    pool = AssociationPool(DestinationConfig("pacs", "127.0.0.1", scp.port, "PACS"), calling_ae="AINODE",
                           timeout=5, idle_seconds=10, echo_after_seconds=2, clock=lambda: now[0])
    try:
        assoc, reused = pool.acquire({first.sop_class_uid})
        assert not reused and assoc.send_c_store(first.path).Status == 0
        pool.mark_used()
        now[0] = 5.0  # idle past the echo threshold: checked with C-ECHO, then reused
        assoc2, reused = pool.acquire({second.sop_class_uid})
        assert reused and assoc2 is assoc
        now[0] = 16.0  # idle past the timeout: released
        pool.close_idle()
        assert not assoc.is_established
        assoc3, reused = pool.acquire({third.sop_class_uid})
        assert not reused and assoc3.is_established
    finally:
        pool.close()
    assert scp.associations == 2 and pool.opened == 2


def test_the_outbox_delivers_two_jobs_over_one_association(scp, tmp_path: Path, small_head_ct):
    files = _files(small_head_ct)
    store = JobStore(tmp_path / "db.sqlite")
    jobs = []
    for n, chunk in enumerate((files[:3], files[3:])):
        series = f"1.2.17.{n}"
        store.add_instance(f"{series}.1", "x", "/x", "M")
        store.index_instance(f"{series}.1", series, "1.2.17", {}, 0.0)
        store.set_series_state(series, SeriesState.COMPLETE)
        (job_id,) = store.route_series(series, [("r", "head-ct-hematoma", ["pacs"])])
        store.claim_jobs("w", 1, 60)
        jobs.append((job_id, [(f.sop_instance_uid, f.sop_class_uid, f.path) for f in chunk]))
    config = Config(destinations=(DestinationConfig("pacs", "127.0.0.1", scp.port, "PACS"),),
                    egress=EgressConfig(max_attempts=3, timeout_seconds=5))
    outbox = Outbox(config, store, Metrics())
    destination = config.destinations[0]
    for job_id, objects in jobs:
        for obj in objects:  # queued one by one while the job is written, each delivered at once
            assert store.result_written(job_id, obj, ["pacs"], owner="w")
            assert outbox.deliver_due(destination) == 1
        assert store.get_job(job_id).state == JobState.RUNNING
        assert store.job_written(job_id, objects, ["pacs"], owner="w")
        assert store.get_job(job_id).state == JobState.DELIVERED
    outbox.stop()
    assert sorted(scp.stored) == sorted(f.sop_instance_uid for f in files)
    assert scp.associations == 1


def test_associations_the_node_requests_acknowledge_the_peers_replies_at_once(scp, small_head_ct):
    """Nagle off, and quick-ack armed again after every PDU the node sends (see ``ack_replies_at_once``):
    a peer that writes its reply in small pieces (Orthanc) is not held up by a delayed acknowledgement."""
    first, second = _files(small_head_ct)[:2]
    pool = AssociationPool(DestinationConfig("pacs", "127.0.0.1", scp.port, "PACS"), calling_ae="AINODE", timeout=5)
    try:
        assoc, _ = pool.acquire({first.sop_class_uid})
        raw = raw_socket(assoc)
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        armed: list[int] = []
        # bound after the node's own handler: sees the socket as the node left it
        assoc.bind(evt.EVT_PDU_SENT,
                   lambda event: armed.append(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)))
        for outgoing in (first, second):
            assert assoc.send_c_store(outgoing.path).Status == 0
        assert len(armed) >= 4 and all(armed), armed  # command and data PDUs of two C-STOREs
    finally:
        pool.close()
