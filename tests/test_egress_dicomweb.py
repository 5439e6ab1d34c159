"""DICOMweb destinations (STOW-RS): delivery into a real Orthanc through its DICOMweb
plugin, retries then dead letters like DIMSE, basic auth, the bearer token, per-instance
outcomes of a store response, and the config keys."""
from __future__ import annotations

import json
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import httpx
import pydicom
import pytest

from node.config import Config, ConfigError, DestinationConfig, EgressConfig, _parse_destination, parse_config
from node.egress.outbox import Outbox
from node.metrics import Metrics
from node.states import SeriesState
from node.store import JobStore
from tests.support import OrthancServer

MODEL = "head-ct-hematoma"


# -- helpers, also used by tests/test_egress_orthanc.py ------------------------------------------


def queue_results(tmp_path: Path, files: list[Path], destination: str = "pacs") -> tuple[JobStore, int, list[tuple[str, str, str]]]:
    """A real job store holding one written job of ``MODEL`` whose results are ``files``, due for ``destination``."""
    store = JobStore(tmp_path / "db.sqlite")
    store.add_instance("1.2.3.9", "x", "/x", "M")
    store.index_instance("1.2.3.9", "1.2.3.8", "1.2.3", {}, 0.0)
    store.set_series_state("1.2.3.8", SeriesState.COMPLETE)
    (job_id,) = store.route_series("1.2.3.8", [("r", MODEL, [destination])])
    store.claim_jobs("test", 1, 60)
    objects = []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        objects.append((str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(path)))
    store.job_written(job_id, objects, [destination])
    return store, job_id, objects


def make_outbox(store: JobStore, destination: DestinationConfig, clock: Callable[[], float],
                max_attempts: int = 3) -> Outbox:
    config = Config(
        destinations=(destination,),
        egress=EgressConfig(max_attempts=max_attempts, backoff_seconds=5.0, backoff_max_seconds=60.0, timeout_seconds=10),
    )
    return Outbox(config, store, Metrics(), clock=clock)


def stored_sop_uids(orthanc: OrthancServer, auth: tuple[str, str] | None = None) -> set[str]:
    """SOP Instance UIDs of every instance Orthanc holds (REST ``/instances``)."""
    response = httpx.get(f"{orthanc.url}/instances", params={"expand": ""}, auth=auth, timeout=30)
    response.raise_for_status()
    return {inst["MainDicomTags"]["SOPInstanceUID"] for inst in response.json()}


def assert_dead_lettered(store: JobStore, job_id: int, reason_part: str) -> None:
    """Every result dead, the job failed at ``deliver`` with a reason containing ``reason_part``."""
    job = store.get_job(job_id)
    assert job.state == "failed" and job.stage == "deliver", job
    assert reason_part in job.reason, job.reason
    assert all(r.state == "dead" for r in store.job_results(job_id))


def retry_until_dead(outbox: Outbox, store: JobStore, job_id: int, now: list[float], count: int) -> None:
    """Two tries with ``max_attempts=2``: the first leaves the results pending with backoff, the second kills them."""
    dest = outbox._config.destinations[0]
    assert outbox.deliver_due(dest) == count
    results = store.job_results(job_id)
    assert all(r.state == "pending" and r.attempts == 1 and r.next_attempt_at == now[0] + 5.0 for r in results)
    assert outbox.deliver_due(dest) == 0, "nothing is due before the backoff has passed"
    now[0] += 1000.0
    assert outbox.deliver_due(dest) == count


@pytest.fixture
def results(tmp_path: Path, small_head_ct):
    _, files = small_head_ct
    return queue_results(tmp_path, files[:3])


@pytest.fixture
def orthanc(tmp_path: Path):
    server = OrthancServer(tmp_path / "orthanc").start()
    yield server
    server.stop()


def _dicomweb(url: str, **auth: Any) -> DestinationConfig:
    return DestinationConfig("pacs", type="dicomweb", url=url, **auth)


# -- delivery into a real Orthanc ----------------------------------------------------------------


@pytest.mark.e2e
def test_a_dicomweb_destination_stores_results_in_orthanc(results, orthanc):
    store, job_id, objects = results
    now = [time.time()]
    outbox = make_outbox(store, _dicomweb(f"{orthanc.url}/dicom-web"), lambda: now[0])
    assert outbox.deliver_due(outbox._config.destinations[0]) == len(objects)
    assert stored_sop_uids(orthanc) == {uid for uid, _, _ in objects}
    assert store.get_job(job_id).state == "delivered"
    assert all(r.state == "delivered" and r.attempts == 1 for r in store.job_results(job_id))



@pytest.mark.e2e
def test_results_sent_twice_are_stored_once(tmp_path, small_head_ct, orthanc):
    _, files = small_head_ct
    for attempt in ("first", "again"):  # results keep their SOP Instance UIDs across retries and replays
        store, job_id, objects = queue_results(tmp_path / attempt, files[:2])
        outbox = make_outbox(store, _dicomweb(f"{orthanc.url}/dicom-web"), time.time)
        outbox.deliver_due(outbox._config.destinations[0])
        assert store.get_job(job_id).state == "delivered"
    assert len(orthanc.get("/instances")) == 2


