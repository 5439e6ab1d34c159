"""Brain MR results: surface mesh, Encapsulated STL, multi-segment SEG, SR volumes, label loaders."""
from __future__ import annotations

import copy
import shutil
from collections import Counter

import numpy as np
import pytest

from models.brain_mr.classes import CLASS_CODES, CLASS_NAMES, TUMOR
from models.brain_mr.data import load_case
from models.brain_mr.findings import BrainMRFindings
from models.brain_mr.mesh import marching_tetrahedra, mesh_volume, voxel_affine
from models.brain_mr.preprocess import labels_from_logits, pad_to_multiple, preprocess, series_geometry
from models.brain_mr.report import series_affine, write_results
from models.phantoms.brain_mr import generate_brain_mr, write_phantom
from node.packs.protocol import AlgorithmInfo, ResultContext, sort_slices
from node.results import Placement
from node.results.stl import ENCAPSULATED_STL_STORAGE, build_encapsulated_stl, decode_binary_stl, encode_binary_stl
from tests.dicom_validation import dciodvfy_errors, viewer_problems
from tests.sr_content import content_items, numeric_values

ALGORITHM = AlgorithmInfo("ainode brain MR structures and tumor", "test", "2.25.42")


def _inside(mask: np.ndarray, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    index = (np.c_[points, np.ones(len(points))] @ np.linalg.inv(affine).T)[:, :3]
    j, i, k = np.rint(index).astype(int).T
    ok = (k >= 0) & (k < mask.shape[0]) & (i >= 0) & (i < mask.shape[1]) & (j >= 0) & (j < mask.shape[2])
    out = np.zeros(len(points), dtype=bool)
    out[ok] = mask[k[ok], i[ok], j[ok]]
    return out


@pytest.fixture(scope="module")
def phantom():
    return generate_brain_mr(seed=8, tumor=True, patient_name="山田^花子=ヤマダ^ハナコ")


@pytest.fixture(scope="module")
def results(phantom):
    series = sort_slices(phantom.datasets)
    findings = BrainMRFindings(phantom.labels, series_geometry(series))
    return series, findings, write_results(series, findings, ResultContext(ALGORITHM, 9040))


def test_marching_tetrahedra_is_closed_outward_and_inside_the_mask():
    z, y, x = np.mgrid[0:12, 0:30, 0:30]
    mask = ((x - 14) * 1.5) ** 2 + ((y - 15) * 1.5) ** 2 + ((z - 6) * 4) ** 2 <= 14 ** 2
    affine = voxel_affine((-20, 10, 5), (0, 1, 0), (1, 0, 0), (0, 0, 4), (1.5, 1.5))
    triangles = marching_tetrahedra(mask, affine)
    voxels_mm3 = mask.sum() * 1.5 * 1.5 * 4
    assert 0.8 * voxels_mm3 < mesh_volume(triangles) < voxels_mm3  # pulled slightly inward, outward normals
    assert _inside(mask, affine, triangles.reshape(-1, 3)).all()
    directed = Counter(
        (tuple(a), tuple(b)) for tri in triangles.round(6) for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0]))
    )
    assert all(directed[(b, a)] == n for (a, b), n in directed.items())  # closed and consistently oriented
    assert marching_tetrahedra(np.zeros((3, 4, 4), bool), affine).shape == (0, 3, 3)


def test_binary_stl_round_trip_and_validation():
    triangles = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 0, 1], [1, 0, 1], [0, 1, 1]]], float)
    data = encode_binary_stl(triangles, header="solid test")
    assert len(data) == 84 + 2 * 50 and not data.startswith(b"solid")
    assert np.allclose(decode_binary_stl(data), triangles)
    with pytest.raises(ValueError, match="shape"):
        encode_binary_stl(np.zeros((2, 3)))


