"""Stopping (issue 35): SIGTERM ends ``ainode serve`` within its bound, leaves no process,
and a restart finishes what was cut, exactly once. Real processes: the node as
``python -m node.cli serve`` (its own session: its process group holds every process
it started), dcmtk's storescu, Orthanc as the PACS."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.postgres_server import postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.support import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, storescu, wait_for

pytestmark = pytest.mark.e2e

BOUND_SECONDS = 15.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _new_node(workdir: Path, pacs: OrthancServer, grace: float) -> tuple[NodeProcess, int]:
    http_port, dicom_port = free_port(), free_port()
    text = node_config(dicom_port, http_port, pacs, HEAD_CT_ROUTE, quiet_seconds=1.0)
    text = text.replace("[node]\n", f"[node]\nshutdown_grace_seconds = {grace}\n", 1)
    node = NodeProcess(workdir, text)
    node.dicom_port = dicom_port
    return node, http_port


def _terminate(node: NodeProcess, *, twice: bool = False) -> float:
    """SIGTERM the node (twice: a second one at once); seconds until it and every process of its group ended."""
    proc = node._proc  # noqa: SLF001 - the test owns it
    assert proc is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    if twice:
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=BOUND_SECONDS + 5)
    except Exception:
        node.kill()
        raise AssertionError("the node did not exit after SIGTERM")
    wait_for(lambda: not _group_alive(proc.pid), 5, what="no process of the node left")
    node._proc = None  # noqa: SLF001
    return time.monotonic() - started


def test_idle_node_stops_within_bound_leaving_no_process(pacs, tmp_path):
    node, http_port = _new_node(tmp_path / "node", pacs, grace=10)
    node.start(http_port)
    wait_for(lambda: "models loaded" in node.log_text(), 60, what="models loaded")
    seconds = _terminate(node)
    assert seconds < BOUND_SECONDS, node.log_text()[-3000:]
    assert '"node stopped"' in node.log_text()


def test_sigterm_during_a_job_then_restart_delivers_exactly_once(pacs, small_head_ct, tmp_path):
    _, files = small_head_ct
    node, http_port = _new_node(tmp_path / "node", pacs, grace=0.5)
    node.start(http_port)
    storescu(files, node.dicom_port)
    wait_for(lambda: any(j["state"] == "running" for j in node.jobs()), 60, what="a running job")
    seconds = _terminate(node)
    assert seconds < BOUND_SECONDS, node.log_text()[-3000:]

    node.start(http_port)  # the same data folder: the job is queued again (or was written) and finishes
    try:
        job = wait_for(lambda: next((j for j in node.jobs() if j["state"] == "delivered"), None), 120,
                       what="the job delivered after the restart")
        import pydicom
        source = pydicom.dcmread(files[0], stop_before_pixels=True)
        found = pacs.results_by_class(str(source.StudyInstanceUID), str(source.SeriesInstanceUID))
        uids = [str(ds.SOPInstanceUID) for datasets in found.values() for ds in datasets]
        assert uids and len(uids) == len(set(uids))
        assert all(len(datasets) == 1 for cls, datasets in found.items() if cls != "1.2.840.10008.5.1.4.1.1.7"), \
            {cls: len(d) for cls, d in found.items()}
        assert job["state"] == "delivered"
    finally:
        _terminate(node)


def test_second_sigterm_exits_at_once(pacs, tmp_path):
    node, http_port = _new_node(tmp_path / "node", pacs, grace=30)
    node.start(http_port)
    seconds = _terminate(node, twice=True)
    assert seconds < 5.0
    assert "second stop signal" in node.log_text()


# -- issue 35's other cuts: during ingest, during delivery, ``ainode worker``, STOW while stopping ---------------


def _source_uids(files: list[Path]) -> tuple[str, str]:
    import pydicom
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    return str(source.StudyInstanceUID), str(source.SeriesInstanceUID)


def _assert_exactly_once(pacs: OrthancServer, files: list[Path]) -> None:
    """The results of ``files``' series are in the PACS once: no SOP Instance twice, one object per class (overlays aside)."""
    found = pacs.results_by_class(*_source_uids(files))
    uids = [str(ds.SOPInstanceUID) for datasets in found.values() for ds in datasets]
    assert uids and len(uids) == len(set(uids)), uids
    assert all(len(datasets) == 1 for cls, datasets in found.items() if cls != "1.2.840.10008.5.1.4.1.1.7"), \
        {cls: len(d) for cls, d in found.items()}