@pytest.mark.e2e
def test_an_unreachable_dicomweb_port_retries_then_dead_letters_and_replays(results, tmp_path):
    store, job_id, objects = results
    orthanc = OrthancServer(tmp_path / "orthanc")  # its port is chosen, nothing listens there yet
    now = [time.time() + 1]
    outbox = make_outbox(store, _dicomweb(f"{orthanc.url}/dicom-web"), lambda: now[0], max_attempts=2)
    retry_until_dead(outbox, store, job_id, now, len(objects))
    assert_dead_lettered(store, job_id, "STOW-RS to")
    assert "Connection" in store.get_job(job_id).reason
    assert store.requeue_dead() == len(objects)
    orthanc.start()
    try:
        assert outbox.deliver_due(outbox._config.destinations[0]) == len(objects)
        assert stored_sop_uids(orthanc) == {uid for uid, _, _ in objects}
    finally:
        orthanc.stop()
    assert store.get_job(job_id).state == "delivered"


@pytest.mark.e2e
def test_a_wrong_dicomweb_url_retries_then_dead_letters(results, orthanc):
    store, job_id, objects = results
    now = [time.time() + 1]
    outbox = make_outbox(store, _dicomweb(f"{orthanc.url}/no-such-root"), lambda: now[0], max_attempts=2)
    retry_until_dead(outbox, store, job_id, now, len(objects))
    assert_dead_lettered(store, job_id, "HTTP 404")
    assert stored_sop_uids(orthanc) == set()


@pytest.mark.e2e
def test_basic_auth_a_wrong_password_dead_letters_and_the_right_one_delivers(tmp_path, small_head_ct):
    _, files = small_head_ct
    users = {"ainode": "correct horse"}
    orthanc = OrthancServer(tmp_path / "orthanc", extra_config={"AuthenticationEnabled": True,
                                                                "RegisteredUsers": users}).start()
    try:
        wrong, right = tmp_path / "wrong", tmp_path / "right"
        wrong.write_text("battery staple\n")
        right.write_text("correct horse\n")  # a trailing newline is not part of the password
        url = f"{orthanc.url}/dicom-web"

        store, job_id, objects = queue_results(tmp_path / "a", files[:2])
        now = [time.time() + 1]
        outbox = make_outbox(store, _dicomweb(url, username="ainode", password_file=wrong), lambda: now[0],
                             max_attempts=2)
        retry_until_dead(outbox, store, job_id, now, len(objects))
        assert_dead_lettered(store, job_id, "HTTP 401")

        store, job_id, objects = queue_results(tmp_path / "b", files[:2])
        outbox = make_outbox(store, _dicomweb(url, username="ainode", password_file=right), time.time)
        assert outbox.deliver_due(outbox._config.destinations[0]) == len(objects)
        assert store.get_job(job_id).state == "delivered"
        assert stored_sop_uids(orthanc, auth=("ainode", "correct horse")) == {uid for uid, _, _ in objects}
    finally:
        orthanc.stop()


# -- what a STOW-RS server answers, per instance (a scripted server) ------------------------------


class _StowServer:
    """Answers every POST with a scripted status and DICOM JSON body; records the requests' headers."""

    def __init__(self, answer: Callable[[], tuple[int, dict[str, Any]]]) -> None:
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.headers.append(dict(self.headers))
                status, body = answer()
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/dicom-web"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _referenced(uid: str, class_uid: str) -> dict[str, Any]:
    return {"00081150": {"vr": "UI", "Value": [class_uid]}, "00081155": {"vr": "UI", "Value": [uid]}}


def test_failed_and_referenced_sop_sequences_map_to_per_result_outcomes(results):
    store, job_id, objects = results
    (ok_uid, ok_class, _), (bad_uid, bad_class, _), (missing_uid, _, _) = objects
    body = {
        "00081199": {"vr": "SQ", "Value": [_referenced(ok_uid, ok_class)]},
        "00081198": {"vr": "SQ", "Value": [{**_referenced(bad_uid, bad_class),
                                            "00081197": {"vr": "US", "Value": [0xA700]}}]},
    }
    server = _StowServer(lambda: (202, body))
    try:
        now = [time.time() + 1]
        outbox = make_outbox(store, _dicomweb(server.url), lambda: now[0])
        assert outbox.deliver_due(outbox._config.destinations[0]) == 3
    finally:
        server.close()
    by_uid = {r.sop_instance_uid: r for r in store.job_results(job_id)}
    assert by_uid[ok_uid].state == "delivered"
    assert by_uid[bad_uid].state == "pending" and by_uid[bad_uid].last_error == \
        "STOW-RS failure reason 0xA700 (out of resources)"
    assert by_uid[missing_uid].state == "pending"
    assert by_uid[missing_uid].last_error == "not acknowledged in the STOW-RS response"


