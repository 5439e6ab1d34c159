"""Known peers at A-ASSOCIATE: real dcmtk echoscu/storescu against the node's listener.

With ``accept_unknown_peers = false`` an unlisted calling AE title is rejected (reason 3,
calling AE title not recognised), so is a listed title from another host; a listed peer
is accepted. Each connection leaves one audit line, without patient data.
"""
from __future__ import annotations

import json
import logging
import subprocess
import tomllib
from pathlib import Path
from typing import Iterator

import pydicom
import pytest

from node.config import ConfigError, PeerConfig, load_config, parse_config
from node.ingest import IngestServer
from node.ingest.peers import PeerPolicy
from node.logs import AUDIT_LOGGER
from node.metrics import Metrics
from node.store.spool import Spool
from node.store import JobStore

REPO = Path(__file__).resolve().parents[1]
PEERS = (PeerConfig("CT1", "127.0.0.0/8"), PeerConfig("FARAWAY", "10.9.8.7"), PeerConfig("SECURE", "127.0.0.1", tls=True))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[IngestServer, Metrics, JobStore]]:
    store, metrics = JobStore(tmp_path / "db.sqlite"), Metrics()
    server = IngestServer("AINODE", "127.0.0.1", 0, store, Spool(tmp_path / "spool"), metrics,
                          network_timeout=5.0, peers=PeerPolicy(PEERS, accept_unknown=False))
    server.start()
    yield server, metrics, store
    server.stop()
    store.close()


def _echo(port: int, calling: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["echoscu", "-aet", calling, "-aec", "AINODE", "-to", "10", "-ta", "10", "-td", "10",
                           "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60)


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [r.fields for r in caplog.records if r.name == AUDIT_LOGGER]  # type: ignore[attr-defined]


def _wait_audit(caplog: pytest.LogCaptureFixture, n: int) -> list[dict]:
    import time

    deadline = time.monotonic() + 10
    while len(_audit_lines(caplog)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return _audit_lines(caplog)


def test_unknown_title_and_known_title_from_the_wrong_host_are_rejected(node, caplog):
    server, metrics, _ = node
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    for calling in ("STRANGER", "FARAWAY", "SECURE"):  # unlisted; listed for 10.9.8.7; listed for TLS only
        result = _echo(server.port, calling)
        assert result.returncode != 0, calling
        assert "Calling AE Title Not Recognized" in result.stdout + result.stderr, result.stderr
    assert metrics.associations_rejected.labels("unknown_peer")._value.get() == 3
    lines = _wait_audit(caplog, 3)
    assert [(line["calling_ae"], line["outcome"]) for line in lines] == [
        ("STRANGER", "rejected"), ("FARAWAY", "rejected"), ("SECURE", "rejected")]
    assert "not listed" in lines[0]["reason"] and "host does not match" in lines[1]["reason"]
    assert "TLS" in lines[2]["reason"]
    assert all(line["peer"].startswith("127.0.0.1:") and line["instances"] == 0 for line in lines)


def test_a_listed_peer_stores_and_is_audited(node, caplog, small_head_ct):
    server, _, store = node
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    _, files = small_head_ct
    assert _echo(server.port, "CT1").returncode == 0
    sent = subprocess.run(["storescu", "-aet", "CT1", "-aec", "AINODE", "127.0.0.1", str(server.port), *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
    assert all(store.has_instance(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)) for f in files)
    echo, stored = _wait_audit(caplog, 2)
    assert echo["outcome"] == "accepted" and echo["instances"] == 0
    assert stored["outcome"] == "accepted" and stored["calling_ae"] == "CT1" and stored["called_ae"] == "AINODE"
    assert stored["instances"] == len(files) and stored["bytes"] >= sum(f.stat().st_size for f in files) * 0.9
    assert stored["tls"] is False
    patient = pydicom.dcmread(files[0], stop_before_pixels=True)
    for text in (json.dumps(stored), caplog.text):
        assert str(patient.PatientID) not in text and str(patient.PatientName) not in text


def test_accept_unknown_peers_still_binds_listed_titles_to_their_hosts():
    policy = PeerPolicy(PEERS, accept_unknown=True)
    assert policy.problem("ANYONE", "192.168.1.5", tls=False) is None
    assert policy.problem("FARAWAY", "127.0.0.1", tls=False) is not None
    assert policy.problem("FARAWAY", "10.9.8.7", tls=False) is None
    assert policy.problem("CT1", "::ffff:127.0.0.9", tls=False) is None
    assert policy.problem("SECURE", "127.0.0.1", tls=True) is None


def test_peer_configuration_is_validated():
    raw = tomllib.loads('[node]\naccept_unknown_peers = false\n[[peers]]\nae_title = "CT1"\nhost = "10.0.0.0/8"\n')
    config = parse_config(raw, Path("/base"))
    assert config.node.accept_unknown_peers is False and config.peers == (PeerConfig("CT1", "10.0.0.0/8"),)
    with pytest.raises(ConfigError, match=r"peers\[0\]\.host"):
        parse_config({"peers": [{"ae_title": "CT1", "host": "ct-scanner.example"}]}, Path("/base"))
    with pytest.raises(ConfigError, match=r"peers\[0\]\.ae_title"):
        parse_config({"peers": [{"ae_title": "X\\Y", "host": "10.0.0.1"}]}, Path("/base"))
    assert load_config(None).node.accept_unknown_peers is True, "the two-command demo takes any sender"


def test_docker_config_is_closed_to_unknown_peers_and_anonymous_api():
    from node.http.auth import AccessMode, BearerAuth

    config = load_config(REPO / "docker" / "config.docker.toml")
    assert config.node.accept_unknown_peers is False and config.peers
    assert config.http.token_file is not None
    assert config.node.http_host == "0.0.0.0"
    assert BearerAuth.from_config(type(config.http)(), config.node.http_host).mode == AccessMode.CLOSED
    text = (REPO / "docker" / "config.docker.toml").read_text() + (REPO / "config.toml").read_text()
    assert "password =" not in text and "token =" not in text