def test_seg_has_one_coded_segment_per_structure(results, phantom):
    series, _, objects = results
    seg = objects[0]
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    assert len(segments) == len(CLASS_NAMES) - 1
    for number, c in enumerate(range(1, len(CLASS_NAMES)), start=1):
        category, prop, label = CLASS_CODES[c]
        item = segments[number]
        assert item.SegmentLabel == label
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == prop.value
        assert item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == category.value
    assert seg.NumberOfFrames == len(series) * len(segments)
    assert seg.StudyInstanceUID == series[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == series[0].FrameOfReferenceUID
    assert dciodvfy_errors(seg) == []
    assert viewer_problems(seg) == []


def test_sr_reports_each_volume_and_references_the_segments(results, phantom):
    series, findings, objects = results
    seg, sr, stl = objects
    volumes = numeric_values(sr)["Volume"]
    expected = [phantom.volumes_ml()[CLASS_NAMES[c]] for c in range(1, len(CLASS_NAMES))]
    assert volumes == pytest.approx(expected, rel=1e-3)
    segment_refs = [item for item in content_items(sr) if item.ValueType == "IMAGE"
                    and "ReferencedSegmentNumber" in item.ReferencedSOPSequence[0]]
    assert sorted(int(i.ReferencedSOPSequence[0].ReferencedSegmentNumber) for i in segment_refs) == [1, 2, 3, 4, 5, 6]
    assert {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in segment_refs} == {seg.SOPInstanceUID}
    assert sr.PatientName == series[0].PatientName and "ISO_IR 192" in sr.SpecificCharacterSet
    assert dciodvfy_errors(sr) == []
    assert viewer_problems(sr) == []


def test_stl_is_the_tumor_surface_in_patient_coordinates(results, phantom):
    series, findings, objects = results
    seg, _, stl = objects
    assert stl.SOPClassUID == ENCAPSULATED_STL_STORAGE and stl.Modality == "M3D"
    assert stl.MIMETypeOfEncapsulatedDocument == "model/stl"
    assert stl.FrameOfReferenceUID == series[0].FrameOfReferenceUID
    assert stl.StudyInstanceUID == series[0].StudyInstanceUID
    assert stl.SourceInstanceSequence[0].ReferencedSOPInstanceUID == seg.SOPInstanceUID
    assert stl.MeasurementUnitsCodeSequence[0].CodeValue == "mm"
    triangles = decode_binary_stl(bytes(stl.EncapsulatedDocument)[: int(stl.EncapsulatedDocumentLength)])
    assert len(triangles) > 100
    assert _inside(phantom.labels == TUMOR, series_affine(series), triangles.reshape(-1, 3).astype(float)).all()
    truth_mm3 = phantom.volumes_ml()["tumor"] * 1000
    assert 0.6 * truth_mm3 < mesh_volume(triangles) < truth_mm3
    assert dciodvfy_errors(stl) == []
    assert viewer_problems(stl) == []


def test_no_tumor_gives_absent_finding_and_no_stl(phantom):
    series = sort_slices(phantom.datasets)
    labels = np.where(phantom.labels == TUMOR, 1, phantom.labels).astype(np.uint8)
    objects = write_results(series, BrainMRFindings(labels, series_geometry(series)), ResultContext(ALGORITHM, 9040))
    assert [o.Modality for o in objects] == ["SEG", "SR"]
    assert len(objects[0].SegmentSequence) == 5
    assert "Absent" in [i.ConceptCodeSequence[0].CodeMeaning for i in content_items(objects[1]) if i.ValueType == "CODE"]
    with pytest.raises(ValueError, match="FrameOfReferenceUID"):
        bare = [copy.deepcopy(series[0])]
        del bare[0].FrameOfReferenceUID
        build_encapsulated_stl(bare, encode_binary_stl(np.zeros((1, 3, 3))), Placement(ALGORITHM, 1, "x"),
                               document_title="x")


def test_preprocess_and_postprocess(phantom):
    image = preprocess(phantom.datasets[:3])["image"]
    assert image.shape == (3, 1, 128, 128) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 3.0
    assert pad_to_multiple(np.zeros((2, 100, 90))).shape == (2, 104, 96)
    logits = np.zeros((2, len(CLASS_NAMES), 16, 16), np.float32)
    logits[:, 1] = 1.0
    logits[0, TUMOR, 2:4, 2:4] = 5.0  # 4 voxels: dropped below min_tumor_ml
    logits[1, TUMOR, 5:15, 5:15] = 5.0  # 100 voxels: kept
    labels, prob = labels_from_logits(logits, (12, 14), voxel_ml=0.01, min_tumor_ml=0.3)
    assert labels.shape == (2, 12, 14) and prob.shape == (2, 12, 14)
    assert not (labels[0] == TUMOR).any() and (labels[0, 2:4, 2:4] == 1).all()
    assert (labels[1] == TUMOR).sum() == 7 * 9


def test_user_labels_from_nifti_and_seg(tmp_path, phantom, results):
    write_phantom(phantom, tmp_path / "p")
    for name, label_file in (("nifti", tmp_path / "p" / "labels.nii.gz"), ("seg", None)):
        case_dir = tmp_path / name
        shutil.copytree(tmp_path / "p" / "T1", case_dir / "dicom")
        if label_file is not None:
            shutil.copy(label_file, case_dir / "labels.nii.gz")
        else:
            results[2][0].save_as(case_dir / "seg.dcm", enforce_file_format=True)
        case = load_case(case_dir)
        assert np.array_equal(case.labels, phantom.labels), name
        assert case.voxel_ml == pytest.approx(phantom.voxel_ml, rel=1e-4)