def test_a_409_with_failed_sop_sequence_fails_only_the_instances_it_names(results):
    store, job_id, objects = results
    body = {"00081198": {"vr": "SQ", "Value": [{**_referenced(uid, cls), "00081197": {"vr": "US", "Value": [0xC000]}}
                                               for uid, cls, _ in objects]}}
    server = _StowServer(lambda: (409, body))
    try:
        outbox = make_outbox(store, _dicomweb(server.url), time.time)
        outbox.deliver_due(outbox._config.destinations[0])
    finally:
        server.close()
    assert {r.last_error for r in store.job_results(job_id)} == {"STOW-RS failure reason 0xC000 (cannot understand)"}


def test_the_bearer_token_is_read_from_its_file_at_send_time(tmp_path, small_head_ct):
    _, files = small_head_ct
    token = tmp_path / "token"
    token.write_text("first\n")
    server = _StowServer(lambda: (200, {}))
    try:
        store, _, _ = queue_results(tmp_path / "a", files[:1])
        outbox = make_outbox(store, _dicomweb(server.url, token_file=token), time.time)
        outbox.deliver_due(outbox._config.destinations[0])
        token.write_text("rotated")  # a rotated token is used by the next delivery, no restart
        store, job_id, _ = queue_results(tmp_path / "b", files[1:2])
        outbox._store = store
        outbox.deliver_due(outbox._config.destinations[0])
    finally:
        server.close()
    assert [h.get("Authorization") for h in server.headers] == ["Bearer first", "Bearer rotated"]
    assert store.get_job(job_id).state == "delivered"


def test_a_missing_token_file_fails_the_attempt_with_its_name(results, tmp_path):
    store, job_id, _ = results
    outbox = make_outbox(store, _dicomweb("http://127.0.0.1:9/dicom-web", token_file=tmp_path / "absent"),
                         time.time, max_attempts=1)
    outbox.deliver_due(outbox._config.destinations[0])
    assert_dead_lettered(store, job_id, f"token_file {str(tmp_path / 'absent')!r} cannot be read")


# -- config -----------------------------------------------------------------------------------------


def _destination(body: str) -> DestinationConfig:
    return parse_config(tomllib.loads(f"[[destinations]]\n{body}"), base_dir=Path("/etc/ainode")).destinations[0]


def test_config_reads_a_dicomweb_destination():
    dest = _destination("name='web'\ntype='dicomweb'\nurl='https://pacs.example/dicom-web/'\n"
                        "token_file='/run/secrets/token'\n")
    assert dest == DestinationConfig("web", type="dicomweb", url="https://pacs.example/dicom-web",
                                     token_file=Path("/run/secrets/token"))
    assert dest.host is None and dest.port is None and dest.ae_title is None
    basic = _destination("name='web'\ntype='dicomweb'\nurl='http://h:8042/dicom-web'\nusername='u'\n"
                         "password_file='/run/secrets/pw'\n")
    assert (basic.username, basic.password_file) == ("u", Path("/run/secrets/pw"))


def test_a_relative_secret_file_is_taken_from_the_config_files_folder():
    table = {"name": "web", "type": "dicomweb", "url": "http://h/dicom-web", "token_file": "secrets/token"}
    dest = _parse_destination("destinations[0]", table, base_dir=Path("/etc/ainode"))
    assert dest.token_file == Path("/etc/ainode/secrets/token")


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("name='w'\ntype='dicomweb'\n", "destinations[0].url", 'required when type = "dicomweb"'),
        ("name='w'\ntype='dicomweb'\nurl='ftp://h/x'\n", "destinations[0].url", "expected an http:// or https:// URL"),
        ("name='w'\ntype='dicomweb'\nurl='http:///x'\n", "destinations[0].url", "with a host"),
        ("name='w'\ntype='dicomweb'\nurl='http://h:99999/x'\n", "destinations[0].url", "out of range"),
        ("name='w'\ntype='dicomweb'\nurl='http://h/x'\nhost='h'\n", "destinations[0].host", "unknown key"),
        ("name='w'\ntype='dicomweb'\nurl='http://h/x'\nusername='u'\n", "destinations[0].password_file",
         "required with username"),
        ("name='w'\ntype='dicomweb'\nurl='http://h/x'\npassword_file='p'\n", "destinations[0].username",
         "required with password_file"),
        ("name='w'\ntype='dicomweb'\nurl='http://h/x'\ntoken_file='t'\nusername='u'\npassword_file='p'\n",
         "destinations[0].token_file", "not both"),
        ("name='w'\ntype='dicomweb'\nurl='http://h/x'\ntoken_file=''\n", "destinations[0].token_file", "file path"),
        ("name='w'\ntype='dimse'\nurl='http://h/x'\n", "destinations[0].url", "unknown key"),
        ("name='w'\ntype='dimse'\nhost='h'\nport=104\n", "destinations[0].ae_title", "required"),
        ("name='w'\ntype='stow'\nurl='http://h/x'\n", "destinations[0].type", 'expected one of "dimse", "dicomweb"'),
    ],
)
def test_config_names_the_wrong_destination_key(body, key, message):
    with pytest.raises(ConfigError) as info:
        _destination(body)
    assert str(info.value).startswith(key), str(info.value)
    assert message in str(info.value)
