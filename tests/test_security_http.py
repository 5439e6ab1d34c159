"""The HTTP API's gate: a bearer token on everything but /metrics and /healthz, no PHI out.

Real uvicorn servers on loopback, real HTTP requests (httpx), a real job store.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from node.http.auth import AccessMode, BearerAuth
from node.config import HttpConfig
from node.ingest import InstanceAcceptor
from node.metrics import Metrics
from node.store.spool import Spool
from node.states import FailureStage, JobState, SeriesState
from node.store import JobStore
from node.http.web import WebServer

CT = "1.2.840.10008.5.1.4.1.1.2"
TOKEN = "s3cret-token-0123456789abcdef"
BIRTH_DATE = "19700314"


def _failed_job(store: JobStore) -> int:
    store.add_instance("1.2.97.1.1", CT, "/x", "MOD")
    store.index_instance("1.2.97.1.1", "1.2.97.1", "1.2.3", {}, 0.0)
    store.set_series_state("1.2.97.1", SeriesState.COMPLETE)
    (job_id,) = store.route_series("1.2.97.1", [("r", "head-ct-hematoma", ["pacs"])])
    store.claim_jobs("w", 1, 60)
    store.fail_job(job_id, FailureStage.INFERENCE,
                   f"ValueError: Invalid value for VR DA: '{BIRTH_DATE}' (PatientName=DOE^JANE)", owner="w")
    return job_id


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, JobStore]]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    store = JobStore(tmp_path / "db.sqlite")
    auth = BearerAuth.from_config(HttpConfig(token_file=token_file), "0.0.0.0")
    metrics = Metrics()
    acceptor = InstanceAcceptor(store, Spool(tmp_path / "spool"), metrics)
    server = WebServer("127.0.0.1", 0, store, metrics, lambda: {"status": "ok"}, acceptor=acceptor, auth=auth)
    server.start()
    yield f"http://127.0.0.1:{server.port}", store
    server.stop()
    store.close()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_anonymous_and_wrong_tokens_get_401_naming_no_secret(api):
    url, store = api
    job_id = _failed_job(store)
    for method, path in [("POST", f"/api/jobs/{job_id}/retry"), ("POST", "/api/deadletters/retry"),
                         ("POST", "/dicom-web/studies"), ("POST", "/api/studies/1.2.3/process"),
                         ("GET", "/api/jobs"), ("GET", f"/api/jobs/{job_id}"), ("GET", "/api/series/1.2.97.1"),
                         ("GET", "/api/quarantine")]:
        for headers in ({}, _auth("wrong"), {"Authorization": TOKEN}, {"Authorization": "Basic Zm9vOmJhcg=="}):
            answer = httpx.request(method, url + path, headers=headers, timeout=5)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in answer.text and "token_file" not in answer.text.replace("[http] token_file", "")
    assert store.get_job(job_id).state == JobState.FAILED, "nothing was done for a refused request"


def test_the_token_opens_the_api_and_bad_parameters_get_422(api):
    url, store = api
    job_id = _failed_job(store)
    answer = httpx.post(f"{url}/api/jobs/{job_id}/retry", headers=_auth(), timeout=5)
    assert answer.status_code == 200 and answer.json()["requeued"] == 1
    assert httpx.post(f"{url}/api/deadletters/retry", headers=_auth(), timeout=5).status_code == 200
    for bad in ("/api/jobs?limit=abc", "/api/jobs?limit=0", "/api/jobs?state=nonsense", "/api/jobs/notanumber"):
        assert httpx.get(url + bad, headers=_auth(), timeout=5).status_code == 422, bad
    assert httpx.post(f"{url}/api/jobs/{job_id}/explode", headers=_auth(), timeout=5).status_code == 422
    assert httpx.post(f"{url}/api/jobs/999/retry", headers=_auth(), timeout=5).status_code == 404
    assert httpx.post(f"{url}/api/studies/1.2.3/process", headers=_auth(), json={"src": 1}, timeout=5).status_code == 422
    stow = httpx.post(f"{url}/dicom-web/studies", headers={**_auth(), "Content-Type": "text/plain"}, content=b"x",
                      timeout=5)
    assert 400 <= stow.status_code < 500 and stow.status_code != 401


def test_metrics_health_and_the_api_description_stay_open(api):
    url, _ = api
    assert "/api/jobs/{job_id}" in httpx.get(f"{url}/openapi.json", timeout=5).json()["paths"]
    assert httpx.get(f"{url}/metrics", timeout=5).status_code == 200
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_failure_reasons_are_scrubbed_of_attribute_values(api):
    url, store = api
    job_id = _failed_job(store)
    listed = httpx.get(f"{url}/api/jobs", headers=_auth(), timeout=5)
    detail = httpx.get(f"{url}/api/jobs/{job_id}", headers=_auth(), timeout=5)
    series = httpx.get(f"{url}/api/series/1.2.97.1", headers=_auth(), timeout=5)
    for answer in (listed, detail, series):
        assert answer.status_code == 200
        assert BIRTH_DATE not in answer.text and "DOE" not in answer.text and "JANE" not in answer.text
    reason = detail.json()["reason"]
    assert reason.startswith("ValueError: Invalid value for VR DA:") and "<redacted>" in reason


def test_without_a_token_only_a_loopback_api_is_anonymous(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    assert BearerAuth.from_config(HttpConfig(), "127.0.0.1").mode == AccessMode.ANONYMOUS
    assert BearerAuth.from_config(HttpConfig(), "0.0.0.0").mode == AccessMode.CLOSED
    assert BearerAuth.from_config(HttpConfig(allow_anonymous=False), "127.0.0.1").mode == AccessMode.CLOSED
    closed = WebServer("127.0.0.1", 0, store, Metrics(), lambda: {"status": "ok"},
                       auth=BearerAuth.from_config(HttpConfig(), "0.0.0.0"))
    closed.start()
    try:
        url = f"http://127.0.0.1:{closed.port}"
        assert httpx.post(f"{url}/api/deadletters/retry", timeout=5).status_code == 401
        assert httpx.get(f"{url}/api/jobs", timeout=5).status_code == 401
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        closed.stop()
        store.close()


def test_an_unreadable_token_file_stops_the_start(tmp_path: Path):
    from node.http.auth import AuthError

    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path in (tmp_path / "missing", empty):
        with pytest.raises(AuthError) as caught:
            BearerAuth.from_config(HttpConfig(token_file=path), "127.0.0.1")
        assert str(path) in str(caught.value)


def test_ainode_process_sends_the_token(api, tmp_path: Path):
    url, _ = api
    token_file = tmp_path / "token"
    command = [sys.executable, "-m", "node.cli", "process", "1.2.3.4", "--source", "nowhere", "--node", url]
    anonymous = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert anonymous.returncode == 1 and "bearer token is required" in anonymous.stderr
    with_token = subprocess.run([*command, "--token-file", str(token_file)], capture_output=True, text=True,
                                timeout=60)
    assert with_token.returncode == 1 and "no source named 'nowhere'" in with_token.stderr, with_token.stderr
    assert TOKEN not in with_token.stderr + with_token.stdout


def test_log_fields_that_quote_exceptions_are_scrubbed():
    import io
    import json
    import logging

    from node.logs import _JsonFormatter, log

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter())
    logger = logging.getLogger("ainode.test-scrub")
    logger.addHandler(handler)
    try:
        log(logger, logging.ERROR, "job failed", job_id=3, reason=f"bad DA '{BIRTH_DATE}'",
            traceback=f'File "x.py", line 1\nValueError: PatientName=DOE^JANE born {BIRTH_DATE}')
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["job_id"] == 3 and line["reason"] == "bad DA '<redacted>'"
    assert BIRTH_DATE not in stream.getvalue() and "DOE" not in stream.getvalue()


def test_session_cookies_expire_end_with_the_token_and_never_hold_it(tmp_path: Path):
    import os

    from node.http.sessions import SessionSigner

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    auth = BearerAuth(AccessMode.TOKEN, token_file)
    now = [1_000_000.0]
    signer = SessionSigner(auth._current_token, lifetime=3600, clock=lambda: now[0])
    cookie = signer.issue()
    assert signer.valid(cookie) and TOKEN not in cookie and TOKEN[:6] not in cookie
    expires, nonce, signature = cookie.split(".")
    assert not signer.valid(f"{int(expires) + 9999}.{nonce}.{signature}"), "the expiry is signed"
    assert not signer.valid(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
    assert not signer.valid(None) and not signer.valid("") and not signer.valid("é.é.é")
    now[0] += 3601
    assert not signer.valid(cookie), "expired"
    now[0] -= 3601
    token_file.write_text("a-new-token-after-rotation\n")
    os.utime(token_file, ns=(token_file.stat().st_mtime_ns + 10**9,) * 2)
    assert not signer.valid(cookie), "a new token ends every session"
    fresh = signer.issue()
    signer.revoke(fresh)
    assert not signer.valid(fresh), "logged out"
