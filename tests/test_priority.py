"""Priorities (issue 32): claim order (stat first, round robin by route and sender, then age) on
SQLite and PostgreSQL, fairness under a flood, ``reserve_for_stat``, ``priority_from``, and the
migration of a store made before priorities existed."""
from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

import pytest

from node.config import Config, ConfigError, PeerConfig, Priority, parse_config
from node.pipeline.priorities import claim_free_workers, effective_reserve
from node.pipeline.route import Router, route_priority
from node.states import JobState, ResultState, SeriesState
from node.store import JobStore, SqliteJobStore
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture

CT = "1.2.840.10008.5.1.4.1.1.2"
HEAD = {"Modality": "CT", "BodyPartExamined": "HEAD"}
OWNER = "test:1:a"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        db = SqliteJobStore(tmp_path / "store.sqlite")
    else:
        from node.store.postgres import PostgresJobStore

        db = PostgresJobStore(request.getfixturevalue("postgres_server").create_database())
    yield db
    db.close()


def _queue(store: JobStore, series_uid: str, *, sender: str = "MOD", route: str = "r",
           priority: Priority = Priority.ROUTINE) -> int:
    """A complete one-image series from ``sender``, routed into one job of ``priority``."""
    uid = f"{series_uid}.1"
    store.add_instance(uid, CT, f"/spool/{uid}.dcm", sender)
    store.index_instance(uid, series_uid, "1.2.3", HEAD, 0.0)
    store.set_series_state(series_uid, SeriesState.COMPLETE)
    (job_id,) = store.route_series(series_uid, [(route, "m", ["pacs"], priority)])
    return job_id


def _claim_all(store: JobStore, one_at_a_time: bool = True) -> list[int]:
    """Claim every queued job, one per claim (one worker), and return them in claim order."""
    order: list[int] = []
    while True:
        jobs = store.claim_jobs(OWNER, 1 if one_at_a_time else 100, 60.0)
        if not jobs:
            return order
        order += [j.id for j in jobs]


def test_stat_is_claimed_before_older_routine_work(store):
    routine = [_queue(store, f"1.2.1.{i}") for i in range(5)]
    urgent = _queue(store, "1.2.1.90", priority=Priority.URGENT)
    stat = _queue(store, "1.2.1.99", priority=Priority.STAT)
    order = _claim_all(store)
    assert order[:2] == [stat, urgent]
    assert order[2:] == routine, "within one priority and one sender: oldest first"
    job = store.get_job(stat)
    assert job.priority == Priority.STAT and job.sender == "MOD" and job.state == JobState.RUNNING


def test_a_batch_claim_keeps_the_order(store):
    routine = _queue(store, "1.2.2.1")
    stat = _queue(store, "1.2.2.2", priority=Priority.STAT)
    assert [j.id for j in store.claim_jobs(OWNER, 5, 60.0)] == [stat, routine]


def test_a_flooding_sender_does_not_starve_another(store):
    """Two senders, one floods 20 series, the other sends 2 after it: the 2 are not all processed after the 20."""
    flood = [_queue(store, f"1.2.3.{i}", sender="FLOOD") for i in range(20)]
    first = store.claim_jobs(OWNER, 1, 60.0)  # the worker is busy with the flood's first
    assert [j.id for j in first] == flood[:1]
    few = [_queue(store, f"1.2.4.{i}", sender="FEW") for i in range(2)]
    order = [first[0].id] + _claim_all(store)
    positions = [order.index(j) for j in few]
    assert max(positions) < 5, f"the second sender's series wait for the flood: claimed at {positions}"
    assert sorted(order) == sorted(flood + few)


def test_round_robin_over_routes_within_a_batch(store):
    a = [_queue(store, f"1.2.5.{i}", route="a") for i in range(3)]
    b = [_queue(store, f"1.2.6.{i}", route="b") for i in range(3)]
    claimed = [j.id for j in store.claim_jobs(OWNER, 4, 60.0)]
    assert set(claimed) == {a[0], b[0], a[1], b[1]}, "two of each route, not four of the first"


def test_only_stat_jobs_for_a_reserved_worker(store):
    _queue(store, "1.2.7.1")
    assert store.claim_jobs(OWNER, 2, 60.0, priorities=[Priority.STAT]) == []
    stat = _queue(store, "1.2.7.2", priority=Priority.STAT)
    assert [j.id for j in store.claim_jobs(OWNER, 2, 60.0, priorities=[Priority.STAT])] == [stat]


