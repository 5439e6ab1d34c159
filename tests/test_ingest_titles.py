"""AE titles at A-ASSOCIATE-RQ: what dcmtk, pynetdicom and raw sockets are answered.

A calling AE title that is not a proper one, or a called AE title that is not the
node's, gets A-ASSOCIATE-RJ (rejected-permanent, service-user, reason 3 or 7), never
an A-ABORT and never an association; the titles recorded with instances are checked ones.
"""
from __future__ import annotations

import socket
import sqlite3
import struct
import subprocess
from pathlib import Path
from typing import Iterator

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from node.ingest import IngestServer
from node.ingest.titles import TitleScreen, ae_title_problem
from node.metrics import Metrics
from node.store.spool import Spool
from node.store import JobStore

_A_ASSOCIATE_AC, _A_ASSOCIATE_RJ = 0x02, 0x03
_PERMANENT, _SERVICE_USER, _CALLING_NOT_RECOGNISED, _CALLED_NOT_RECOGNISED = 0x01, 0x01, 0x03, 0x07


class _Node:
    def __init__(self, root: Path) -> None:
        self.db = root / "db.sqlite"
        self.store = JobStore(self.db)
        self.spool = Spool(root / "spool")
        self.metrics = Metrics()
        self.server = IngestServer("AINODE", "127.0.0.1", 0, self.store, self.spool, self.metrics, network_timeout=5.0)

    @property
    def port(self) -> int:
        return self.server.port

    def rejected(self, reason: str) -> float:
        return self.metrics.associations_rejected.labels(reason)._value.get()

    def calling_aes(self) -> list[str]:
        db = sqlite3.connect(self.db)
        try:
            return [row[0] for row in db.execute("SELECT calling_ae FROM instances ORDER BY calling_ae")]
        finally:
            db.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[_Node]:
    n = _Node(tmp_path)
    n.server.start()
    yield n
    n.server.stop()
    n.store.close()


