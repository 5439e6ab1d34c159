"""Issue 9's acceptance, end to end: real DICOM that nobody on this project wrote.

dcmtk ``storescu`` (and ``ainode send``) → ``ainode serve`` → a real Orthanc. Sources are
pydicom-data's real head CT slice (``693_J2KR``, JPEG 2000 lossless, from a public hemorrhage
data set) and real chest CR (``RG1_J2KR``: MONOCHROME1, PixelSpacing 0\\0, no
ImagerPixelSpacing):

- a 24-slice head CT sent in JPEG 2000 (``storescu -xv``), and the same slices re-encoded
  to JPEG-LS by dcmtk's ``dcmcjpls`` (``storescu -xt``), each get SEG + SR;
- a Legacy Converted Enhanced CT (highdicom) of those slices, sent with ``storescu -R``
  (only the contexts the file needs: storescu's default list lacks that class), gets SEG + SR;
- a 30-slice 128×128 CT (the real slice's pixels, every 4th row and column) gets SEG + SR;
- the CR gets both CXR packs' results, sent with ``storescu -xv`` and with ``ainode send``;
- a CXR result is in Orthanc within 2 s of storescu releasing its association
  (the routes have ``complete_on_release = true``).

Every result is checked with dciodvfy; errors the source itself has are not counted.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from benchmarks.e2e import real_radiograph
from tests.dicom_validation import dciodvfy_errors
from tests.support import HEAD_CT_ROUTE, NodeProcess, OrthancServer, start_node, wait_for

pytestmark = pytest.mark.e2e

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
SR = "1.2.840.10008.5.1.4.1.1.88.34"
SC = "1.2.840.10008.5.1.4.1.1.7"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
LEGACY_CONVERTED_ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.2"
CARRIED = ("DeidentificationMethod", "Laterality(0020,0060)> - Missing")
"""dciodvfy errors of the 693_* source itself (Patient Identity Removed without a method; no Laterality)."""
LATENCY_LIMIT_S = 2.0
STORESCU = "/usr/bin/storescu" if Path("/usr/bin/storescu").exists() else "storescu"
"""dcmtk's storescu (pynetdicom installs an app of the same name in the venv's bin)."""

CXR_MATCH = '{ Modality = ["DX", "CR"], BodyPartExamined = "CHEST" }'
ROUTES = HEAD_CT_ROUTE + f"""
[[routes]]
name = "cxr-nodule"
model = "cxr-nodule"
destinations = ["pacs"]
match = {CXR_MATCH}
complete_on_release = true

[[routes]]
name = "cxr-pneumonia"
model = "cxr-pneumonia"
destinations = ["pacs"]
match = {CXR_MATCH}
complete_on_release = true
"""

ROUTES = ROUTES.replace('destinations = ["pacs"]\n', 'destinations = ["pacs"]\non_out_of_domain = "ignore"\n')
"""Real images are outside the phantom-trained models' domains (issue 30, see
tests/test_out_of_domain_e2e.py); here, where decoding and writing real pixels is checked, they are answered anyway."""
LATENCIES: dict[str, float] = {}
"""Seconds from the sender's release to the first result in Orthanc, by case (printed at the end)."""
BREAKDOWNS: dict[str, str] = {}
"""Where that time went, by case (printed at the end)."""


# -- services ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer):
    node = start_node(tmp_path_factory.mktemp("node"), pacs, ROUTES, quiet_seconds=2.0)
    yield node
    node.stop()
    if LATENCIES:
        print("\nrelease → first result in Orthanc:", ", ".join(f"{k} {v:.2f} s" for k, v in LATENCIES.items()))
        for case, lines in BREAKDOWNS.items():
            print(f"{case}:\n{lines}")


# -- real sources -----------------------------------------------------------------------------