def test_reserve_for_stat_keeps_a_worker_free(store):
    routine = [_queue(store, f"1.2.8.{i}") for i in range(4)]
    reserve = effective_reserve(workers=2, reserve_for_stat=1)
    taken = claim_free_workers(store, OWNER, 60.0, workers=2, reserve=reserve, running=[])
    assert [j.id for j in taken] == routine[:1], "one worker stays free for stat work"
    assert claim_free_workers(store, OWNER, 60.0, workers=2, reserve=reserve, running=["routine"]) == []
    stat = _queue(store, "1.2.8.9", priority=Priority.STAT)
    taken = claim_free_workers(store, OWNER, 60.0, workers=2, reserve=reserve, running=["routine"])
    assert [j.id for j in taken] == [stat], "the reserved worker takes the stat job at once"
    assert effective_reserve(workers=1, reserve_for_stat=1) == 0, "one worker is never reserved"


def test_stat_results_are_delivered_first(store):
    routine = _queue(store, "1.2.9.1")
    stat = _queue(store, "1.2.9.2", priority=Priority.STAT)
    store.claim_jobs(OWNER, 2, 60.0)
    store.job_written(routine, [("1.2.9.1.100", CT, "/r/a.dcm")], ["pacs"])
    store.job_written(stat, [("1.2.9.2.100", CT, "/r/b.dcm")], ["pacs"])
    due = store.claim_due_results("pacs", OWNER, 1e12, 60.0)
    assert [r.job_id for r in due] == [stat, routine]


def test_a_yielded_job_is_queued_again_as_it_was(store):
    """Preemption: running → queued, its run and its round-robin turn taken back, an event in its history."""
    first, second = _queue(store, "1.2.12.1"), _queue(store, "1.2.12.2")
    (job,) = store.claim_jobs(OWNER, 1, 60.0)
    assert job.id == first and job.runs == 1
    stat = _queue(store, "1.2.12.9", priority=Priority.STAT)
    assert store.queued_jobs(Priority.STAT) == 1 and store.queued_jobs(Priority.ROUTINE) == 1
    assert not store.yield_job(first, "someone:2:b", "gave its worker to a stat job"), "only its owner"
    assert store.yield_job(first, OWNER, "gave its worker to a stat job")
    again = store.get_job(first)
    assert again.state == JobState.QUEUED and again.runs == 0 and again.lease_owner is None
    last = store.job_events(first)[-1]
    assert last["state"] == JobState.QUEUED and last["detail"].startswith("yielded:")
    assert _claim_all(store) == [stat, first, second], "stat first, then the yielded job resumes before the next"
    assert store.get_job(first).runs == 1


def test_a_job_parked_while_writing_keeps_its_objects_and_waits_for_its_worker(store):
    """Preemption while writing (one worker): the objects queued stay queued; only its owner claims it."""
    job_id = _queue(store, "1.2.13.1")
    store.claim_jobs(OWNER, 1, 60.0)
    assert store.result_written(job_id, ("1.2.13.1.100", CT, "/r/a.dcm"), ["pacs"], owner=OWNER)
    assert store.yield_job(job_id, OWNER, "gave its worker to a stat job", parked_for=60.0)
    assert [r.state for r in store.job_results(job_id)] == [ResultState.PENDING], "not superseded"
    assert store.claim_jobs("other:3:c", 5, 60.0) == [], "parked in its owner's worker"
    assert [j.id for j in store.claim_jobs(OWNER, 5, 60.0)] == [job_id]
    assert store.job_written(job_id, [("1.2.13.1.100", CT, "/r/a.dcm"), ("1.2.13.1.101", CT, "/r/b.dcm")],
                             ["pacs"], owner=OWNER)
    assert sorted(r.sop_instance_uid for r in store.job_results(job_id)) == ["1.2.13.1.100", "1.2.13.1.101"]


def _parse(text: str) -> Config:
    return parse_config(tomllib.loads(text), base_dir=Path("/base"))


def _route_toml(extra: str) -> str:
    return f"""
[[destinations]]
name = "pacs"
type = "dimse"
host = "127.0.0.1"
port = 4242
ae_title = "PACS"

[[routes]]
name = "head"
model = "head-ct-hematoma"
destinations = ["pacs"]
match = {{Modality = "CT"}}
{extra}
"""


def test_priority_from_an_attribute_and_the_calling_ae():
    config = _parse(_route_toml(
        'priority_from = {attribute = "RequestedProcedurePriority", values = {STAT = "stat", HIGH = "urgent"},'
        ' calling_ae = {ER_CT = "stat"}}'))
    (route,) = config.routes
    assert route.priority == Priority.ROUTINE
    assert route_priority(route, {"Modality": "CT"}) == Priority.ROUTINE
    assert route_priority(route, {"Modality": "CT", "RequestedProcedurePriority": " stat "}) == Priority.STAT
    assert route_priority(route, {"Modality": "CT", "RequestedProcedurePriority": "HIGH"}) == Priority.URGENT
    assert route_priority(route, {"Modality": "CT"}, ["ER_CT"]) == Priority.STAT
    stat_route = _parse(_route_toml('priority = "stat"')).routes[0]
    assert route_priority(stat_route, {"RequestedProcedurePriority": "LOW"}) == Priority.STAT, "never lowered"


