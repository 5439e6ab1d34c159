"""Assembler and router against a real job store, with a controlled clock."""
from __future__ import annotations

import re
import time
from pathlib import Path

from node.pipeline.assemble import Assembler
from node.config import AssemblerConfig, RouteConfig
from node.metrics import Metrics
from node.pipeline.route import Router, route_matches
from node.states import FailureStage, JobState, SeriesState
from node.store import JobStore

HEAD = {"Modality": "CT", "BodyPartExamined": "HEAD", "SeriesDescription": "Routine Head"}


def _route(name="head", quiet=None, **match):
    rules = {k: (re.compile(v[3:]) if isinstance(v, str) and v.startswith("re:") else tuple(v) if isinstance(v, list) else (v,))
             for k, v in match.items()}
    return RouteConfig(name=name, model="head-ct-hematoma", destinations=("pacs",), match=rules, quiet_seconds=quiet)


def test_route_rules():
    assert route_matches(_route(Modality="CT", BodyPartExamined="HEAD"), HEAD)
    assert route_matches(_route(Modality=["MR", "CT"]), HEAD)
    assert route_matches(_route(SeriesDescription="re:(?i)head"), HEAD)
    assert not route_matches(_route(Modality="MR"), HEAD)
    assert not route_matches(_route(Laterality="L"), HEAD), "a missing attribute matches no rule"


def _receive(store: JobStore, series_uid: str, at: float, n: int = 3, attrs=HEAD) -> None:
    for i in range(n):
        uid = f"{series_uid}.{i}"
        store.add_instance(uid, "1.2.840.10008.5.1.4.1.1.2", f"/x/{uid}", "MOD")
        store.index_instance(uid, series_uid, "1.2.3", attrs, at)


