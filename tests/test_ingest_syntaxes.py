"""Real hospital DICOM in: every transfer syntax the node can decode is accepted as sent (dcmtk
storescu as the modality, pydicom's real test files), the rest is refused at negotiation and
counted; a Legacy Converted Enhanced CT built with highdicom from real slices is stored."""
from __future__ import annotations

import copy
import io
import subprocess
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filewriter import write_file_meta_info
from pydicom.pixels import get_decoder
from pydicom.uid import (
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MPEG2MPML,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from node.ingest import ACCEPTED_TRANSFER_SYNTAXES
from node.ingest.syntaxes import decodable_transfer_syntaxes
from node.http.stow import dicom_parts

_LCE_CT = "1.2.840.10008.5.1.4.1.1.2.2"


def _storescu(port: int, files: list[Path], *options: str) -> subprocess.CompletedProcess[str]:
    cmd = ["storescu", *options, "-aet", "MODALITY", "-aec", "AINODE", "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_the_accepted_syntaxes_are_what_pydicom_can_decode_here():
    accepted = decodable_transfer_syntaxes()
    assert accepted == ACCEPTED_TRANSFER_SYNTAXES
    for uid in accepted[4:]:  # after the native ones: each compressed syntax has a working decoder
        assert get_decoder(uid).is_available, uid.name
    # with pylibjpeg, -libjpeg and -openjpeg installed (pyproject dependencies)
    for uid in (JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless,
                HTJ2KLossless, RLELossless):
        assert uid in accepted, uid.name
    assert MPEG2MPML not in accepted  # no decoder exists for video


@pytest.fixture(scope="module")
def jpeg_ls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real images compressed by dcmtk: JPEG-LS lossless (head CT) and near-lossless (CR chest)."""
    out = tmp_path_factory.mktemp("jls")
    source = get_testdata_file("693_UNCR.dcm")
    files = {"lossless": out / "jls_lossless.dcm", "near": out / "jls_near.dcm"}
    subprocess.run(["dcmcjpls", "+el", source, str(files["lossless"])], check=True, timeout=60)
    unsigned = get_testdata_file("RG1_UNCR.dcm")  # real CR chest: near-lossless needs unsigned pixels
    subprocess.run(["dcmcjpls", "+en", unsigned, str(files["near"])], check=True, timeout=60)
    return files


@pytest.mark.parametrize("name, option", [
    ("693_J2KR.dcm", "-xv"),                     # JPEG 2000 lossless, real head CT
    ("RG1_J2KI.dcm", "-xw"),                     # JPEG 2000 lossy, real CR chest
    ("JPEG-LL.dcm", "-xs"),                      # JPEG lossless SV1
    ("color3d_jpeg_baseline.dcm", "-xy"),        # JPEG baseline, multi-frame colour
    ("emri_small_jpeg_ls_lossless.dcm", "-xt"),  # JPEG-LS lossless, multi-frame MR
    ("emri_small_RLE.dcm", "-xr"),               # RLE, multi-frame MR
    ("MR_small_bigendian.dcm", "-xb"),           # Explicit VR Big Endian
    ("jls:lossless", "-xt"),                     # made here with dcmcjpls
    ("jls:near", "-xu"),
])
def test_storescu_sends_each_syntax_and_the_node_stores_it_as_received(ingest, jpeg_ls_files, name, option):
    server, store, spool, metrics = ingest
    path = jpeg_ls_files[name[4:]] if name.startswith("jls:") else Path(get_testdata_file(name))
    sent = pydicom.dcmread(path)
    result = _storescu(server.port, [path], option)
    assert result.returncode == 0, result.stderr[-1500:]
    stored = spool.instance_path(sent.SOPInstanceUID)
    assert store.has_instance(sent.SOPInstanceUID)
    stored_ds = pydicom.dcmread(stored)
    # storescu re-encodes the header (group lengths...), not the pixel data: the node keeps both as received
    assert stored_ds.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    assert stored_ds.PixelData == sent.PixelData, "no transcoding"
    assert np.array_equal(stored_ds.pixel_array, sent.pixel_array), "and the node can decode it"
    assert metrics.instances_received.labels("stored")._value.get() == 1


def test_a_syntax_no_decoder_reads_is_refused_at_negotiation_and_counted(ingest, tmp_path):
    server, store, spool, metrics = ingest
    mpeg = tmp_path / "mpeg2.dcm"  # an encapsulated real slice whose meta claims MPEG-2 video
    ds = pydicom.dcmread(get_testdata_file("693_J2KR.dcm"))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.save_as(mpeg, enforce_file_format=True)
    result = _storescu(server.port, [mpeg], "-xm", "-R")
    assert result.returncode != 0 and "No Acceptable Presentation Contexts" in result.stderr
    assert metrics.contexts_rejected.labels("transfer_syntax")._value.get() == 1
    assert not store.has_instance(ds.SOPInstanceUID) and not spool.instance_path(ds.SOPInstanceUID).exists()
    # a pynetdicom sender proposing it beside JPEG 2000: that context accepted, the other refused
    ae = AE(ae_title="SCU")
    ae.add_requested_context(CTImageStorage, [MPEG2MPML])
    ae.add_requested_context(CTImageStorage, [JPEG2000Lossless])
    assoc = ae.associate("127.0.0.1", server.port, ae_title="AINODE")
    assert assoc.is_established
    assert [cx.transfer_syntax[0] for cx in assoc.accepted_contexts] == [JPEG2000Lossless]
    assoc.release()
    assert metrics.contexts_rejected.labels("transfer_syntax")._value.get() == 2


def test_a_stow_part_in_a_compressed_syntax_is_accepted_and_one_without_decoder_refused(ingest):
    server, store, spool, metrics = ingest
    j2k = Path(get_testdata_file("693_J2KR.dcm")).read_bytes()
    receipt = server.acceptor.accept_part10(j2k, "STOW-RS 127.0.0.1")
    assert receipt.accepted and receipt.status == 0
    stored = spool.instance_path(receipt.header.sop_instance_uid)
    assert stored.read_bytes()[-1000:] == j2k[-1000:]
    mpeg = _with_meta_syntax(Path(get_testdata_file("RG1_J2KR.dcm")).read_bytes(), MPEG2MPML)
    refused = server.acceptor.accept_part10(mpeg, "STOW-RS 127.0.0.1")
    assert (refused.status, refused.reason) == (0xC000, "unsupported_syntax")
    assert metrics.instances_rejected.labels("unsupported_syntax")._value.get() == 1
    assert list(dicom_parts("multipart/related; type=\"application/dicom\"; boundary=b",
                            b"--b\r\nContent-Type: application/dicom\r\n\r\n" + j2k + b"\r\n--b--")) == [j2k]


def test_a_truncated_compressed_image_is_refused_and_leaves_nothing(ingest):
    server, store, spool, metrics = ingest
    j2k = Path(get_testdata_file("693_J2KR.dcm")).read_bytes()
    receipt = server.acceptor.accept_part10(j2k[: len(j2k) - 5000], "STOW-RS 127.0.0.1")
    assert (receipt.status, receipt.reason) == (0xC000, "unreadable")
    assert list(spool.instances.glob("*.dcm")) == []


def _with_meta_syntax(part10: bytes, syntax: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(part10))
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, ds.file_meta, enforce_standard=True)
    return out.getvalue() + part10[_dataset_offset(part10):]


def _dataset_offset(part10: bytes) -> int:
    fp = io.BytesIO(part10)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    return fp.tell()


@pytest.fixture(scope="module")
def legacy_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Legacy Converted Enhanced CT made by highdicom from copies of a real head CT slice."""
    source = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    series, frame = generate_uid(), generate_uid()
    slices = []
    for i in range(3):
        ds = copy.deepcopy(source)
        ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), series, frame
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 5.0 * i]
        ds.InstanceNumber = i + 1
        slices.append(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the real slice's single-component patient name
        lce = hd.legacy.LegacyConvertedEnhancedCTImage(slices, series_instance_uid=generate_uid(), series_number=99,
                                                       sop_instance_uid=generate_uid(), instance_number=1)
    path = tmp_path_factory.mktemp("lce") / "lce.dcm"
    lce.save_as(path)
    return path


def test_a_legacy_converted_enhanced_ct_sent_by_storescu_is_stored(ingest, legacy_ct):
    """dcmtk's storescu proposes a fixed list of 64 storage classes unless told to propose only
    the classes of its files (-R); the LCE CT class is not in that list, so storescu itself
    answered "0006:0208 No valid Presentation Context ID" without ever proposing it. The node
    accepts the class: with -R it is proposed, accepted and stored."""
    server, store, spool, metrics = ingest
    default = _storescu(server.port, [legacy_ct], "-d")
    assert "LegacyConvertedEnhancedCTImageStorage" not in default.stdout + default.stderr, \
        "storescu's default proposal now has the class: the note above is out of date"
    result = _storescu(server.port, [legacy_ct], "-R")
    assert result.returncode == 0, result.stderr[-1500:]
    ds = pydicom.dcmread(legacy_ct)
    stored = pydicom.dcmread(spool.instance_path(ds.SOPInstanceUID))
    assert stored.SOPClassUID == _LCE_CT and int(stored.NumberOfFrames) == 3
    assert np.array_equal(stored.pixel_array, ds.pixel_array)


def test_a_context_offering_lossy_and_lossless_gets_lossless(ingest):
    """pynetdicom gives a context the acceptor's first syntax it offers: the node's list prefers lossless."""
    server, _, _, _ = ingest
    from pydicom.uid import JPEG2000, JPEGLSNearLossless

    ae = AE(ae_title="SCU")
    ae.add_requested_context(CTImageStorage, [JPEG2000, JPEGLSNearLossless, JPEGLSLossless])
    assoc = ae.associate("127.0.0.1", server.port, ae_title="AINODE")
    assert assoc.is_established
    assert [cx.transfer_syntax[0] for cx in assoc.accepted_contexts] == [JPEGLSLossless]
    assoc.release()
