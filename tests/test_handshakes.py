"""Connections that never become associations: failed TLS handshakes, silent connections, wrong titles.

They cost no association threads, are closed within the handshake timeout (not the network
timeout), are audited with the reason (and the client certificate's name when there is
one), and log one WARNING line each, no ERROR and no traceback.
"""
from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from node.config import PeerConfig
from node.dicom.tls import server_context
from node.ingest import IngestServer
from node.ingest.peers import PeerPolicy
from node.logs import AUDIT_LOGGER
from node.metrics import Metrics
from node.store import JobStore
from node.store.spool import Spool
from tests.pki import Pki

MAX_ASSOCIATIONS = 2
HANDSHAKE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def node(tmp_path: Path, pki: Pki) -> Iterator[IngestServer]:
    store = JobStore(tmp_path / "db.sqlite")
    context = server_context(pki.server, pki.server_key, pki.ca, require_client_cert=True)
    server = IngestServer("AINODE", "127.0.0.1", 0, store, Spool(tmp_path / "spool"), Metrics(),
                          max_associations=MAX_ASSOCIATIONS, network_timeout=30.0,
                          handshake_timeout=HANDSHAKE_TIMEOUT, max_pending_handshakes=16,
                          peers=PeerPolicy([PeerConfig("SECURE", "127.0.0.1", tls=True, cert_cn="modality")],
                                           accept_unknown=True),
                          tls_context=context, tls_port=0)
    server.start()
    yield server
    server.stop()
    store.close()