def _echoscu(port: int, calling: str, called: str = "AINODE") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["echoscu", "-aet", calling, "-aec", called, "-to", "10", "-ta", "10", "-td", "10",
                           "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60)


def _association_rq(called: bytes, calling: bytes) -> bytes:
    """An A-ASSOCIATE-RQ proposing Verification, with the raw 16-byte title fields given."""
    def item(kind: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", kind, 0, len(payload)) + payload

    assert len(called) == len(calling) == 16
    context = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, Verification.encode()) + item(0x40, b"1.2.840.10008.1.2"))
    user = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.826.0.1.3680043.8.498.1"))
    application = item(0x10, b"1.2.840.10008.3.1.1.1")
    body = struct.pack(">HH", 1, 0) + called + calling + bytes(32) + application + context + user
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _raw_reply(port: int, called: bytes, calling: bytes) -> bytes:
    """The first PDU the node answers a raw A-ASSOCIATE-RQ with."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_association_rq(called, calling))
        head = b""
        while len(head) < 6:
            chunk = sock.recv(6 - len(head))
            assert chunk, "the node closed the connection without an answer"
            head += chunk
        (length,) = struct.unpack(">I", head[2:6])
        body = b""
        while len(body) < length:
            chunk = sock.recv(length - len(body))
            assert chunk
            body += chunk
        return head + body


# dcmtk


@pytest.mark.parametrize("calling", ["../../etc/passwd", "A\\B", "CT\tROOM", "<script>", "AE'--"])
def test_dcmtk_with_an_improper_calling_ae_title_is_rejected_with_the_reason(node, calling) -> None:
    result = _echoscu(node.port, calling)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Association Rejected" in out and "Rejected Permanent" in out and "Source: Service User" in out
    assert "Reason: Calling AE Title Not Recognized" in out
    assert node.rejected("calling_ae_title") == 1


@pytest.mark.parametrize("called", ["ainode", "OTHER", "AINODE2"])
def test_dcmtk_calling_another_ae_title_is_rejected_with_the_reason(node, called) -> None:
    result = _echoscu(node.port, "MODALITY", called)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Association Rejected" in out and "Reason: Called AE Title Not Recognized" in out
    assert node.rejected("called_ae_title") == 1


def test_dcmtk_with_proper_titles_gets_in(node) -> None:
    for calling in ("MODALITY", "CT-1 ROOM_2", "GE.PACS@SITE#3", "a+b:c"):
        result = _echoscu(node.port, calling)
        assert result.returncode == 0, result.stdout + result.stderr
    assert node.rejected("calling_ae_title") == node.rejected("called_ae_title") == 0


# pynetdicom


def _pynetdicom_reply(port: int, calling: str, called: str):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    received: list[object] = []
    assoc = ae.associate("127.0.0.1", port, ae_title=called,
                         evt_handlers=[(evt.EVT_ACSE_RECV, lambda e: received.append(e.primitive))])
    return assoc, received


@pytest.mark.parametrize(("calling", "called", "reason", "diagnostic"), [
    ("../../etc/passwd", "AINODE", "calling_ae_title", _CALLING_NOT_RECOGNISED),
    ("MODALITY", "NOTME", "called_ae_title", _CALLED_NOT_RECOGNISED),
    ("MODALITY", "ainode", "called_ae_title", _CALLED_NOT_RECOGNISED),
])
def test_pynetdicom_is_rejected_permanently_by_the_service_user_with_the_reason(
    node, calling, called, reason, diagnostic,
) -> None:
    assoc, received = _pynetdicom_reply(node.port, calling, called)
    assert assoc.is_rejected and not assoc.is_aborted and not assoc.is_established
    (reply,) = received
    answer = (reply.result, reply.result_source, reply.diagnostic)  # type: ignore[attr-defined]
    assert answer == (_PERMANENT, _SERVICE_USER, diagnostic)
    assert node.rejected(reason) == 1


def test_padding_is_not_part_of_a_title(node) -> None:
    assoc, _ = _pynetdicom_reply(node.port, "  MODALITY", "AINODE")
    assert assoc.is_established
    assoc.release()


# raw titles pynetdicom itself cannot decode: rejected, not aborted


@pytest.mark.parametrize(("called", "calling", "diagnostic"), [
    (b"AINODE", b"MOD\\ALITY", _CALLING_NOT_RECOGNISED),
    (b"AINODE", b"MOD\x00ALITY", _CALLING_NOT_RECOGNISED),
    (b"AINODE", b"MODALITY\n", _CALLING_NOT_RECOGNISED),
    (b"AINODE", b"\x1b[31mRED", _CALLING_NOT_RECOGNISED),
    (b"AINODE", b"MOD\xc3\xa9", _CALLING_NOT_RECOGNISED),
    (b"AINODE", b" " * 16, _CALLING_NOT_RECOGNISED),
    (b"AINODE", b"\x00" * 16, _CALLING_NOT_RECOGNISED),
    (b" " * 16, b"MODALITY", _CALLED_NOT_RECOGNISED),
    (b"AI\x00NODE", b"MODALITY", _CALLED_NOT_RECOGNISED),
    (b"AINODE\\", b"MODALITY\\", _CALLED_NOT_RECOGNISED),
], ids=["backslash", "nul", "newline", "escape", "non-ascii", "spaces", "nuls", "called-spaces", "called-nul",
        "both"])
def test_raw_titles_pynetdicom_cannot_decode_get_a_rejection_not_an_abort(node, called, calling, diagnostic) -> None:
    reply = _raw_reply(node.port, called.ljust(16), calling.ljust(16))
    assert reply[0] == _A_ASSOCIATE_RJ, f"answered PDU type 0x{reply[0]:02X}"
    assert tuple(reply[7:10]) == (_PERMANENT, _SERVICE_USER, diagnostic)
    assert _echoscu(node.port, "MODALITY").returncode == 0, "the node goes on"


def test_a_proper_raw_request_is_accepted(node) -> None:
    assert _raw_reply(node.port, b"AINODE".ljust(16), b"   MODALITY".ljust(16))[0] == _A_ASSOCIATE_AC


# what is recorded


def test_instances_are_recorded_under_checked_calling_titles_only(node, small_head_ct) -> None:
    _, files = small_head_ct
    result = subprocess.run(["storescu", "-aet", "../../etc/passwd", "-aec", "AINODE", "127.0.0.1", str(node.port),
                             str(files[0])], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Calling AE Title Not Recognized" in result.stdout + result.stderr
    result = subprocess.run(["storescu", "-aet", "CT-ROOM 1", "-aec", "AINODE", "127.0.0.1", str(node.port),
                             str(files[1])], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not node.store.has_instance(pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID)
    assert node.calling_aes() == ["CT-ROOM 1"]
    assert all(ae_title_problem(title) is None for title in node.calling_aes())


def test_rejections_are_logged_with_the_title_escaped(node, caplog) -> None:
    import logging

    from node.logs import _JsonFormatter

    with caplog.at_level(logging.WARNING, logger="ainode.ingest"):
        _raw_reply(node.port, b"AINODE".ljust(16), b"EVIL\x1b[2J\n".ljust(16))
    (line,) = [_JsonFormatter().format(r) for r in caplog.records if "AE title" in r.getMessage()]
    assert "calling_ae_title" in line and "\\\\x1b" in line and "\x1b" not in line


# the rules themselves


@pytest.mark.parametrize(("title", "problem"), [
    ("MODALITY", None), ("  CT 1  ", None), ("A" * 16, None), ("A" * 17, "longer than 16 characters"),
    ("", "empty or all spaces"), ("    ", "empty or all spaces"), ("A\\B", "backslash"),
    ("../../etc/passwd", "character '/' not allowed"), ("A*", "character '*' not allowed"),
    (b"MODALITY        ", None), (b"MOD\x00ALITY       ", "control character 0x00"),
    (b"MOD\xe9          ", "non-ASCII byte 0xE9"), (b"\x7fMOD           ", "control character 0x7F"),
])
def test_ae_title_problems(title, problem) -> None:
    assert ae_title_problem(title) == problem


def test_only_the_calling_title_is_held_to_the_narrower_characters() -> None:
    screen = TitleScreen("AI/NODE")
    assert screen.judge(b"AI/NODE".ljust(16), b"MODALITY".ljust(16)) is None
    rejection = screen.judge("AI/NODE", "MOD/ALITY")
    assert rejection is not None and (rejection.reason, rejection.diagnostic) == ("calling_ae_title", 0x03)
    rejection = screen.judge("ai/node", "MODALITY")
    assert rejection is not None and (rejection.reason, rejection.diagnostic) == ("called_ae_title", 0x07)
