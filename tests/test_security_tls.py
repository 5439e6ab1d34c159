"""DICOM TLS: dcmtk's storescu/echoscu ``+tls`` as the modality, an Orthanc with DICOM TLS as the PACS.

Certificates are made here with the openssl command: a site CA, a server certificate
(127.0.0.1) used by the node's listener and by Orthanc, a client certificate for the
modality and the node, a second client certificate of the same CA (another device's),
and a client certificate of another CA.
"""
from __future__ import annotations

import json
import ssl
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pydicom
import pytest

from node.http.auth import BearerAuth
from node.config import HttpConfig
from node.ingest import IngestServer, InstanceAcceptor
from node.ingest.peers import PeerPolicy
from node.config import PeerConfig
from node.metrics import Metrics
from node.store.spool import Spool
from node.states import JobState
from node.store import JobStore
from node.dicom.tls import server_context
from node.http.web import WebServer
from tests.pki import Pki
from tests.support import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, wait_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_node(tmp_path: Path, pki: Pki) -> Iterator[tuple[IngestServer, JobStore]]:
    store = JobStore(tmp_path / "db.sqlite")
    context = server_context(pki.server, pki.server_key, pki.ca, require_client_cert=True)
    server = IngestServer("AINODE", "127.0.0.1", 0, store, Spool(tmp_path / "spool"), Metrics(), network_timeout=5.0,
                          peers=PeerPolicy([PeerConfig("SECURE", "127.0.0.1", tls=True, cert_cn="modality"),
                                            PeerConfig("ANYCERT", "127.0.0.1", tls=True)], accept_unknown=True),
                          tls_context=context, tls_port=0)
    server.start()
    yield server, store
    server.stop()
    store.close()


def _dcmtk(tool: str, port: int, *options: str, files: list[Path] = (), calling: str = "SECURE") -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "-aet", calling, "-aec", "AINODE", "-to", "10", "-ta", "10", "-td", "10", *options,
                           "127.0.0.1", str(port), *map(str, files)], capture_output=True, text=True, timeout=120)


def test_storescu_over_tls_with_a_client_certificate_stores(tls_node, pki, small_head_ct):
    server, store = tls_node
    _, files = small_head_ct
    assert server.tls_port and server.tls_port != server.port
    sent = _dcmtk("storescu", server.tls_port, "+tls", str(pki.client_key), str(pki.client), "+cf", str(pki.ca),
                  files=files)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert all(store.has_instance(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)) for f in files)


def test_clients_without_a_trusted_certificate_are_refused(tls_node, pki):
    server, _ = tls_node
    anonymous = _dcmtk("echoscu", server.tls_port, "+tla", "+cf", str(pki.ca))
    assert anonymous.returncode != 0
    rogue = _dcmtk("echoscu", server.tls_port, "+tls", str(pki.rogue_key), str(pki.rogue), "+cf", str(pki.ca))
    assert rogue.returncode != 0
    plain_on_tls = _dcmtk("echoscu", server.tls_port)
    assert plain_on_tls.returncode != 0
    # the listener still serves a good client after those
    good = _dcmtk("echoscu", server.tls_port, "+tls", str(pki.client_key), str(pki.client), "+cf", str(pki.ca))
    assert good.returncode == 0, good.stdout + good.stderr


def test_a_peer_bound_to_tls_is_refused_on_the_plain_port(tls_node, pki):
    server, _ = tls_node
    plain = _dcmtk("echoscu", server.port)
    assert plain.returncode != 0 and "Calling AE Title Not Recognized" in plain.stdout + plain.stderr
    assert _dcmtk("echoscu", server.port, calling="OTHER").returncode == 0