def _real(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def _head_ct(out: Path, count: int, *, name: str = "693_J2KR.dcm", study_uid: str | None = None,
             matrix: int | None = None, decompress: bool = False) -> list[Path]:
    """``count`` slices made from one real head CT slice: one new series (in ``study_uid``),
    new SOP Instance UIDs, positions 5 mm apart, Body Part HEAD so the head-ct route matches.
    Pixel data stay as encoded in the source unless ``decompress`` or ``matrix`` (every
    n-th row and column, spacing scaled) is asked."""
    out.mkdir(parents=True, exist_ok=True)
    template = _real(name)
    study, series, frame = study_uid or generate_uid(), generate_uid(), generate_uid()
    paths = []
    for i in range(count):
        ds = _real(name)
        if decompress:
            ds.decompress()
        if matrix is not None:
            step = ds.Rows // matrix
            pixels = np.ascontiguousarray(ds.pixel_array[::step, ::step][:matrix, :matrix])
            ds.PixelData = pixels.tobytes()
            ds.Rows, ds.Columns = pixels.shape
            ds.PixelSpacing = [float(v) * template.Rows / matrix for v in template.PixelSpacing]
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-125.0, -125.0, 5.0 * i]
        ds.SliceThickness = 5
        ds.BodyPartExamined = "HEAD"
        path = out / f"ct{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _radiograph(out: Path, name: str) -> Path:
    """The real CR chest (as encoded) in a new study and series of its own."""
    path, _ = real_radiograph(out / name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and str(ds.file_meta.TransferSyntaxUID) == JPEG2000_LOSSLESS
    assert [float(v) for v in ds.PixelSpacing] == [0.0, 0.0] and "ImagerPixelSpacing" not in ds
    assert ds.BodyPartExamined == "CHEST"
    return path


# -- sending and finding results --------------------------------------------------------------


def _storescu(options: list[str], files: list[Path], port: int) -> str:
    """Send with dcmtk storescu as a modality would; its verbose log (the negotiation)."""
    result = subprocess.run([STORESCU, "-v", *options, "-aet", "MODALITY", "-aec", "AINODE", "127.0.0.1", str(port),
                             *map(str, files)], capture_output=True, text=True, timeout=180)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"storescu {options} failed ({result.returncode}):\n{log[-3000:]}"
    assert not [line for line in log.splitlines() if line.startswith("E:")], log[-3000:]
    return log


def _stored_syntaxes(node: NodeProcess, series_uid: str) -> set[str]:
    """Transfer syntaxes of the files the node keeps for a series (stored as they arrived)."""
    found = set()
    for path in (node.workdir / "data").rglob("*"):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # the job database and other non-DICOM files
            continue
        if str(ds.get("SeriesInstanceUID", "")) == series_uid and "file_meta" in dir(ds):
            found.add(str(ds.file_meta.TransferSyntaxUID))
    return found


def _finished_jobs(node: NodeProcess, series_uid: str, count: int, timeout: float = 150) -> list[dict]:
    def done():
        jobs = [j for j in node.jobs() if j["series_uid"] == series_uid]
        finished = [j for j in jobs if j["state"] in ("delivered", "failed")]
        return finished if len(finished) >= count else None

    jobs = wait_for(done, timeout, interval=0.2, what=f"{count} finished job(s) of series {series_uid}")
    details = [httpx.get(f"{node.http_url}/api/jobs/{j['id']}", timeout=10).json() for j in jobs]
    assert all(j["state"] == "delivered" for j in jobs), [(d["model"], d["state"], d["stage"], d["reason"])
                                                         for d in details]
    return details


def _references(ds: pydicom.Dataset, series_uid: str, sop_uids: set[str]) -> bool:
    """Whether a result object references the source series or one of its instances."""
    return any((e.keyword in ("SeriesInstanceUID", "ReferencedSeriesInstanceUID") and str(e.value) == series_uid)
               or (e.keyword == "ReferencedSOPInstanceUID" and str(e.value) in sop_uids) for e in ds.iterall())


def _results(pacs: OrthancServer, study_uid: str, series_uid: str, classes: set[str],
             sop_uids: set[str]) -> dict[str, list]:
    """The result objects in Orthanc that reference the source series or its instances (other
    series of the study have results too), once every class of ``classes`` is there."""
    def found():
        ours = {cls: kept for cls, objects in pacs.results_by_class(study_uid, series_uid).items()
                if (kept := [ds for ds in objects if _references(ds, series_uid, sop_uids)])}
        return ours if classes <= set(ours) else None

    return wait_for(found, 30, what=f"{sorted(classes)} in Orthanc")


def _instances_in_study(pacs: OrthancServer, study_uid: str) -> int:
    found = httpx.post(f"{pacs.url}/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}},
                       timeout=5)
    found.raise_for_status()
    return len(found.json())


def _assert_valid(objects: list[pydicom.Dataset], source: Path) -> None:
    """0 dciodvfy errors in the results but those the source itself has."""
    own = set(dciodvfy_errors(source))
    for ds in objects:
        errors = [e for e in dciodvfy_errors(ds) if e not in own and not any(c in e for c in CARRIED)]
        assert errors == [], (ds.Modality, str(ds.SOPClassUID), errors)


def _assert_head_ct_results(node: NodeProcess, pacs: OrthancServer, files: list[Path], frames: int,
                            matrix: tuple[int, int] = (512, 512)) -> dict[str, list]:
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    series_uid, study_uid = str(first.SeriesInstanceUID), str(first.StudyInstanceUID)
    sources = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    (job,) = _finished_jobs(node, series_uid, 1)
    assert job["model"] == "head-ct-hematoma"
    results = _results(pacs, study_uid, series_uid, {SEG, SR}, sources)
    (seg,) = results[SEG]
    assert int(seg.NumberOfFrames) == frames and (seg.Rows, seg.Columns) == matrix
    assert seg.StudyInstanceUID == study_uid and seg.PatientID == first.PatientID
    referenced = {str(item.ReferencedSOPInstanceUID) for frame in seg.PerFrameFunctionalGroupsSequence
                  for derivation in frame.DerivationImageSequence for item in derivation.SourceImageSequence}
    assert referenced <= sources and referenced, "the SEG references the images that were sent"
    _assert_valid([ds for objects in results.values() for ds in objects], files[0])
    return results


# -- head CT ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def head_ct_study() -> str:
    """The one study the head CT series of this module go into (as from one scanner)."""
    return generate_uid()


def test_a_jpeg2000_head_ct_from_storescu_gets_seg_and_sr(node, pacs, head_ct_study, tmp_path):
    files = _head_ct(tmp_path / "j2k", 24, study_uid=head_ct_study)
    assert str(pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID) == JPEG2000_LOSSLESS
    _storescu(["-xv"], files, node.dicom_port)
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    assert _stored_syntaxes(node, series_uid) == {JPEG2000_LOSSLESS}, "accepted and kept as JPEG 2000"
    _assert_head_ct_results(node, pacs, files, 24)


def test_the_same_slices_in_jpeg_ls_from_dcmcjpls_get_seg_and_sr(node, pacs, head_ct_study, tmp_path):
    # dcmtk 3.6.7 cannot decode JPEG 2000: pydicom decompresses, dcmcjpls encodes JPEG-LS lossless
    plain = _head_ct(tmp_path / "plain", 24, study_uid=head_ct_study, decompress=True)
    encoded = []
    for path in plain:
        target = tmp_path / "jls" / path.name
        target.parent.mkdir(exist_ok=True)
        subprocess.run(["dcmcjpls", str(path), str(target)], check=True, capture_output=True, timeout=60)
        assert str(pydicom.dcmread(target, stop_before_pixels=True).file_meta.TransferSyntaxUID) == JPEG_LS_LOSSLESS
        encoded.append(target)
    _storescu(["-xt"], encoded, node.dicom_port)
    series_uid = str(pydicom.dcmread(encoded[0], stop_before_pixels=True).SeriesInstanceUID)
    assert _stored_syntaxes(node, series_uid) == {JPEG_LS_LOSSLESS}, "accepted and kept as JPEG-LS"
    _assert_head_ct_results(node, pacs, encoded, 24)


@pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent the intended person name")
def test_a_legacy_converted_enhanced_ct_of_the_same_slices_gets_seg_and_sr(node, pacs, head_ct_study, tmp_path):
    slices = [pydicom.dcmread(p) for p in _head_ct(tmp_path / "slices", 24, study_uid=head_ct_study, decompress=True)]
    lce = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=slices, series_instance_uid=generate_uid(), series_number=70,
        sop_instance_uid=generate_uid(), instance_number=1,
    )
    if not lce.get("BodyPartExamined"):
        lce.BodyPartExamined = "HEAD"
    path = tmp_path / "lce.dcm"
    lce.save_as(path, enforce_file_format=True)
    assert str(lce.SOPClassUID) == LEGACY_CONVERTED_ENHANCED_CT and int(lce.NumberOfFrames) == 24
    log = _storescu(["-R"], [path], node.dicom_port)  # storescu's default list lacks this class
    assert "No valid Presentation Context" not in log, log[-2000:]
    results = _assert_head_ct_results(node, pacs, [path], 24)
    seg = results[SEG][0]
    frames = sorted(int(item.ReferencedFrameNumber) for frame in seg.PerFrameFunctionalGroupsSequence
                    for derivation in frame.DerivationImageSequence for item in derivation.SourceImageSequence)
    assert frames == list(range(1, 25)), "each SEG frame references its frame of the enhanced object"