def test_series_completes_after_quiet_period_and_is_routed(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    now = [1000.0]
    routes = [_route(quiet=5, Modality="CT"), _route(name="slow", Modality="CT")]
    asm = Assembler(AssemblerConfig(quiet_seconds=30), store, Router(routes), Metrics(), clock=lambda: now[0])
    _receive(store, "1.2.3.1", at=1000.0)
    now[0] = 1004.0
    asm.run_once()
    assert store.get_series("1.2.3.1").state == "received"
    now[0] = 1005.5
    asm.run_once()
    assert store.get_series("1.2.3.1").state == "routed"
    jobs = store.list_jobs()
    assert sorted(j.route for j in jobs) == ["head", "slow"]
    assert all(j.state == JobState.QUEUED for j in jobs)


def test_unmatched_series_is_ignored_after_default_quiet(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    now = [0.0]
    asm = Assembler(AssemblerConfig(quiet_seconds=10), store, Router([_route(Modality="MR")]), Metrics(),
                    clock=lambda: now[0])
    _receive(store, "1.2.3.2", at=0.0)
    now[0] = 10.0
    asm.run_once()
    assert store.get_series("1.2.3.2").state == "ignored"
    assert store.list_jobs() == []


def test_state_survives_reopening_the_store(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    _receive(store, "1.2.3.3", at=50.0, n=2)
    store.close()
    reopened = JobStore(tmp_path / "db.sqlite")
    (series,) = reopened.series_in_state(SeriesState.RECEIVED)
    assert series.instance_count == 2 and series.last_received == 50.0
    now = [55.0]
    asm = Assembler(AssemblerConfig(quiet_seconds=10), reopened, Router([_route(Modality="CT")]), Metrics(),
                    clock=lambda: now[0])
    now[0] = 65.0
    asm.run_once()
    assert reopened.get_series("1.2.3.3").state == "routed"


def test_every_state_change_is_an_event_row(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    _receive(store, "1.2.3.4", at=0.0, n=1)
    store.set_series_state("1.2.3.4", SeriesState.COMPLETE)
    (job_id,) = store.route_series("1.2.3.4", [("head", "head-ct-hematoma", ["pacs"])])
    store.claim_jobs("test", 1, 60)
    store.job_written(job_id, [("1.9.1", "1.2.840.10008.5.1.4.1.1.88.34", "/r/1.9.1.dcm")], ["pacs"])
    (result,) = store.job_results(job_id)
    store.result_failed(result.id, "refused", retry_at=None)
    assert store.get_job(job_id).state == "failed"
    assert store.get_job(job_id).stage == "deliver"
    assert [e["state"] for e in store.job_events(job_id)] == [JobState.QUEUED, JobState.RUNNING, JobState.WRITTEN, JobState.FAILED]
    assert store.requeue_dead(job_id) == 1
    store.result_delivered(result.id)
    assert store.get_job(job_id).state == "delivered"


def test_images_in_acquisition_is_not_read_as_the_series_size(tmp_path: Path):
    """A 3-slice series whose instances say Images in Acquisition = 1 once ran on 1 slice."""
    store = JobStore(tmp_path / "db.sqlite")
    now = [0.0]
    asm = Assembler(AssemblerConfig(quiet_seconds=60), store, Router([_route(Modality="CT")]), Metrics(),
                    clock=lambda: now[0])
    _receive(store, "1.2.3.5", at=0.0, n=1, attrs={**HEAD, "ImagesInAcquisition": 1})
    asm.run_once()
    assert store.get_series("1.2.3.5").state == SeriesState.RECEIVED, "1 of an unknown number: wait"
    for i in (2, 3):
        store.add_instance(f"1.2.3.5.{i}", "1.2.840.10008.5.1.4.1.1.2", f"/x/{i}", "MOD")
        store.index_instance(f"1.2.3.5.{i}", "1.2.3.5", "1.2.3", HEAD, 1.0)
    now[0] = 61.5
    asm.run_once()
    assert store.get_series("1.2.3.5").state == SeriesState.ROUTED
    assert len(store.series_instances("1.2.3.5")) == 3


def test_a_series_waits_for_its_acknowledged_but_unindexed_instances(tmp_path: Path):
    """With the indexer behind, the quiet period once ran out on series holding 1-4 of 20 images."""
    store = JobStore(tmp_path / "db.sqlite")
    now = [100.0]
    asm = Assembler(AssemblerConfig(quiet_seconds=5), store, Router([_route(Modality="CT")]), Metrics(),
                    clock=lambda: now[0])
    _receive(store, "1.2.3.20", at=0.0, n=2)
    store.add_instance("1.2.3.20.9", "1.2.840.10008.5.1.4.1.1.2", "/x/9", "MOD", series_uid="1.2.3.20",
                       received_at=98.0)  # acknowledged, header read at ingest, not indexed yet
    asm.run_once()
    assert store.get_series("1.2.3.20").state == SeriesState.RECEIVED, "an unindexed instance holds it open"
    store.index_instance("1.2.3.20.9", "1.2.3.20", "1.2.3", HEAD, 98.0)
    asm.run_once()
    assert store.get_series("1.2.3.20").state == SeriesState.RECEIVED, "quiet from the last received instance"
    now[0] = 103.5
    store.add_instance("1.2.3.21.1", "1.2.840.10008.5.1.4.1.1.2", "/x/u", "MOD")  # series not known yet
    asm.run_once()
    assert store.get_series("1.2.3.20").state == SeriesState.RECEIVED, "an unfiled instance may belong to it"
    store.index_instance("1.2.3.21.1", "1.2.3.21", "1.2.3", HEAD, 103.5)
    now[0] = 105.5  # 5 s after the node started (downtime does not count) and 7.5 s after the last image
    asm.run_once()
    assert store.get_series("1.2.3.20").state == SeriesState.ROUTED
    assert len(store.series_instances("1.2.3.20")) == 3


def test_route_expected_count_and_multiframe(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    route = RouteConfig("r", "head-ct-hematoma", ("pacs",), {"Modality": ("CT",)}, expected_instances=2)
    asm = Assembler(AssemblerConfig(quiet_seconds=60), store, Router([route]), Metrics(), clock=lambda: 0.0)
    _receive(store, "1.2.3.6", at=0.0, n=2)
    _receive(store, "1.2.3.7", at=0.0, n=1, attrs={"Modality": "MR", "NumberOfFrames": 40})
    _receive(store, "1.2.3.8", at=0.0, n=1, attrs={"Modality": "MR"})
    asm.run_once()
    assert store.get_series("1.2.3.6").state == "routed"
    assert store.get_series("1.2.3.7").state == "ignored"
    assert store.get_series("1.2.3.8").state == "received", "nothing known: the quiet period applies"
    disabled = Assembler(AssemblerConfig(quiet_seconds=60, early_completion=False), store, Router([route]),
                         Metrics(), clock=lambda: 0.0)
    _receive(store, "1.2.3.9", at=0.0, n=2)
    disabled.run_once()
    assert store.get_series("1.2.3.9").state == "received"


def test_retention_removes_finished_series_files_but_keeps_failed_ones(tmp_path: Path):
    from node.config import SpoolConfig
    from node.pipeline.retain import Janitor
    from node.store.spool import Spool

    store = JobStore(tmp_path / "db.sqlite")
    spool = Spool(tmp_path / "spool")
    for series_uid, delivered in (("1.2.4.1", True), ("1.2.4.2", False)):
        path = spool.instance_path(series_uid + ".1")
        path.write_bytes(b"x")
        store.add_instance(series_uid + ".1", "1.2.840.10008.5.1.4.1.1.2", str(path), "M")
        store.index_instance(series_uid + ".1", series_uid, "1.2.3", HEAD, 0.0)
        store.set_series_state(series_uid, SeriesState.COMPLETE)
        (job_id,) = store.route_series(series_uid, [("r", "head-ct-hematoma", [])])
        store.claim_jobs("test", 1, 60)
        if delivered:
            store.job_written(job_id, [], [])
        else:
            store.fail_job(job_id, FailureStage.INFERENCE, "boom")
        (spool.result_dir(job_id) / "r.dcm").write_bytes(b"r")
    janitor = Janitor(SpoolConfig(retention_hours=1), store, spool, clock=lambda: time.time() + 7200)
    assert janitor.sweep() == 1
    assert not spool.instance_path("1.2.4.1.1").exists()
    assert spool.instance_path("1.2.4.2.1").exists(), "a failed job keeps its instances"
    assert store.get_series("1.2.4.1").state == "purged"
    assert not store.has_instance("1.2.4.1.1"), "a re-sent copy is processed anew"
    assert Janitor(SpoolConfig(retention_hours=1), store, spool).sweep() == 0, "not yet due"


def test_downtime_does_not_count_toward_the_quiet_period(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    _receive(store, "1.2.3.10", at=0.0, n=2)
    now = [100.0]  # the node restarts long after the last instance
    asm = Assembler(AssemblerConfig(quiet_seconds=10), store, Router([_route(Modality="CT")]), Metrics(),
                    clock=lambda: now[0])
    asm.run_once()
    assert store.get_series("1.2.3.10").state == "received"
    now[0] = 110.0
    asm.run_once()
    assert store.get_series("1.2.3.10").state == "routed"
