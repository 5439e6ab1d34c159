"""End to end for the brain MR pack: dcmtk storescu → ainode serve → a real Orthanc.

A T1-like post-contrast phantom with a tumour goes in; the study in Orthanc must then
hold the multi-segment SEG, the TID 1500 SR with volumes and the tumour's Encapsulated
STL, each passing ``dciodvfy -new``; the SR's tumour volume must be within 15 % of the
phantom's truth and every STL vertex must lie inside the SEG's tumour segment.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.brain_mr.train import TEST_SEED_BASE
from models.phantoms.brain_mr import generate_brain_mr, write_phantom
from node.results.stl import ENCAPSULATED_STL_STORAGE, decode_binary_stl
from tests.dicom_validation import dciodvfy_errors
from tests.sr_content import content_items
from tests.support import OrthancServer, start_node, storescu, wait_for

pytestmark = pytest.mark.e2e

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SEED = TEST_SEED_BASE + 900  # held out: never a training seed
PATIENT_NAME = "鈴木^一郎=スズキ^イチロウ"


ROUTES = """
[[routes]]
name = "brain-mr-t1"
model = "brain-mr"
destinations = ["pacs"]
match = { Modality = "MR", BodyPartExamined = "BRAIN", SeriesDescription = "re:^T1" }
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer):
    node = start_node(tmp_path_factory.mktemp("node"), pacs, ROUTES)
    yield node
    node.stop()


def _results(orthanc: OrthancServer, study_uid: str, source_series_uid: str) -> dict[str, list[pydicom.Dataset]]:
    return orthanc.results_by_class(study_uid, source_series_uid)


def _tumor_volume_ml(sr: pydicom.Dataset) -> float:
    for group in content_items(sr):
        children = list(group.get("ContentSequence", []))
        ids = [c.TextValue for c in children if c.ValueType == "TEXT"
               and c.ConceptNameCodeSequence[0].CodeMeaning == "Tracking Identifier"]
        if ids == ["Tumor"]:
            nums = [c for c in children if c.ValueType == "NUM"]
            assert nums[0].MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "mL"
            return float(nums[0].MeasuredValueSequence[0].NumericValue)
    raise AssertionError("no Tumor measurement group")


def _segment_mask(seg: pydicom.Dataset, label: str) -> tuple[np.ndarray, np.ndarray]:
    """The segment's frames as a (slices, rows, cols) mask and its voxel → patient affine."""
    number = next(int(s.SegmentNumber) for s in seg.SegmentSequence if s.SegmentLabel == label)
    shared = seg.SharedFunctionalGroupsSequence[0]
    iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    row_mm, col_mm = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    normal = np.cross(iop[:3], iop[3:])
    frames = seg.PerFrameFunctionalGroupsSequence
    positions = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in frames], float)
    heights = np.unique(np.round(positions @ normal, 3))
    pixels = seg.pixel_array.reshape(len(frames), seg.Rows, seg.Columns)
    mask = np.zeros((len(heights), seg.Rows, seg.Columns), bool)
    for f, frame in enumerate(frames):
        if int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == number:
            mask[np.searchsorted(heights, round(float(positions[f] @ normal), 3))] |= pixels[f] > 0
    origin = positions[np.argmin(positions @ normal)]
    affine = np.eye(4)
    affine[:3, 0] = iop[:3] * col_mm
    affine[:3, 1] = iop[3:] * row_mm
    affine[:3, 2] = normal * (heights[1] - heights[0])
    affine[:3, 3] = origin
    return mask, affine


def test_tumor_series_yields_seg_sr_and_stl(node, pacs, tmp_path: Path):
    phantom = generate_brain_mr(seed=SEED, tumor=True, contrasts=("T1", "T2"),
                                patient_name=PATIENT_NAME, patient_id="PID-BRAIN-1")
    files = write_phantom(phantom, tmp_path / "in")
    t1_files = sorted(p for p in files if p.parent.name == "T1")
    source = phantom.series["T1"][0]
    storescu(t1_files, node.dicom_port)

    def done():
        jobs = [j for j in node.jobs() if j["series_uid"] == source.SeriesInstanceUID]
        return jobs[0] if jobs and jobs[0]["state"] in ("delivered", "failed") else None

    job = wait_for(done, 180, what="brain-mr job")
    assert job["state"] == "delivered", job

    results = _results(pacs, source.StudyInstanceUID, source.SeriesInstanceUID)
    assert set(results) == {SEG, COMPREHENSIVE_3D_SR, ENCAPSULATED_STL_STORAGE}, "Orthanc stored all three"
    (seg,), (sr,), (stl,) = results[SEG], results[COMPREHENSIVE_3D_SR], results[ENCAPSULATED_STL_STORAGE]
    for ds in (seg, sr, stl):
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], f"{ds.SOPClassUID} fails dciodvfy"
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientName == PATIENT_NAME
    assert seg.FrameOfReferenceUID == stl.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert {s.SegmentLabel for s in seg.SegmentSequence} >= {"Cerebrum", "Cerebellum", "Brainstem", "Ventricles", "Tumor"}

    truth_ml = phantom.volumes_ml()["tumor"]
    assert _tumor_volume_ml(sr) == pytest.approx(truth_ml, rel=0.15)

    mask, affine = _segment_mask(seg, "Tumor")
    stl_bytes = bytes(stl.EncapsulatedDocument)[: int(stl.EncapsulatedDocumentLength)]
    vertices = decode_binary_stl(stl_bytes).reshape(-1, 3).astype(float)
    assert len(vertices) > 0
    index = (np.c_[vertices, np.ones(len(vertices))] @ np.linalg.inv(affine).T)[:, :3]
    j, i, k = np.rint(index).astype(int).T
    assert ((k >= 0) & (k < mask.shape[0])).all()
    assert mask[k, i, j].all(), "every STL vertex lies inside the SEG's tumour region"
