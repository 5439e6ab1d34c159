"""The demo PACS (orthanc/orthanc.json, what `make run` starts) lets in only this machine.

Orthanc 1.10 (Debian's) has no bind-address setting, so it listens on every interface;
the shipped configuration closes it instead: HTTP answers loopback clients only
(``RemoteAccessAllowed: false``) and C-STORE is taken only from the listed AE titles,
each from 127.0.0.1 (``DicomAlwaysAllowStore: false`` + ``DicomCheckModalityHost``).
These tests start a real Orthanc with the shipped file (only ports and storage swapped)
and try it with dcmtk's storescu and an HTTP client, from loopback and from the
machine's other address.
"""
from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import OrthancServer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]


def _shipped_orthanc(workdir: Path) -> OrthancServer:
    """A real Orthanc running orthanc/orthanc.json with this test's ports and storage."""
    orthanc = OrthancServer(workdir)
    config = json.loads((REPO / "orthanc" / "orthanc.json").read_text())
    config.update({
        "StorageDirectory": str(workdir / "db"), "IndexDirectory": str(workdir / "db"),
        "HttpPort": orthanc.http_port, "DicomPort": orthanc.dicom_port,
        "LuaScripts": [str(REPO / "orthanc" / lua) for lua in config.get("LuaScripts", [])],
    })
    orthanc.config_path.write_text(json.dumps(config))
    return orthanc.start()


def _storescu(host: str, port: int, calling_ae: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["storescu", "-aet", calling_ae, "-aec", "ORTHANC", host, str(port), *map(str, files)],
                          capture_output=True, text=True, timeout=60)


def _other_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def shipped_orthanc(tmp_path_factory: pytest.TempPathFactory):
    orthanc = _shipped_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield orthanc
    finally:
        orthanc.stop()


@pytest.fixture(scope="module")
def one_slice(small_head_ct) -> list[Path]:
    return small_head_ct[1][:1]


def test_listed_modality_on_loopback_stores_and_a_stranger_does_not(shipped_orthanc: OrthancServer,
                                                                    one_slice: list[Path]):
    stranger = _storescu("127.0.0.1", shipped_orthanc.dicom_port, "STRANGER", one_slice)
    assert stranger.returncode != 0 or "Success" not in stranger.stderr + stranger.stdout
    assert shipped_orthanc.get("/instances") == []

    listed = _storescu("127.0.0.1", shipped_orthanc.dicom_port, "STORESCU", one_slice)
    assert listed.returncode == 0, listed.stderr
    assert len(shipped_orthanc.get("/instances")) == 1


def test_other_interfaces_get_neither_http_nor_store(shipped_orthanc: OrthancServer, one_slice: list[Path]):
    address = _other_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    before = len(shipped_orthanc.get("/instances"))
    response = httpx.get(f"http://{address}:{shipped_orthanc.http_port}/system", timeout=10)
    assert response.status_code in (401, 403), response.status_code
    listed_title_wrong_host = _storescu(address, shipped_orthanc.dicom_port, "STORESCU", one_slice)
    assert listed_title_wrong_host.returncode != 0 or "Success" not in listed_title_wrong_host.stderr
    assert len(shipped_orthanc.get("/instances")) == before