def test_a_30_slice_128_matrix_ct_gets_seg_and_sr_on_its_own_matrix(node, pacs, head_ct_study, tmp_path):
    files = _head_ct(tmp_path / "small", 30, name="693_UNCR.dcm", study_uid=head_ct_study, matrix=128)
    assert pydicom.dcmread(files[0]).pixel_array.shape == (128, 128)
    _storescu([], files, node.dicom_port)
    _assert_head_ct_results(node, pacs, files, 30, matrix=(128, 128))


# -- chest radiograph -------------------------------------------------------------------------


def _assert_cxr_results(node: NodeProcess, pacs: OrthancServer, path: Path) -> None:
    source = pydicom.dcmread(path, stop_before_pixels=True)
    series_uid, study_uid = str(source.SeriesInstanceUID), str(source.StudyInstanceUID)
    jobs = _finished_jobs(node, series_uid, 2)
    assert sorted(j["model"] for j in jobs) == ["cxr-nodule", "cxr-pneumonia"]
    results = _results(pacs, study_uid, series_uid, {SR, SC}, {str(source.SOPInstanceUID)})
    assert {int(sr.SeriesNumber) for sr in results[SR]} == {9021, 9031}, "one report from each CXR pack"
    (sc,) = results[SC]
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert set(results) <= {SEG, SR, SC}
    for ds in (ds for objects in results.values() for ds in objects):
        assert ds.StudyInstanceUID == study_uid and ds.PatientID == source.PatientID
        assert all(float(v) > 0 for v in ds.get("PixelSpacing", [1, 1])), "no zero spacing is copied"
    _assert_valid([ds for objects in results.values() for ds in objects], path)


