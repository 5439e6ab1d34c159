"""The job store's contract: states, transitions, leases, re-runs, and the defects they fix.

Every test that takes the ``store`` fixture runs on both backends: SQLite, and PostgreSQL
(a real server from Debian's package, started for the session; a fresh database per test).
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from node.states import (
    TRANSITIONS,
    FailureStage,
    IllegalTransition,
    InstanceState,
    JobState,
    ResultState,
    SeriesState,
    check_transition,
)
from node.store import JobStore, SqliteJobStore
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture

CT = "1.2.840.10008.5.1.4.1.1.2"
HEAD = {"Modality": "CT", "BodyPartExamined": "HEAD"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        db = SqliteJobStore(tmp_path / "store.sqlite")
    else:
        from node.store.postgres import PostgresJobStore

        db = PostgresJobStore(request.getfixturevalue("postgres_server").create_database())
    yield db
    db.close()


def _receive(store, series_uid: str, n: int = 2, at: float = 0.0) -> list[str]:
    uids = []
    for i in range(n):
        uid = f"{series_uid}.{i + 1}"
        store.add_instance(uid, CT, f"/spool/{uid}.dcm", "MOD")
        store.index_instance(uid, series_uid, "1.2.3", HEAD, at)
        uids.append(uid)
    return uids


def _routed_job(store, series_uid: str, destinations=("pacs",)) -> int:
    _receive(store, series_uid)
    store.set_series_state(series_uid, SeriesState.COMPLETE)
    (job_id,) = store.route_series(series_uid, [("head", "head-ct-hematoma", list(destinations))])
    return job_id


def _written_job(store, series_uid: str, destinations=("pacs",), objects: int = 1) -> int:
    job_id = _routed_job(store, series_uid, destinations)
    assert [j.id for j in store.claim_jobs("w1", 1, 60)] == [job_id]
    results = [(f"{series_uid}.9{i}", "1.2.840.10008.5.1.4.1.1.66.4", f"/r/{i}.dcm") for i in range(objects)]
    assert store.job_written(job_id, results, list(destinations), owner="w1")
    return job_id


# -- the state machine ------------------------------------------------------------------
def test_every_state_has_a_row_in_the_transition_table():
    for kind, table in TRANSITIONS.items():
        assert set(table) == set(kind), kind


def test_illegal_transitions_are_refused_by_the_store(store):
    job_id = _routed_job(store, "1.2.5.1")
    with pytest.raises(IllegalTransition):
        store.set_job_state(job_id, JobState.DELIVERED)  # queued → delivered skips the run
    with pytest.raises(IllegalTransition):
        store.set_series_state("1.2.5.1", SeriesState.COMPLETE)  # routed → complete
    assert store.get_job(job_id).state == JobState.QUEUED, "a refused change leaves the row as it was"
    with pytest.raises(IllegalTransition):
        check_transition("no-such-state", JobState.QUEUED)


def test_state_names_live_in_the_state_module_only():
    """No node module spells a state as a bare string (the store reads them from the enums)."""
    import re

    root = Path(__file__).resolve().parents[1] / "node"
    names = {s.value for kind in TRANSITIONS for s in kind}
    pattern = re.compile(r"""['"](%s)['"]""" % "|".join(sorted(names)))
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "states.py" or "bench" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if pattern.search(code) and "legacy" not in code:
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# -- defect 1: one failed transaction froze every thread ----------------------------------
def test_a_failed_begin_releases_the_lock(tmp_path: Path):
    store = JobStore(tmp_path / "store.sqlite", busy_timeout=0.2)
    other = sqlite3.connect(str(tmp_path / "store.sqlite"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.add_instance("1.2.6.1", CT, "/x", "MOD")
    other.execute("ROLLBACK")
    other.close()
    done = threading.Event()

    def _write() -> None:
        store.add_instance("1.2.6.2", CT, "/y", "MOD")
        done.set()

    threading.Thread(target=_write, daemon=True).start()
    assert done.wait(5), "the store stayed locked after a failed BEGIN: every stage would freeze"
    assert store.has_instance("1.2.6.2")
    store.close()


# -- defect 2: a series re-sent after its purge was never processed ------------------------
def test_a_series_resent_after_its_purge_is_processed_again(store):
    job_id = _written_job(store, "1.2.7.1", destinations=())
    assert store.get_job(job_id).state == JobState.DELIVERED
    assert store.purgeable_series(time.time() + 10) == ["1.2.7.1"]
    store.purge_series("1.2.7.1")
    assert store.get_series("1.2.7.1").state == SeriesState.PURGED

    _receive(store, "1.2.7.1", n=3)
    series = store.get_series("1.2.7.1")
    assert series.state == SeriesState.RECEIVED and series.instance_count == 3 and series.generation == 1
    store.set_series_state("1.2.7.1", SeriesState.COMPLETE)
    (new_job,) = store.route_series("1.2.7.1", [("head", "head-ct-hematoma", [])])
    assert new_job != job_id, "the re-sent series gets a job of its own"
    assert len(store.series_instances("1.2.7.1")) == 3
    assert store.claim_jobs("w", 1, 60) and store.job_written(new_job, [], [], owner="w")
    assert store.purgeable_series(time.time() + 10) == ["1.2.7.1"], "its files are removed again after retention"


# -- defect 6: one busy destination hid the others' results -------------------------------
def test_due_results_are_claimed_per_destination(store):
    busy = _written_job(store, "1.2.8.1", destinations=("busy",), objects=250)
    quiet = _written_job(store, "1.2.8.2", destinations=("quiet",), objects=1)
    now = time.time() + 1
    (row,) = store.claim_due_results("quiet", "o", now, 60)
    assert row.job_id == quiet
    assert len(store.claim_due_results("busy", "o", now, 60, limit=200)) == 200 and busy
    assert store.claim_due_results("busy", "o2", now, 60, limit=200) != [], "the rest of busy's results"
    assert store.claim_due_results("quiet", "o2", now, 60) == [], "a claimed result is not handed out twice"
    assert store.next_result_due("nowhere") is None


# -- defect 8: a failed job could not be re-run -------------------------------------------
def test_a_failed_job_runs_again_and_its_old_results_are_superseded(store):
    job_id = _written_job(store, "1.2.9.1", objects=2)
    for row in store.job_results(job_id):
        store.result_failed(row.id, "refused", retry_at=None)
    job = store.get_job(job_id)
    assert job.state == JobState.FAILED and job.stage == FailureStage.DELIVER
    assert store.rerun_job(job_id)
    assert store.get_job(job_id).state == JobState.QUEUED
    assert {r.state for r in store.job_results(job_id)} == {ResultState.SUPERSEDED}
    (claimed,) = store.claim_jobs("w", 1, 60)
    assert claimed.id == job_id and claimed.runs == 2
    assert store.job_written(job_id, [("1.2.9.1.77", "1.2.840.10008.5.1.4.1.1.66.4", "/r/new.dcm")], ["pacs"],
                             owner="w")
    (new,) = [r for r in store.job_results(job_id) if r.state == ResultState.PENDING]
    store.result_delivered(new.id)
    assert store.get_job(job_id).state == JobState.DELIVERED, "superseded results do not hold the job back"
    assert not store.rerun_job(_routed_job(store, "1.2.9.2")), "a queued job has nothing to re-run"


# -- leases --------------------------------------------------------------------------------
def test_an_expired_lease_returns_the_job_and_drops_the_stale_outcome(store):
    job_id = _routed_job(store, "1.2.10.1")
    assert store.claim_jobs("dead-worker", 5, lease_seconds=0.01)[0].id == job_id
    assert store.claim_jobs("other", 5, 60) == [], "a leased job is not claimed twice"
    time.sleep(0.05)
    now = time.time()
    assert store.release_job_leases(lambda owner, until: until < now) == [job_id]
    assert store.get_job(job_id).state == JobState.QUEUED
    assert store.claim_jobs("other", 5, 60)[0].id == job_id
    assert not store.job_written(job_id, [], [], owner="dead-worker"), "the lost worker's outcome is dropped"
    assert not store.fail_job(job_id, FailureStage.INFERENCE, "late", owner="dead-worker")
    assert store.get_job(job_id).state == JobState.RUNNING
    assert store.job_written(job_id, [], [], owner="other")
    assert store.get_job(job_id).state == JobState.DELIVERED


def test_renewed_leases_are_kept(store):
    job_id = _routed_job(store, "1.2.10.2")
    store.claim_jobs("w", 1, lease_seconds=0.05)
    store.renew_job_leases("w", [job_id], 60)
    time.sleep(0.1)
    now = time.time()
    assert store.release_job_leases(lambda owner, until: until < now) == []


def test_delivery_claims_of_a_gone_owner_are_released(store):
    _written_job(store, "1.2.10.3")
    now = time.time() + 1
    assert store.claim_due_results("pacs", "gone", now, 600)
    assert store.claim_due_results("pacs", "me", now, 600) == []
    assert store.release_result_leases(lambda owner, _until: owner == "gone") == 1
    assert len(store.claim_due_results("pacs", "me", now, 600)) == 1


def test_lease_owners_of_this_host_are_judged_by_their_process(tmp_path: Path):
    import os
    import socket
    import subprocess
    import sys

    from node.store import lease_owner_id, owner_is_gone

    me = lease_owner_id()
    assert not owner_is_gone(me)
    host = socket.gethostname()
    assert owner_is_gone(f"{host}:{os.getpid()}:another-life"), "same pid, earlier start (PID 1 in a container)"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert owner_is_gone(f"{host}:{child.pid}:x")
    assert not owner_is_gone("elsewhere:1:x"), "another host's leases end only when they run out"


# -- instances -----------------------------------------------------------------------------
def test_quarantined_instances_leave_the_queue_with_their_reason(store):
    store.add_instance("1.2.11.1", CT, "/bad", "MOD")
    store.add_instance("1.2.11.2", CT, "/good", "MOD")
    store.quarantine_instance("1.2.11.1", "NotImplementedError: Unknown Value Representation")
    assert [r.sop_instance_uid for r in store.unindexed_instances()] == ["1.2.11.2"]
    (row,) = store.quarantined_instances()
    assert row["sop_instance_uid"] == "1.2.11.1" and "Value Representation" in row["reason"]
    assert store.instance_counts() == {InstanceState.QUARANTINED: 1, InstanceState.RECEIVED: 1}


def test_unindexed_instances_known_at_ingest_hold_their_series_open(store):
    _receive(store, "1.2.12.1", n=2, at=10.0)
    store.add_instance("1.2.12.1.3", CT, "/x", "MOD", series_uid="1.2.12.1", received_at=50.0)
    series = store.get_series("1.2.12.1")
    assert series.unindexed == 1 and series.last_received == 50.0


def test_a_store_from_the_first_release_is_migrated(tmp_path: Path):
    path = tmp_path / "legacy.sqlite"
    db = sqlite3.connect(str(path))
    db.executescript(_LEGACY_SCHEMA)
    db.close()
    store = JobStore(path)
    from node.store.database import SCHEMA_VERSION

    assert store._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    job = store.get_job(1)
    assert job.state == JobState.QUEUED and job.generation == 0, "an interrupted job is queued again"
    assert store.get_job(2).state == JobState.DELIVERED
    assert [r.sop_instance_uid for r in store.unindexed_instances()] == ["1.2.13.9"]
    assert store.quarantined_instances()[0]["reason"] == "bad header"
    assert store.claim_due_results("pacs", "me", time.time(), 60) == [], "a delivered result stays delivered"
    assert store.job_results(2)[0].state == ResultState.DELIVERED
    store.close()


_LEGACY_SCHEMA = """
CREATE TABLE instances (sop_instance_uid TEXT PRIMARY KEY, sop_class_uid TEXT NOT NULL, path TEXT NOT NULL,
    received_at REAL NOT NULL, calling_ae TEXT, series_uid TEXT, index_error TEXT);
CREATE INDEX instances_unindexed ON instances(series_uid) WHERE series_uid IS NULL;
CREATE INDEX instances_series ON instances(series_uid);
CREATE TABLE series (series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, state TEXT NOT NULL, attrs TEXT NOT NULL,
    instance_count INTEGER NOT NULL DEFAULT 0, first_received REAL NOT NULL, last_received REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, route TEXT NOT NULL,
    model TEXT NOT NULL, destinations TEXT NOT NULL, state TEXT NOT NULL, stage TEXT, reason TEXT, engine TEXT,
    timings TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL, UNIQUE (series_uid, route));
CREATE TABLE results (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL REFERENCES jobs(id),
    sop_instance_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL, path TEXT NOT NULL, destination TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, last_error TEXT,
    updated_at REAL NOT NULL, UNIQUE (sop_instance_uid, destination));
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
    state TEXT NOT NULL, detail TEXT);
INSERT INTO instances VALUES ('1.2.13.1', '1.2', '/a', 0, 'M', '1.2.13', NULL);
INSERT INTO instances VALUES ('1.2.13.8', '1.2', '/b', 0, 'M', NULL, 'bad header');
INSERT INTO instances VALUES ('1.2.13.9', '1.2', '/c', 0, 'M', NULL, NULL);
INSERT INTO series VALUES ('1.2.13', '1.2', 'routed', '{}', 1, 0, 0, 0);
INSERT INTO jobs VALUES (1, '1.2.13', 'a', 'm', '["pacs"]', 'running', NULL, NULL, NULL, NULL, 0, 0);
INSERT INTO jobs VALUES (2, '1.2.13', 'b', 'm', '["pacs"]', 'delivered', NULL, NULL, NULL, NULL, 0, 0);
INSERT INTO results VALUES (1, 2, '1.2.13.50', '1.2', '/r', 'pacs', 'delivered', 1, 0, NULL, 0);
"""


# -- late instances (complete means complete) ---------------------------------------------
def test_a_late_instance_reopens_the_series_and_supersedes_its_jobs(store):
    job_id = _written_job(store, "1.2.14.1", objects=2)  # two results pending delivery
    store.add_instance("1.2.14.1.late", CT, "/late", "MOD")
    assert store.index_instance("1.2.14.1.late", "1.2.14.1", "1.2.3", HEAD, 5.0) == SeriesState.ROUTED
    assert store.reopen_series("1.2.14.1", "late image") == [job_id]
    assert store.get_job(job_id).state == JobState.SUPERSEDED
    assert {r.state for r in store.job_results(job_id)} == {ResultState.SUPERSEDED}, "partial results are not sent"
    series = store.get_series("1.2.14.1")
    assert series.state == SeriesState.RECEIVED and series.generation == 1 and series.instance_count == 3
    store.set_series_state("1.2.14.1", SeriesState.COMPLETE)
    (new_job,) = store.route_series("1.2.14.1", [("head", "head-ct-hematoma", ["pacs"])])
    assert f"supersedes jobs [{job_id}]" in store.job_events(new_job)[0]["detail"]
    assert len(store.series_instances("1.2.14.1")) == 3, "the new job sees every image"
    assert store.purgeable_series(time.time() + 10) == [], "the new job is not delivered yet"


def test_an_instance_read_at_ingest_is_filed_in_the_same_transaction(store):
    def add(uid: str, series_uid: str, at: float = 1.0) -> InstanceState | None:
        return store.add_filed_instance(uid, CT, f"/spool/{uid}", "MOD", series_uid=series_uid, study_uid="1.2.3",
                                        attrs=HEAD, received_at=at)

    assert add("1.2.15.1.1", "1.2.15.1") == InstanceState.INDEXED
    assert add("1.2.15.1.2", "1.2.15.1", 3.0) == InstanceState.INDEXED
    assert add("1.2.15.1.2", "1.2.15.1") is None, "once per UID"
    series = store.get_series("1.2.15.1")
    assert (series.state, series.instance_count, series.attrs, series.last_received) == (
        SeriesState.RECEIVED, 2, HEAD, 3.0)
    assert store.unindexed_instances() == [] and store.unfiled_instance_count() == 0
    assert [e["state"] for e in store.series_events("1.2.15.1")] == [SeriesState.RECEIVED]


def test_what_only_the_indexer_decides_is_left_to_it(store):
    job_id = _written_job(store, "1.2.15.2")  # routed; its result 1.2.15.2.90 is an object of this node
    for uid in ("1.2.15.2.late", "1.2.15.2.90"):
        assert store.add_filed_instance(uid, CT, f"/spool/{uid}", "MOD", series_uid="1.2.15.2", study_uid="1.2.3",
                                        attrs=HEAD) == InstanceState.RECEIVED
    assert {r.sop_instance_uid for r in store.unindexed_instances()} == {"1.2.15.2.late", "1.2.15.2.90"}
    assert store.get_series("1.2.15.2").instance_count == 2, "a late instance is counted by the indexer"
    assert store.get_job(job_id).state == JobState.WRITTEN


def test_a_late_instance_while_jobs_are_queued_changes_nothing(store):
    job_id = _routed_job(store, "1.2.14.2")
    store.add_instance("1.2.14.2.late", CT, "/late", "MOD")
    store.index_instance("1.2.14.2.late", "1.2.14.2", "1.2.3", HEAD, 5.0)
    assert store.reopen_series("1.2.14.2", "late image") == []
    assert store.get_job(job_id).state == JobState.QUEUED, "it has not run: it will see the new image"


def test_a_running_job_of_a_reopened_series_cannot_record_its_outcome(store):
    job_id = _routed_job(store, "1.2.14.3")
    store.claim_jobs("w", 1, 60)
    store.add_instance("1.2.14.3.late", CT, "/late", "MOD")
    store.index_instance("1.2.14.3.late", "1.2.14.3", "1.2.3", HEAD, 5.0)
    assert store.reopen_series("1.2.14.3", "late image") == [job_id]
    assert not store.job_written(job_id, [("1.2.14.3.99", CT, "/r")], ["pacs"], owner="w")
    assert store.job_results(job_id) == []


# -- several processes sharing one store (ingest nodes and workers) -------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def open_handle(request: pytest.FixtureRequest, tmp_path: Path):
    """Opens another handle (connection) on one store, as another node's process would."""
    handles = []
    if request.param == "sqlite":
        def _open():
            handles.append(SqliteJobStore(tmp_path / "shared.sqlite", busy_timeout=30))
            return handles[-1]
    else:
        from node.store.postgres import PostgresJobStore

        url = request.getfixturevalue("postgres_server").create_database()

        def _open():
            handles.append(PostgresJobStore(url))
            return handles[-1]
    yield _open
    for handle in handles:
        handle.close()


def _in_threads(count: int, work) -> list:
    """Run ``work(i)`` in ``count`` threads started together; their return values, in order."""
    barrier = threading.Barrier(count)
    out: list = [None] * count
    errors: list[BaseException] = []

    def _run(i: int) -> None:
        try:
            barrier.wait()
            out[i] = work(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=_run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return out


def test_claimers_on_several_connections_never_share_a_job(open_handle):
    first = open_handle()
    jobs = {_routed_job(first, f"1.2.20.{i}") for i in range(40)}
    workers = [open_handle() for _ in range(4)]

    def _claim_all(i: int) -> list[int]:
        mine: list[int] = []
        while claimed := workers[i].claim_jobs(f"w{i}", 3, 60):
            mine += [job.id for job in claimed]
        return mine

    taken = [job_id for ids in _in_threads(4, _claim_all) for job_id in ids]
    assert sorted(taken) == sorted(jobs), "every job claimed exactly once"
    assert first.job_counts() == {JobState.RUNNING: 40}


def test_two_nodes_filing_one_series_at_once_make_one_series(open_handle):
    nodes = [open_handle() for _ in range(2)]

    def _file(i: int) -> None:
        for n in range(10):
            uid = f"1.2.21.1.{i}.{n}"
            nodes[i].add_instance(uid, CT, f"/spool/{uid}", "MOD")
            nodes[i].index_instance(uid, "1.2.21.1", "1.2.3", HEAD, float(n))

    _in_threads(2, _file)
    series = nodes[0].get_series("1.2.21.1")
    assert series.instance_count == 20 and series.state == SeriesState.RECEIVED
    assert [e["state"] for e in nodes[1].series_events("1.2.21.1")] == [SeriesState.RECEIVED]


def test_the_last_results_of_a_job_delivered_at_once_settle_it(open_handle):
    a, b = open_handle(), open_handle()
    job_ids = [_written_job(a, f"1.2.22.{i}", objects=2) for i in range(10)]
    now = time.time() + 1
    rows = a.claim_due_results("pacs", "o", now, 60, limit=100)
    by_job: dict[int, list[int]] = {}
    for row in rows:
        by_job.setdefault(row.job_id, []).append(row.id)
    for job_id in job_ids:
        first, second = by_job[job_id]
        _in_threads(2, lambda i: (a, b)[i].result_delivered((first, second)[i]))
    assert {a.get_job(j).state for j in job_ids} == {JobState.DELIVERED}, "no job stuck in written"


# -- PostgreSQL only ------------------------------------------------------------------------
def test_postgres_schema_is_versioned_and_a_newer_one_is_refused(postgres_server):
    from node.store.postgres import SCHEMA_VERSION, PostgresJobStore

    url = postgres_server.create_database()
    store = PostgresJobStore(url)
    assert store._query("SELECT version FROM schema_version") == [{"version": SCHEMA_VERSION}]
    store.add_instance("1.2.23.1", CT, "/x", "MOD")
    store.close()
    again = PostgresJobStore(url)  # opening an up-to-date store changes nothing
    assert again.has_instance("1.2.23.1")
    with again._tx() as db:
        db.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION + 1,))
    again.close()
    with pytest.raises(RuntimeError, match="newer than this node"):
        PostgresJobStore(url)


def test_postgres_connection_lost_is_opened_again(postgres_server):
    import psycopg

    from node.store.postgres import PostgresJobStore

    store = PostgresJobStore(postgres_server.create_database())
    pid = store._query("SELECT pg_backend_pid() AS pid")[0]["pid"]
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        store.has_instance("1.2.24.1")  # the call that finds the connection gone fails...
    store.add_instance("1.2.24.1", CT, "/x", "MOD")  # ...and the next one reconnects
    assert store.has_instance("1.2.24.1")
    store.close()


# -- objects queued one by one while their job is still written (issue 17) -----------------
_SEG = "1.2.840.10008.5.1.4.1.1.66.4"


def test_objects_queued_while_written_are_delivered_before_the_job_is_written(store):
    job_id = _routed_job(store, "1.2.17.1")
    store.claim_jobs("w", 1, 60)
    first, second = ("1.2.17.1.1", _SEG, "/r/1.dcm"), ("1.2.17.1.2", _SEG, "/r/2.dcm")
    assert store.result_written(job_id, first, ["pacs"], owner="w")
    (row,) = store.claim_due_results("pacs", "o", time.time() + 1, 60)
    store.result_delivered(row.id)
    assert store.get_job(job_id).state == JobState.RUNNING, "a delivered object does not settle a running job"
    assert not store.result_written(job_id, second, ["pacs"], owner="other"), "only the lease holder queues"
    assert store.job_written(job_id, [first, second], ["pacs"], owner="w")
    rows = store.job_results(job_id)
    assert [(r.sop_instance_uid, r.state) for r in rows] == [
        ("1.2.17.1.1", ResultState.DELIVERED), ("1.2.17.1.2", ResultState.PENDING)], "queued once each"
    store.result_delivered(rows[1].id)
    assert store.get_job(job_id).state == JobState.DELIVERED


def test_a_job_whose_objects_were_all_delivered_while_written_is_delivered_when_written(store):
    job_id = _routed_job(store, "1.2.17.2")
    store.claim_jobs("w", 1, 60)
    only = ("1.2.17.2.1", _SEG, "/r/1.dcm")
    assert store.result_written(job_id, only, ["pacs"], owner="w")
    (row,) = store.claim_due_results("pacs", "o", time.time() + 1, 60)
    store.result_delivered(row.id)
    assert store.job_written(job_id, [only], ["pacs"], owner="w")
    assert store.get_job(job_id).state == JobState.DELIVERED


def test_objects_of_a_job_that_fails_or_loses_its_worker_are_not_sent_unless_in_flight(store):
    failed = _routed_job(store, "1.2.17.3")
    store.claim_jobs("w", 1, 60)
    store.result_written(failed, ("1.2.17.3.1", _SEG, "/r/1.dcm"), ["pacs"], owner="w")
    store.result_written(failed, ("1.2.17.3.2", _SEG, "/r/2.dcm"), ["other"], owner="w")
    (in_flight,) = store.claim_due_results("other", "o", time.time() + 1, 60)
    assert store.fail_job(failed, FailureStage.WRITE, "disk full", owner="w")
    states = {r.sop_instance_uid: r.state for r in store.job_results(failed)}
    assert states == {"1.2.17.3.1": ResultState.SUPERSEDED, "1.2.17.3.2": ResultState.PENDING}
    store.result_delivered(in_flight.id)  # the send under way completes normally
    lost = _routed_job(store, "1.2.17.4")
    store.claim_jobs("dead", 1, 60)
    store.result_written(lost, ("1.2.17.4.1", _SEG, "/r/3.dcm"), ["pacs"], owner="dead")
    assert store.release_job_leases(lambda owner, _until: owner == "dead") == [lost]
    assert {r.state for r in store.job_results(lost)} == {ResultState.SUPERSEDED}
    assert store.claim_due_results("pacs", "o", time.time() + 1, 60) == []