def test_a_client_certificate_is_bound_to_its_peers_title(tls_node, pki, caplog):
    """SECURE is listed with cert_cn = "modality": another device's certificate from the same CA,
    valid for the handshake, cannot associate under that title; the rejection is audited."""
    import logging

    from node.logs import AUDIT_LOGGER

    server, _ = tls_node
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    other = ("+tls", str(pki.other_key), str(pki.other), "+cf", str(pki.ca))
    refused = _dcmtk("echoscu", server.tls_port, *other)
    assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    assert _dcmtk("echoscu", server.tls_port, *other, calling="ANYCERT").returncode == 0, "any CA-signed cert"
    good = _dcmtk("echoscu", server.tls_port, "+tls", str(pki.client_key), str(pki.client), "+cf", str(pki.ca))
    assert good.returncode == 0, good.stdout + good.stderr
    deadline = time.monotonic() + 10
    while len([r for r in caplog.records if r.name == AUDIT_LOGGER]) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [r.fields for r in caplog.records if r.name == AUDIT_LOGGER]  # type: ignore[attr-defined]
    assert [(a["calling_ae"], a["client_cert"], a["outcome"]) for a in lines] == [
        ("SECURE", "other-device", "rejected"), ("ANYCERT", "other-device", "accepted"),
        ("SECURE", "modality", "accepted")]
    assert lines[0]["reason"] == "unknown_peer: client certificate does not match the AE title's [[peers]] entry"
    assert all(a["tls"] for a in lines)


def test_cert_cn_is_checked_by_the_policy_and_the_config():
    from node.config import ConfigError, parse_config

    policy = PeerPolicy([PeerConfig("CT1", "10.0.0.0/8", tls=True, cert_cn="ct1.example")], accept_unknown=False)
    assert policy.problem("CT1", "10.1.2.3", tls=True, client_cn="ct1.example") is None
    assert "does not match" in policy.problem("CT1", "10.1.2.3", tls=True, client_cn="ct2.example")
    assert "no client certificate" in policy.problem("CT1", "10.1.2.3", tls=True, client_cn=None)
    assert "TLS" in policy.problem("CT1", "10.1.2.3", tls=False, client_cn="ct1.example")
    parsed = parse_config({"peers": [{"ae_title": "CT1", "host": "10.0.0.1", "tls": True, "cert_cn": "ct1"}]},
                          Path("/base"))
    assert parsed.peers[0].cert_cn == "ct1"
    with pytest.raises(ConfigError, match=r"peers\[0\]\.cert_cn"):
        parse_config({"peers": [{"ae_title": "CT1", "host": "10.0.0.1", "cert_cn": "ct1"}]}, Path("/base"))


def test_a_silent_client_does_not_block_the_tls_listener(tls_node, pki):
    import socket

    server, _ = tls_node
    with socket.create_connection(("127.0.0.1", server.tls_port)):  # connects, never says hello
        start = time.monotonic()
        good = _dcmtk("echoscu", server.tls_port, "+tls", str(pki.client_key), str(pki.client), "+cf", str(pki.ca))
        assert good.returncode == 0 and time.monotonic() - start < 5, good.stderr


def test_https_api(tmp_path: Path, pki):
    store = JobStore(tmp_path / "db.sqlite")
    http = HttpConfig(cert=pki.server, key=pki.server_key)
    web = WebServer("127.0.0.1", 0, store, Metrics(), lambda: {"status": "ok"},
                    auth=BearerAuth.from_config(http, "127.0.0.1"), http=http)
    web.start()
    try:
        assert httpx.get(f"https://127.0.0.1:{web.port}/healthz", verify=ssl.create_default_context(cafile=str(pki.ca)),
                         timeout=5).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{web.port}/healthz", timeout=5)
    finally:
        web.stop()
        store.close()