def _release_to_first_result(node: NodeProcess, pacs: OrthancServer, path: Path, case: str) -> float:
    """storescu -xv sends ``path``; seconds from its exit (it exits after the release) to the
    first result instance of that study in Orthanc, polled every 0.1 s."""
    study_uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    assert _instances_in_study(pacs, study_uid) == 0
    _storescu(["-xv"], [path], node.dicom_port)
    released = time.monotonic()
    while _instances_in_study(pacs, study_uid) == 0:
        if time.monotonic() - released > 120:
            raise TimeoutError(f"no result of {case} in Orthanc after 120 s")
        time.sleep(0.1)
    LATENCIES[case] = time.monotonic() - released
    series_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
    BREAKDOWNS[case] = _breakdown(_finished_jobs(node, series_uid, 2), released)
    return LATENCIES[case]


def _breakdown(jobs: list[dict], released: float) -> str:
    """Where the time of a CXR series went: each job's stage timings and its state changes,
    in seconds after the release (the node's job events carry wall-clock times)."""
    offset = time.time() - time.monotonic()
    lines = []
    for job in sorted(jobs, key=lambda j: j["model"]):
        stages = ", ".join(f"{k} {v:.2f}" for k, v in job["timings"].items())
        events = ", ".join(f"{e['state']} {e['at'] - offset - released:+.2f}" for e in job["events"])
        lines.append(f"  {job['model']}: stages [{stages}] events [{events}]")
    return "\n".join(lines)


def test_the_real_cr_from_storescu_gets_both_cxr_packs_results(node, pacs, tmp_path):
    path = _radiograph(tmp_path, "cr-storescu.dcm")
    _release_to_first_result(node, pacs, path, "first CR (storescu -xv)")
    series_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
    assert _stored_syntaxes(node, series_uid) == {JPEG2000_LOSSLESS}
    _assert_cxr_results(node, pacs, path)


def test_the_real_cr_from_ainode_send_gets_both_cxr_packs_results(node, pacs, tmp_path):
    path = _radiograph(tmp_path, "cr-send.dcm")
    ainode = Path(sys.executable).parent / "ainode"
    result = subprocess.run([str(ainode), "send", str(path), "--port", str(node.dicom_port), "--aet", "AINODE",
                             "--no-progress"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    series_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
    _assert_cxr_results(node, pacs, path)
    assert _stored_syntaxes(node, series_uid) == {JPEG2000_LOSSLESS}, "ainode send proposes the file's own syntax"


def test_a_cxr_result_is_in_orthanc_within_2_s_of_the_release(node, pacs, tmp_path):
    """On a running node (its workers warm: the CR tests above ran first when run in order)."""
    # warm: whatever ran before, one radiograph has been through both packs now
    warm = _radiograph(tmp_path, "warm.dcm")
    _storescu(["-xv"], [warm], node.dicom_port)
    _finished_jobs(node, str(pydicom.dcmread(warm, stop_before_pixels=True).SeriesInstanceUID), 2)

    path = _radiograph(tmp_path, "timed.dcm")
    seconds = _release_to_first_result(node, pacs, path, "warm CR (storescu -xv)")
    assert seconds <= LATENCY_LIMIT_S, f"first result {seconds:.2f} s after the release; where it went:\n{BREAKDOWNS['warm CR (storescu -xv)']}"