@pytest.mark.parametrize("extra, where", [
    ('priority = "asap"', "routes[0].priority"),
    ('priority_from = {attribute = "PatientName", values = {X = "stat"}}', "priority_from.attribute"),
    ('priority_from = {attribute = "StudyPriorityID"}', "priority_from"),
    ('priority_from = {calling_ae = {ER = "soon"}}', "priority_from.calling_ae.ER"),
])
def test_bad_priorities_are_refused(extra, where):
    with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
        _parse(_route_toml(extra))


def test_reserve_for_stat_and_whole_series_peers_parse():
    config = _parse(_route_toml("") + """
[runner]
workers = 3
reserve_for_stat = 1

[[peers]]
ae_title = "ORTHANC"
host = "127.0.0.1"
sends_whole_series = true
""")
    assert config.runner.reserve_for_stat == 1
    assert config.runner.preempt_for_stat, "on by default"
    assert not _parse(_route_toml("") + "[runner]\npreempt_for_stat = false\n").runner.preempt_for_stat
    for wrong in ('"yes"', "1"):
        with pytest.raises(ConfigError, match=r"runner\.preempt_for_stat"):
            _parse(_route_toml("") + f"[runner]\npreempt_for_stat = {wrong}\n")
    router = Router(config.routes, config.peers)
    assert router.completes_on_release({"Modality": "CT"}, ["ORTHANC"])
    assert not router.completes_on_release({"Modality": "CT"}, ["ORTHANC", "MODALITY"]), "a split send waits"
    assert not router.completes_on_release({"Modality": "CT"}, [])
    assert not Router(config.routes, [PeerConfig("ORTHANC", "127.0.0.1")]).completes_on_release(
        {"Modality": "CT"}, ["ORTHANC"])


def test_a_store_from_before_priorities_is_migrated(tmp_path: Path):
    from node.store.database import _2_TO_3, _SCHEMA, _statements

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)  # a store of schema 3: the jobs table without the new columns
    for statement in _statements(_SCHEMA + _2_TO_3):
        db.execute(statement)
    db.execute("PRAGMA user_version=3")
    db.execute("INSERT INTO jobs(series_uid, route, model, destinations, state, created_at, updated_at)"
               " VALUES ('1.2.10.1', 'r', 'm', '[]', 'queued', 0, 0)")
    db.commit()
    db.close()
    store = SqliteJobStore(path)
    try:
        (job,) = store.claim_jobs(OWNER, 5, 60.0)
        assert job.priority == Priority.ROUTINE and job.sender == ""
    finally:
        store.close()


def test_a_postgres_store_from_before_priorities_is_migrated(postgres_server):
    import psycopg

    from node.store.postgres import PostgresJobStore
    from node.store.postgres.schema import _SCHEMA

    url = postgres_server.create_database()
    with psycopg.connect(url, autocommit=True) as conn:  # schema 1: the jobs table without the new columns
        for statement in (s for s in _SCHEMA.split(";") if s.strip()):
            conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version(version) VALUES (1)")
        conn.execute("INSERT INTO jobs(series_uid, route, model, destinations, state, created_at, updated_at)"
                     " VALUES ('1.2.11.1', 'r', 'm', '[]', 'queued', 0, 0)")
    store = PostgresJobStore(url)
    try:
        (job,) = store.claim_jobs(OWNER, 5, 60.0)
        assert job.priority == Priority.ROUTINE and job.sender == ""
    finally:
        store.close()


def test_read_ahead_goes_stat_first_and_a_busy_or_reserved_worker_reads_only_stat():
    from node.pipeline.priorities import may_read_ahead, read_ahead_order
    from node.store import SeriesRow

    config = _parse(_route_toml('priority_from = {calling_ae = {ER_CT = "stat"}}'))
    router = Router(config.routes, config.peers)
    assert router.priority_by_sender
    arriving = [SeriesRow(uid, "1.2.3", SeriesState.RECEIVED, {"Modality": "CT"}, 10, 0.0, 0.0) for uid in ("a", "b")]
    senders = {"a": ["MODALITY"], "b": ["ER_CT"]}
    order = read_ahead_order(router, arriving, lambda uid: senders[uid])
    assert [(s.series_uid, p) for s, p in order] == [("b", Priority.STAT), ("a", Priority.ROUTINE)]
    assert may_read_ahead(Priority.ROUTINE, free=1, reserve=0)
    assert not may_read_ahead(Priority.ROUTINE, free=0, reserve=0), "a busy worker: routine waits"
    assert not may_read_ahead(Priority.ROUTINE, free=1, reserve=1), "the reserved worker: stat only"
    assert may_read_ahead(Priority.STAT, free=0, reserve=0)