def _received(node: NodeProcess) -> float:
    lines = [line for line in node.metrics().splitlines() if line.startswith("ainode_instances_received_total")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


@pytest.fixture(scope="module")
def forty_slices(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from models.phantoms.head_ct import generate_head_ct, write_phantom
    phantom = generate_head_ct(seed=35, slices=40, hematoma=True)
    out = tmp_path_factory.mktemp("forty_slices")
    return sorted(p for p in write_phantom(phantom, out) if p.suffix == ".dcm")


def test_sigterm_during_ingest_then_a_resend_delivers_exactly_once(pacs, forty_slices, tmp_path):
    import threading
    files = forty_slices
    # quiet 5 s: after the restart the half-received series waits for the modality's re-send
    # grace 0.3 s: the association still open then is cut, the series half received
    node, http_port = _new_node(tmp_path / "node", pacs, grace=0.3)
    node.config_path.write_text(node.config_path.read_text().replace("quiet_seconds = 1.0", "quiet_seconds = 5.0"))
    node.start(http_port)
    errors: list[BaseException] = []

    def _send() -> None:
        try:
            storescu(files, node.dicom_port)
        except BaseException as exc:  # the node stopping may cut the association: expected
            errors.append(exc)

    sender = threading.Thread(target=_send)
    sender.start()
    wait_for(lambda: _received(node) >= 1, 30, interval=0.02, what="the first instances received")
    seconds = _terminate(node)
    sender.join(60)
    assert seconds < BOUND_SECONDS, node.log_text()[-3000:]
    print(f"ingest: exited {seconds:.2f} s after SIGTERM; storescu {'cut: ' + str(errors[0])[:80] if errors else 'finished'}")

    node.start(http_port)
    try:
        storescu(files, node.dicom_port)  # the modality sends the whole series again
        job = wait_for(lambda: next((j for j in node.jobs() if j["state"] == "delivered"), None), 120,
                       what="the job delivered after the restart")
        time.sleep(2)  # a second job (a partial series run twice) would show by now
        assert [j["state"] for j in node.jobs()] == ["delivered"], node.jobs()
        assert job["state"] == "delivered"
        _assert_exactly_once(pacs, files)
    finally:
        _terminate(node)


def test_sigterm_during_delivery_then_restart_delivers_exactly_once(small_head_ct, tmp_path):
    _, files = small_head_ct
    pacs = OrthancServer(tmp_path / "pacs").start()
    try:
        pacs.stop()  # the PACS is down (its ports stay in its configuration for the restart)
        node, http_port = _new_node(tmp_path / "node", pacs, grace=2)
        node.start(http_port)
        storescu(files, node.dicom_port)
        wait_for(lambda: any(j["state"] == "written" for j in node.jobs()), 90, what="results queued for delivery")
        time.sleep(1.5)  # at least one refused attempt
        seconds = _terminate(node)
        assert seconds < BOUND_SECONDS, node.log_text()[-3000:]
        print(f"delivery: exited {seconds:.2f} s after SIGTERM")

        pacs.start()
        node.start(http_port)
        try:
            wait_for(lambda: next((j for j in node.jobs() if j["state"] == "delivered"), None), 90,
                     what="the job delivered after the restart")
            assert [j["state"] for j in node.jobs()] == ["delivered"], node.jobs()
            _assert_exactly_once(pacs, files)
        finally:
            _terminate(node)
    finally:
        pacs.stop()


def test_stow_answers_503_while_the_node_stops(small_head_ct, tmp_path):
    """In process: a stop held after intake closed (step 2 waits), a STOW-RS POST meanwhile is refused with 503."""
    import threading

    import httpx

    from node.config import Config, NodeConfig
    from node.service import Node

    _, files = small_head_ct
    config = Config(node=NodeConfig(data_dir=tmp_path / "data", dicom_host="127.0.0.1", dicom_port=0,
                                    http_port=0, shutdown_grace_seconds=5))
    node = Node(config)
    node.start()
    url = f"http://127.0.0.1:{node.web.port}/dicom-web/studies"
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + files[0].read_bytes() + b"\r\n--b--\r\n"
    headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'}
    held, release = threading.Event(), threading.Event()

    def _hold(deadline: float) -> int:  # step 2 of Node.stop, held until the POST was answered
        held.set()
        release.wait(10)
        return 0

    node._wait_for_associations = _hold  # type: ignore[method-assign]  # noqa: SLF001
    stopper = threading.Thread(target=node.stop)
    stopper.start()
    try:
        assert held.wait(10)
        answer = httpx.post(url, content=body, headers=headers, timeout=10)
        assert answer.status_code == 503, answer.text
        assert answer.headers.get("Retry-After")
        assert node.store.instance_counts() in ({}, {"total": 0}) or not node.store.known_instance_uids()
    finally:
        release.set()
        stopper.join(20)
    assert not stopper.is_alive()


def _worker_group_gone(worker) -> float:
    """SIGTERM ``ainode worker``; seconds until it and every process of its group ended."""
    proc = worker._proc  # noqa: SLF001 - the test owns it
    assert proc is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=BOUND_SECONDS + 5)
    except Exception:
        worker.signal(signal.SIGKILL)
        raise AssertionError("the worker did not exit after SIGTERM: " + worker.log_text()[-3000:])
    wait_for(lambda: not _group_alive(proc.pid), 5, what="no process of the worker left")
    worker._proc = None  # noqa: SLF001
    return time.monotonic() - started


def test_worker_sigterm_idle_and_during_a_job_hands_the_job_back(postgres_url, tmp_path):
    from benchmarks.scale_out import WorkerProcess, shared_store_toml
    from models.phantoms.head_ct import generate_head_ct, write_phantom
    from node.states import JobState, ResultState
    from node.store.postgres import PostgresJobStore

    pacs = OrthancServer(tmp_path / "pacs").start()
    store = PostgresJobStore(postgres_url)
    http_port, dicom_port = free_port(), free_port()
    ingest = NodeProcess(tmp_path / "ingest", node_config(
        dicom_port, http_port, pacs, HEAD_CT_ROUTE, quiet_seconds=1.0,
        extra=shared_store_toml(postgres_url, runner_enabled=False, lease_seconds=60)))
    ingest.dicom_port = dicom_port
    # a long lease: a job finished by the next worker before it ran out was handed back, not lost and re-leased
    worker_text = node_config(0, 0, pacs, HEAD_CT_ROUTE, extra=shared_store_toml(
        postgres_url, runner_enabled=True, lease_seconds=60)).replace("[node]\n", "[node]\nshutdown_grace_seconds = 0.5\n", 1)
    workers: list[WorkerProcess] = []
    try:
        ingest.start(http_port)
        idle = WorkerProcess(tmp_path / "worker-idle", worker_text).start()
        workers.append(idle)
        seconds = _worker_group_gone(idle)
        assert seconds < BOUND_SECONDS, idle.log_text()[-3000:]
        print(f"worker idle: exited {seconds:.2f} s after SIGTERM")

        victim = WorkerProcess(tmp_path / "worker-a", worker_text).start()
        workers.append(victim)
        phantom = generate_head_ct(seed=36, slices=24, hematoma=True)
        files = sorted(p for p in write_phantom(phantom, tmp_path / "series") if p.suffix == ".dcm")
        series_uid = str(phantom.datasets[0].SeriesInstanceUID)
        storescu(files, dicom_port)
        (running,) = wait_for(lambda: [j for j in store.jobs_for_series(series_uid) if j.state == JobState.RUNNING],
                              90, interval=0.05, what="the worker running the job")
        seconds = _worker_group_gone(victim)
        assert seconds < BOUND_SECONDS, victim.log_text()[-3000:]
        print(f"worker running a job: exited {seconds:.2f} s after SIGTERM")
        (job,) = store.jobs_for_series(series_uid)
        if job.state != JobState.DELIVERED:  # handed back: queued again, its lease released at once
            assert job.state == JobState.QUEUED and not job.lease_owner, (job.state, job.lease_owner)

        successor = WorkerProcess(tmp_path / "worker-b", worker_text).start()
        workers.append(successor)
        handed_back = time.monotonic()
        (done,) = wait_for(lambda: [j for j in store.jobs_for_series(series_uid) if j.state == JobState.DELIVERED],
                           120, what="the job finished by the next worker")
        assert time.monotonic() - handed_back < 60, "finished before the 60 s lease could have run out"
        results = store.job_results(done.id)
        sent = [r for r in results if r.state == ResultState.DELIVERED]
        # a first run that reached its write before the SIGTERM's grace ran out queued objects the
        # outbox had not sent yet: at the hand-back they are superseded, never sent (the next run
        # writes them anew); what went out is below, once each, and once in the PACS
        unsent = [r for r in results if r.state != ResultState.DELIVERED]
        assert sent and all(r.state == ResultState.SUPERSEDED and r.attempts == 0 for r in unsent), \
            [(r.state, r.attempts) for r in unsent]
        assert {r.attempts for r in sent} == {1}, "no result sent twice"
        _assert_exactly_once(pacs, files)
    finally:
        for worker in workers:
            worker.stop()
        ingest.stop()
        store.close()
        pacs.stop()
