"""``ainode send``: real files in many transfer syntaxes into a real node, each in its own syntax;
decompressed for a receiver that takes only uncompressed (dcmtk storescp); bad files reported
one by one, without a traceback, and a non-zero exit code; over DICOM TLS into a node that speaks
only TLS and asks for a client certificate."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from benchmarks.services import free_port, wait_for
from node.cli import main
from node.ingest import IngestServer
from node.metrics import Metrics
from node.dicom.send import dicom_files, send_paths
from node.store.spool import Spool
from node.store import JobStore
from node.dicom.tls import server_context
from tests.pki import Pki

_REAL = ["693_J2KR.dcm", "RG1_J2KI.dcm", "emri_small_RLE.dcm", "MR_small_bigendian.dcm", "JPEG-LL.dcm",
         "color3d_jpeg_baseline.dcm", "MR2_UNCI.dcm"]


@pytest.fixture
def ingest(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    spool = Spool(tmp_path / "spool")
    server = IngestServer("AINODE", "127.0.0.1", 0, store, spool, Metrics())
    server.start()
    yield server, store, spool
    server.stop()
    store.close()


@pytest.fixture(scope="module")
def jpeg_ls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CR chest (its own SOP Instance UID, unlike 693_J2KR and 693_UNCR) as JPEG-LS, by dcmtk."""
    out = tmp_path_factory.mktemp("send") / "cr_jls.dcm"
    subprocess.run(["dcmcjpls", get_testdata_file("RG1_UNCR.dcm"), str(out)], check=True, timeout=60)
    return out


def test_files_in_many_syntaxes_and_bad_files(ingest, jpeg_ls, tmp_path, capsys):
    server, store, spool = ingest
    folder = tmp_path / "in"
    folder.mkdir()
    real = [Path(get_testdata_file(name)) for name in _REAL] + [jpeg_ls]
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not an image")
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x00" + b"1.2")  # meta cut short
    (folder / "readme.txt").write_text("a folder's other files are skipped")
    code = main(["send", *map(str, real), str(not_dicom), str(broken), str(folder), "--port", str(server.port)])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"sent {len(real)} of {len(real) + 2}" in out
    assert f"failed: {not_dicom}: not a DICOM file" in err
    assert f"failed: {broken}: unreadable" in err
    assert "Traceback" not in err
    for path in real:
        sent = pydicom.dcmread(path)
        stored = pydicom.dcmread(spool.instance_path(sent.SOPInstanceUID))
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID, path.name
        assert stored.PixelData == sent.PixelData, f"{path.name}: sent in its own syntax, not transcoded"


def test_everything_sent_exits_zero_with_a_progress_bar(ingest, capsys):
    server, _, _ = ingest
    files = [Path(get_testdata_file("693_J2KR.dcm")), Path(get_testdata_file("MR_small_bigendian.dcm"))]
    report = send_paths(files, "127.0.0.1", server.port, "AINODE", progress=True)
    assert (report.sent, report.failed) == (2, [])
    assert "2/2" in capsys.readouterr().err


def test_a_receiver_taking_only_uncompressed_gets_decompressed_pixels(tmp_path):
    received = tmp_path / "storescp"
    received.mkdir()
    port = free_port()
    scp = subprocess.Popen(["storescp", "-aet", "STORESCP", "-od", str(received), str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(["echoscu", "-aec", "STORESCP", "127.0.0.1", str(port)],
                                        capture_output=True).returncode == 0, 20, what="storescp")
        source = Path(get_testdata_file("693_J2KR.dcm"))
        report = send_paths([source], "127.0.0.1", port, "STORESCP", progress=False)
        assert (report.sent, report.failed) == (1, [])
        deadline = time.monotonic() + 10
        while not list(received.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        [stored_path] = list(received.iterdir())
        stored = pydicom.dcmread(stored_path)
        assert stored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert np.array_equal(stored.pixel_array, pydicom.dcmread(source).pixel_array)  # lossless: exact
    finally:
        scp.terminate()
        scp.wait(timeout=10)


def test_no_receiver_fails_every_file_with_one_reason(tmp_path):
    files = [Path(get_testdata_file("693_J2KR.dcm"))]
    report = send_paths(files, "127.0.0.1", free_port(), "AINODE", progress=False, timeout=5)
    assert report.sent == 0 and len(report.failed) == 1
    assert report.failed[0][1].startswith("association")


def test_dicom_files_takes_named_files_and_dicom_files_of_folders(tmp_path):
    source = Path(get_testdata_file("693_J2KR.dcm"))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.dcm").write_bytes(source.read_bytes())
    (tmp_path / "a" / "y.txt").write_text("no")
    named = tmp_path / "named.txt"
    named.write_text("no")
    assert dicom_files([tmp_path / "a", named]) == [tmp_path / "a" / "x.dcm", named]
    assert JPEG2000Lossless == pydicom.dcmread(tmp_path / "a" / "x.dcm").file_meta.TransferSyntaxUID


def test_send_over_tls_to_a_tls_only_node(tmp_path, capsys):
    pki = Pki(tmp_path / "pki")
    store = JobStore(tmp_path / "db.sqlite")
    spool = Spool(tmp_path / "spool")
    server = IngestServer("AINODE", "127.0.0.1", 0, store, spool, Metrics(), network_timeout=5.0,
                          tls_context=server_context(pki.server, pki.server_key, pki.ca, require_client_cert=True))
    server.start()
    try:
        assert server.tls_port == server.port, "the only port speaks TLS"
        source = Path(get_testdata_file("693_J2KR.dcm"))
        base = ["send", str(source), "--port", str(server.port), "--no-progress"]
        tls = ["--tls", "--ca", str(pki.ca), "--cert", str(pki.client), "--key", str(pki.client_key)]
        assert main(base + tls) == 0, capsys.readouterr()
        assert "sent 1 of 1" in capsys.readouterr().out
        sent = pydicom.dcmread(source)
        assert pydicom.dcmread(spool.instance_path(sent.SOPInstanceUID)).PixelData == sent.PixelData
        for refused in (base, base + ["--tls", "--ca", str(pki.ca)],  # plain TCP; TLS without a client certificate
                        base + ["--tls", "--cert", str(pki.client), "--key", str(pki.client_key)]):  # system CAs
            assert main(refused) == 1, refused
            assert "failed:" in capsys.readouterr().err
        assert main(base + ["--ca", str(pki.ca)]) == 2
        assert "go with --tls" in capsys.readouterr().err
        assert main(base + ["--tls", "--cert", str(tmp_path / "missing.crt")]) == 2
        assert "TLS files cannot be used" in capsys.readouterr().err
    finally:
        server.stop()
        store.close()
