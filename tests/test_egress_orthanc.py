"""Orthanc REST destinations: delivery into a real Orthanc, retries then dead letters like
DIMSE, basic auth, study labels where the Orthanc has them (1.12+), and the config keys."""
from __future__ import annotations

import logging
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from node.config import ConfigError, DestinationConfig, parse_config
from node.egress.orthanc import labels_supported, study_label
from tests.support import OrthancServer
from tests.test_egress_dicomweb import (
    MODEL,
    assert_dead_lettered,
    make_outbox,
    queue_results,
    retry_until_dead,
    stored_sop_uids,
)


@pytest.fixture
def results(tmp_path: Path, small_head_ct):
    _, files = small_head_ct
    return queue_results(tmp_path, files[:3])


@pytest.fixture
def orthanc(tmp_path: Path):
    server = OrthancServer(tmp_path / "orthanc").start()
    yield server
    server.stop()


def _orthanc(url: str, **auth) -> DestinationConfig:
    return DestinationConfig("pacs", type="orthanc", url=url, **auth)


def _version(orthanc: OrthancServer, auth: tuple[str, str] | None = None) -> str:
    return str(httpx.get(f"{orthanc.url}/system", auth=auth, timeout=10).json()["Version"])


@pytest.mark.e2e
def test_an_orthanc_destination_stores_results(results, orthanc, caplog):
    store, job_id, objects = results
    outbox = make_outbox(store, _orthanc(orthanc.url), time.time)
    with caplog.at_level(logging.WARNING, logger="ainode.egress"):
        assert outbox.deliver_due(outbox._config.destinations[0]) == len(objects)
    assert stored_sop_uids(orthanc) == {uid for uid, _, _ in objects}
    assert store.get_job(job_id).state == "delivered"
    assert all(r.state == "delivered" and r.attempts == 1 for r in store.job_results(job_id))
    assert not caplog.records, "no warning: on an Orthanc without labels the label step does nothing"


@pytest.mark.e2e
def test_the_study_is_labelled_with_the_model(results, orthanc):
    version = _version(orthanc)
    if not labels_supported(version):
        pytest.skip("Orthanc <1.12 has no labels")
    store, job_id, objects = results
    outbox = make_outbox(store, _orthanc(orthanc.url), time.time)
    outbox.deliver_due(outbox._config.destinations[0])
    (study,) = orthanc.get("/studies")
    assert study_label(MODEL) in orthanc.get(f"/studies/{study}/labels")


@pytest.mark.e2e
def test_results_sent_twice_are_stored_once(tmp_path, small_head_ct, orthanc):
    _, files = small_head_ct
    for attempt in ("first", "again"):  # Orthanc answers AlreadyStored: delivered, stored once
        store, job_id, _ = queue_results(tmp_path / attempt, files[:2])
        outbox = make_outbox(store, _orthanc(orthanc.url), time.time)
        outbox.deliver_due(outbox._config.destinations[0])
        assert store.get_job(job_id).state == "delivered"
    assert len(orthanc.get("/instances")) == 2


@pytest.mark.e2e
def test_an_unreachable_orthanc_retries_then_dead_letters_and_replays(results, tmp_path):
    store, job_id, objects = results
    orthanc = OrthancServer(tmp_path / "orthanc")  # its port is chosen, nothing listens there yet
    now = [time.time() + 1]
    outbox = make_outbox(store, _orthanc(orthanc.url), lambda: now[0], max_attempts=2)
    retry_until_dead(outbox, store, job_id, now, len(objects))
    assert_dead_lettered(store, job_id, f"Orthanc at {orthanc.url}: Could not connect")
    assert store.requeue_dead() == len(objects)
    orthanc.start()
    try:
        assert outbox.deliver_due(outbox._config.destinations[0]) == len(objects)
        assert stored_sop_uids(orthanc) == {uid for uid, _, _ in objects}
    finally:
        orthanc.stop()
    assert store.get_job(job_id).state == "delivered"


@pytest.mark.e2e
def test_a_wrong_orthanc_url_retries_then_dead_letters(results, orthanc):
    store, job_id, _ = results
    now = [time.time() + 1]
    outbox = make_outbox(store, _orthanc(f"{orthanc.url}/no-such-prefix/"), lambda: now[0], max_attempts=2)
    retry_until_dead(outbox, store, job_id, now, 3)
    assert_dead_lettered(store, job_id, "HTTP 404")
    assert stored_sop_uids(orthanc) == set()


@pytest.mark.e2e
def test_basic_auth_a_wrong_password_dead_letters_and_the_right_one_delivers(tmp_path, small_head_ct):
    _, files = small_head_ct
    orthanc = OrthancServer(tmp_path / "orthanc", extra_config={"AuthenticationEnabled": True,
                                                                "RegisteredUsers": {"ainode": "correct horse"}}).start()
    try:
        wrong, right = tmp_path / "wrong", tmp_path / "right"
        wrong.write_text("battery staple\n")
        right.write_text("correct horse\n")

        store, job_id, objects = queue_results(tmp_path / "a", files[:2])
        now = [time.time() + 1]
        outbox = make_outbox(store, _orthanc(orthanc.url, username="ainode", password_file=wrong), lambda: now[0],
                             max_attempts=2)
        retry_until_dead(outbox, store, job_id, now, len(objects))
        assert_dead_lettered(store, job_id, "HTTP 401")

        store, job_id, objects = queue_results(tmp_path / "b", files[:2])
        outbox = make_outbox(store, _orthanc(orthanc.url, username="ainode", password_file=right), time.time)
        assert outbox.deliver_due(outbox._config.destinations[0]) == len(objects)
        assert store.get_job(job_id).state == "delivered"
        assert stored_sop_uids(orthanc, auth=("ainode", "correct horse")) == {uid for uid, _, _ in objects}
    finally:
        orthanc.stop()


def test_labels_need_orthanc_1_12():
    assert [labels_supported(v) for v in ("1.10.1", "1.11.3", "1.12.0", "1.12.4", "2.0.0", "mainline-1234", "")] == \
        [False, False, True, True, True, True, False]
    assert study_label("head-ct-hematoma") == "ai-head-ct-hematoma"
    assert study_label("my.model v2") == "ai-my-model-v2"


def _destination(body: str) -> DestinationConfig:
    return parse_config(tomllib.loads(f"[[destinations]]\n{body}"), base_dir=Path("/etc/ainode")).destinations[0]


def test_config_reads_an_orthanc_destination():
    dest = _destination("name='o'\ntype='orthanc'\nurl='http://127.0.0.1:8042'\nusername='u'\n"
                        "password_file='/run/secrets/pw'\n")
    assert dest == DestinationConfig("o", type="orthanc", url="http://127.0.0.1:8042", username="u",
                                     password_file=Path("/run/secrets/pw"))


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("name='o'\ntype='orthanc'\n", "destinations[0].url", 'required when type = "orthanc"'),
        ("name='o'\ntype='orthanc'\nurl='http://h'\ntoken_file='t'\n", "destinations[0].token_file", "unknown key"),
        ("name='o'\ntype='orthanc'\nurl='http://h'\nae_title='X'\n", "destinations[0].ae_title", "unknown key"),
        ("name='o'\ntype='orthanc'\nurl='http://h'\nusername='u'\n", "destinations[0].password_file",
         "required with username"),
        ("name='o'\ntype='orthanc'\nurl=8042\n", "destinations[0].url", "expected str"),
    ],
)
def test_config_names_the_wrong_destination_key(body, key, message):
    with pytest.raises(ConfigError) as info:
        _destination(body)
    assert str(info.value).startswith(key), str(info.value)
    assert message in str(info.value)