def _echo(port: int, pki: Pki, calling: str = "SECURE", called: str = "AINODE") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["echoscu", "-aet", calling, "-aec", called, "-to", "10", "-ta", "10", "-td", "10",
                           "+tls", str(pki.client_key), str(pki.client), "+cf", str(pki.ca), "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=60)


def _audits(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [r.fields for r in caplog.records if r.name == AUDIT_LOGGER]  # type: ignore[attr-defined]


_STORM = textwrap.dedent('''
    import socket, ssl, sys, threading, time, warnings
    warnings.simplefilter("ignore")
    port, ca, rogue, rogue_key, count, hold = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
    def nocert():
        return ssl.create_default_context(cafile=ca)
    def rogue_cert():
        c = ssl.create_default_context(cafile=ca); c.load_cert_chain(rogue, rogue_key); return c
    def tls11():
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
        c.minimum_version = c.maximum_version = ssl.TLSVersion.TLSv1_1; c.set_ciphers("ALL:@SECLEVEL=0"); return c
    def bad_cipher():
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
        c.maximum_version = ssl.TLSVersion.TLSv1_2; c.set_ciphers("AES128-SHA"); return c
    kinds = [nocert, rogue_cert, tls11, bad_cipher, None]
    go = threading.Event()
    closed_by_node = []
    def one(i):
        kind = kinds[i % len(kinds)]
        go.wait()
        try:
            raw = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
        except OSError:
            return
        try:
            if kind is None:  # a bare TCP connect that never says hello
                raw.settimeout(hold)
                start = time.monotonic()
                if raw.recv(1) == b"":
                    closed_by_node.append(time.monotonic() - start)
            else:
                s = kind().wrap_socket(raw, server_hostname="127.0.0.1"); s.recv(1)
        except Exception:
            pass
        finally:
            raw.close()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads: t.start()
    go.set()
    for t in threads: t.join()
    print(len(closed_by_node), max(closed_by_node, default=0.0))
''')


def test_200_failing_tls_handshakes_at_once_cost_no_threads_and_a_good_association_succeeds(node, pki, caplog):
    caplog.set_level(logging.INFO)
    port = node.tls_port
    assert _echo(port, pki).returncode == 0
    time.sleep(0.5)
    baseline = threading.active_count()
    peak = baseline
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, threading.active_count())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    storm = subprocess.Popen([sys.executable, "-c", _STORM, str(port), str(pki.ca), str(pki.rogue), str(pki.rogue_key),
                              "200", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    echoes = []
    started = time.monotonic()
    while storm.poll() is None and time.monotonic() - started < 40:
        good = _echo(port, pki)
        echoes.append((good.returncode, time.monotonic() - started, good.stdout + good.stderr))
    out, err = storm.communicate(timeout=60)
    sampling = False
    sampler.join()
    assert storm.returncode == 0, err
    assert echoes and all(rc == 0 for rc, _, _ in echoes), echoes
    # the sampler thread and each echo's association (its thread, its reader, the request thread) aside
    print(f"threads: baseline {baseline}, peak {peak}, echoes {len(echoes)}", file=sys.stderr)
    assert peak - baseline <= 1 + 3 * MAX_ASSOCIATIONS, (baseline, peak)
    bare_closed, longest = out.split()
    # closed within the handshake timeout of being accepted (they may first wait in the backlog), not 30 s
    assert int(bare_closed) > 0 and float(longest) < 2 * HANDSHAKE_TIMEOUT + 3, out

    deadline = time.monotonic() + 10
    while len([a for a in _audits(caplog) if a["outcome"] == "no_association"]) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    failed = [a for a in _audits(caplog) if a["outcome"] == "no_association"]
    reasons = {a["reason"] for a in failed}
    assert len(failed) == 200, reasons
    assert "tls: no client certificate" in reasons
    assert "tls: old protocol (TLS 1.2 or newer required)" in reasons
    assert "tls: no shared cipher" in reasons
    assert any(r.startswith("tls: untrusted client certificate: unknown CA") for r in reasons), reasons
    assert any(r.startswith(("tls: timed out", "tls: dropped")) for r in reasons), reasons
    assert all(a["tls"] and a["peer"].startswith("127.0.0.1:") for a in failed)
    warnings = [r for r in caplog.records if r.getMessage() == "TLS handshake failed"]
    assert len(warnings) == 200 and all(r.levelno == logging.WARNING for r in warnings)
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [(r.name, r.getMessage()) for r in loud[:5]]
    assert [a["client_cert"] for a in _audits(caplog) if a["outcome"] == "accepted"][-1] == "modality"


def test_a_silent_connection_is_closed_within_the_handshake_timeout_and_audited(node, pki, caplog):
    caplog.set_level(logging.INFO)
    for port in (node.port, node.tls_port):
        with socket.create_connection(("127.0.0.1", port)) as silent:
            silent.settimeout(HANDSHAKE_TIMEOUT + 10)
            start = time.monotonic()
            assert silent.recv(1) == b""
            assert time.monotonic() - start < HANDSHAKE_TIMEOUT + 2
    deadline = time.monotonic() + 5
    while len(_audits(caplog)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    plain, tls = _audits(caplog)[:2]
    assert (plain["outcome"], plain["tls"], plain["reason"]) == (
        "no_association", False, f"no association request within {HANDSHAKE_TIMEOUT:g} s")
    assert (tls["outcome"], tls["tls"], tls["reason"]) == ("no_association", True, f"tls: timed out ({HANDSHAKE_TIMEOUT:g} s)")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_wrong_called_ae_title_is_audited_with_both_titles_as_received(node, pki, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    refused = _echo(node.tls_port, pki, called="NOTME")
    assert refused.returncode != 0 and "Called AE Title Not Recognized" in refused.stdout + refused.stderr
    deadline = time.monotonic() + 5
    while not _audits(caplog) and time.monotonic() < deadline:
        time.sleep(0.05)
    record = _audits(caplog)[0]
    assert (record["outcome"], record["called_ae"], record["calling_ae"], record["client_cert"]) == (
        "rejected", "NOTME", "SECURE", "modality")
    assert record["reason"] == "called_ae_title: not this node's AE title"


def test_a_good_client_is_served_while_handshakes_are_pending(node, pki):
    """More silent TLS connections than handshakes may pend: the silent ones are dropped, not the client."""
    silent = [socket.create_connection(("127.0.0.1", node.tls_port)) for _ in range(40)]
    try:
        assert _echo(node.tls_port, pki).returncode == 0
    finally:
        for s in silent:
            s.close()