def test_https_login_cookie_is_secure_and_ainode_process_takes_a_private_ca(tmp_path: Path, pki):
    import sys

    token_file = tmp_path / "token"
    token_file.write_text("https-token-0123456789\n")
    store = JobStore(tmp_path / "db.sqlite")
    http = HttpConfig(token_file=token_file, cert=pki.server, key=pki.server_key)
    metrics = Metrics()
    web = WebServer("127.0.0.1", 0, store, metrics, lambda: {"status": "ok"},
                    acceptor=InstanceAcceptor(store, Spool(tmp_path / "spool"), metrics),
                    auth=BearerAuth.from_config(http, "0.0.0.0"), http=http)
    web.start()
    url = f"https://127.0.0.1:{web.port}"
    try:
        login = httpx.post(f"{url}/login", data={"token": "https-token-0123456789"}, headers={"Origin": url},
                           verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=5)
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].lower()
        assert "; secure" in cookie and "; httponly" in cookie and "samesite=strict" in cookie
        command = [sys.executable, "-m", "node.cli", "process", "1.2.3.4", "--source", "nowhere", "--node", url,
                   "--token-file", str(token_file)]
        untrusted = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert untrusted.returncode == 1 and "cannot be reached (ConnectError)" in untrusted.stderr, untrusted.stderr
        trusted = subprocess.run([*command, "--ca", str(pki.ca)], capture_output=True, text=True, timeout=60)
        assert trusted.returncode == 1 and "no source named 'nowhere'" in trusted.stderr, trusted.stderr
    finally:
        web.stop()
        store.close()


@pytest.mark.e2e
def test_a_series_stored_over_tls_has_its_results_delivered_to_orthanc_over_tls(tmp_path: Path, pki, small_head_ct):
    _, files = small_head_ct
    dicom_port, http_port = free_port(), free_port()
    orthanc = OrthancServer(tmp_path / "orthanc", node_port=dicom_port, extra_config={
        "DicomTlsEnabled": True, "DicomTlsCertificate": str(pki.server), "DicomTlsPrivateKey": str(pki.server_key),
        "DicomTlsTrustedCertificates": str(pki.ca), "DicomTlsRemoteCertificateRequired": True,
    }).start()
    text = node_config(dicom_port, http_port, orthanc, HEAD_CT_ROUTE)
    text = text.replace('data_dir = "data"\n', 'data_dir = "data"\naccept_unknown_peers = false\n', 1)
    text = text.replace(f'ae_title = "{orthanc.ae_title}"\n', f'''ae_title = "{orthanc.ae_title}"
tls = true
ca = "{pki.ca}"
cert = "{pki.client}"
key = "{pki.client_key}"
''', 1)
    text += f'''
[[peers]]
ae_title = "SECURE"
host = "127.0.0.1"
tls = true

[dicom_tls]
cert = "{pki.server}"
key = "{pki.server_key}"
ca = "{pki.ca}"
'''
    node = NodeProcess(tmp_path / "node", text)
    node.start(http_port)
    try:
        assert _dcmtk("echoscu", dicom_port).returncode != 0, "the main port speaks TLS only"
        sent = _dcmtk("storescu", dicom_port, "+tls", str(pki.client_key), str(pki.client), "+cf", str(pki.ca),
                      files=files)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        wait_for(lambda: [j for j in node.jobs() if j["state"] == JobState.DELIVERED], 180, what="delivered job")
        found = httpx.post(f"{orthanc.url}/tools/find", json={"Level": "Instance", "Query": {
            "StudyInstanceUID": str(first.StudyInstanceUID)}}, timeout=30).json()
        assert found, "results in Orthanc"
        audits = [json.loads(line) for line in node.log_text().splitlines() if '"audit"' in line]
        association = [a for a in audits if a["audit"] == "association" and a["outcome"] == "accepted"]
        assert any(a["tls"] and a["instances"] == len(files) and a["client_cert"] == "modality" for a in association)
        delivery = [a for a in audits if a["audit"] == "delivery"]
        assert delivery and delivery[-1]["tls"] is True and delivery[-1]["failed"] == 0
        data = tmp_path / "node" / "data"
        assert data.stat().st_mode & 0o777 == 0o700
        stored = [p for p in (data / "spool").rglob("*") if p.is_file() and p.suffix != ".sqlite"]
        assert stored and all(p.stat().st_mode & 0o077 == 0 for p in stored), "files are the node user's only"
    finally:
        node.stop()
        orthanc.stop()
