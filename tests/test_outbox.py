"""Outbox delivery to a real pynetdicom SCP: retries with backoff, dead letters, recovery."""
from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from node.config import Config, DestinationConfig, EgressConfig
from node.egress.outbox import Outbox, backoff_delay
from node.metrics import Metrics
from node.states import JobState, SeriesState
from node.store import JobStore
from tests.support import free_port


class _Receiver:
    """A minimal storage SCP standing in for a PACS."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[str] = []
        self._ae = AE(ae_title="PACS")
        for context in AllStoragePresentationContexts:
            self._ae.add_supported_context(context.abstract_syntax)
        self._server = None

    def start(self) -> None:
        def handle(event):
            self.received.append(str(event.request.AffectedSOPInstanceUID))
            return 0x0000

        self._server = self._ae.start_server(("127.0.0.1", self.port), block=False,
                                             evt_handlers=[(evt.EVT_C_STORE, handle)])

    def stop(self) -> None:
        self._server.shutdown()


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(n, 2.0, 10.0) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.fixture
def queued(tmp_path: Path, small_head_ct):
    _, files = small_head_ct
    store = JobStore(tmp_path / "db.sqlite")
    store.add_instance("1.2.3.9", "x", "/x", "M")
    store.index_instance("1.2.3.9", "1.2.3.8", "1.2.3", {}, 0.0)
    store.set_series_state("1.2.3.8", SeriesState.COMPLETE)
    (job_id,) = store.route_series("1.2.3.8", [("r", "head-ct-hematoma", ["pacs"])])
    store.claim_jobs("test", 1, 60)
    objects = []
    for path in files[:2]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        objects.append((str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(path)))
    store.job_written(job_id, objects, ["pacs"])
    return store, job_id, objects


def _outbox(store, port, clock, max_attempts=3):
    config = Config(
        destinations=(DestinationConfig("pacs", "127.0.0.1", port, "PACS"),),
        egress=EgressConfig(max_attempts=max_attempts, backoff_seconds=5.0, backoff_max_seconds=60.0, timeout_seconds=5),
    )
    return Outbox(config, store, Metrics(), clock=clock)


def test_unreachable_destination_retries_then_delivers_when_back(queued):
    store, job_id, objects = queued
    port = free_port()
    t0 = time.time() + 1
    now = [t0]
    outbox = _outbox(store, port, lambda: now[0])
    dest = outbox._config.destinations[0]
    assert outbox.deliver_due(dest) == 2
    results = store.job_results(job_id)
    assert all(r.state == "pending" and r.attempts == 1 and r.next_attempt_at == t0 + 5.0 for r in results)
    assert outbox.deliver_due(dest) == 0, "nothing is due before the backoff has passed"
    receiver = _Receiver(port)
    receiver.start()
    try:
        now[0] = t0 + 6.0
        assert outbox.deliver_due(dest) == 2
    finally:
        receiver.stop()
    assert sorted(receiver.received) == sorted(o[0] for o in objects)
    assert store.get_job(job_id).state == "delivered"


def test_results_dead_letter_after_max_attempts_and_can_be_replayed(queued):
    store, job_id, _ = queued
    port = free_port()
    now = [time.time() + 1]
    outbox = _outbox(store, port, lambda: now[0], max_attempts=2)
    dest = outbox._config.destinations[0]
    outbox.deliver_due(dest)
    now[0] += 1000.0
    outbox.deliver_due(dest)
    job = store.get_job(job_id)
    assert job.state == "failed" and job.stage == "deliver"
    assert "association" in job.reason
    assert all(r.state == "dead" for r in store.job_results(job_id))
    assert store.requeue_dead() == 2
    receiver = _Receiver(port)
    receiver.start()
    try:
        outbox.deliver_due(dest)
    finally:
        receiver.stop()
    assert store.get_job(job_id).state == "delivered"
