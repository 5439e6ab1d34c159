"""End to end for the chest radiograph packs: storescu → ainode serve → a real Orthanc.

One node with two routes on the same match (DX or CR, CHEST): ``cxr-nodule`` (SEG + TID
1500 SR) and ``cxr-pneumonia`` (Grad-CAM SC + SR). One MONOCHROME1 radiograph with a
planted nodule of at least 15 mm and pneumonia, one MONOCHROME2 normal radiograph.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_validation import dciodvfy_errors
from sr_content import coded_values, content_items, numeric_values
from support import NodeProcess, OrthancServer, start_node, storescu, wait_for
from models.phantoms.cxr import generate_cxr, write_phantom

pytestmark = pytest.mark.e2e

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SIZE = 1024
PATIENT_NAME = "佐藤^花子=サトウ^ハナコ"


MATCH = '{ Modality = ["DX", "CR"], BodyPartExamined = "CHEST" }'
ROUTES = f"""
[[routes]]
name = "cxr-nodule"
model = "cxr-nodule"
destinations = ["pacs"]
match = {MATCH}

[[routes]]
name = "cxr-pneumonia"
model = "cxr-pneumonia"
destinations = ["pacs"]
match = {MATCH}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer):
    node = start_node(tmp_path_factory.mktemp("node"), pacs, ROUTES)
    yield node
    node.stop()


def _send(node: NodeProcess, phantom, out: Path) -> None:
    storescu([write_phantom(phantom, out)[0]], node.dicom_port)
    series_uid = phantom.dataset.SeriesInstanceUID

    def both_done():
        jobs = [j for j in node.jobs() if j["series_uid"] == series_uid]
        done = [j for j in jobs if j["state"] in ("delivered", "failed")]
        return done if len(done) == 2 else None

    jobs = wait_for(both_done, 180, what=f"both jobs of series {series_uid}")
    assert sorted(j["model"] for j in jobs) == ["cxr-nodule", "cxr-pneumonia"]
    assert all(j["state"] == "delivered" for j in jobs), jobs


def _results(orthanc: OrthancServer, source: pydicom.Dataset) -> dict[str, list[pydicom.Dataset]]:
    return orthanc.results_by_class(source.StudyInstanceUID, source.SeriesInstanceUID)


def _check_common(datasets: list[pydicom.Dataset], source: pydicom.Dataset, tmp_path: Path) -> None:
    for ds in datasets:
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], f"{ds.SOPClassUID} fails dciodvfy"
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientName == PATIENT_NAME and ds.PatientID == source.PatientID
        assert ds.ContributingEquipmentSequence[-1].DeviceUID


def _split_reports(srs: list[pydicom.Dataset]) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    by_number = {int(sr.SeriesNumber): sr for sr in srs}
    assert set(by_number) == {9021, 9031}
    return by_number[9021], by_number[9031]


def test_monochrome1_radiograph_with_a_large_nodule(node, pacs, tmp_path):
    phantom = generate_cxr(seed=101, size=SIZE, nodules=1, min_diameter_mm=18, max_diameter_mm=26,
                           pneumonia=True, photometric="MONOCHROME1", patient_name=PATIENT_NAME)
    (truth,) = phantom.nodules
    assert truth.diameter_mm >= 15
    _send(node, phantom, tmp_path / "in")
    source = phantom.dataset
    results = _results(pacs, source)
    assert set(results) == {SEG, COMPREHENSIVE_3D_SR, SECONDARY_CAPTURE}
    (seg,) = results[SEG]
    (sc,) = results[SECONDARY_CAPTURE]
    nodule_sr, pneumonia_sr = _split_reports(results[COMPREHENSIVE_3D_SR])
    _check_common([seg, sc, nodule_sr, pneumonia_sr], source, tmp_path)

    # the planted nodule is found within its radius, in the SEG and in the SR
    mask = np.asarray(seg.pixel_array, dtype=bool).reshape(SIZE, SIZE)
    assert mask[int(round(truth.row)), int(round(truth.col))]
    centres = []
    for item in content_items(nodule_sr):
        if item.ValueType == "SCOORD":
            assert item.GraphicType == "ELLIPSE"
            assert item.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
            centres.append(np.asarray(item.GraphicData, dtype=float).reshape(-1, 2).mean(axis=0) - 0.5)
    distances = [np.hypot(c[1] - truth.row, c[0] - truth.col) for c in centres]
    assert min(distances) <= truth.radius_px
    hit = int(np.argmin(distances))
    assert numeric_values(nodule_sr)["Diameter"][hit] == pytest.approx(truth.diameter_mm, rel=0.6)
    assert seg.SegmentSequence[0].SegmentLabel == "Nodule"

    # the pneumonia SC references its source and the SR gives probability and location
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.PhotometricInterpretation == "RGB" and (sc.Rows, sc.Columns) == (SIZE, SIZE)
    probability = numeric_values(pneumonia_sr)["Probability"][0]
    assert 0.0 <= probability <= 1.0
    texts = [i.TextValue for i in content_items(pneumonia_sr) if i.ValueType == "TEXT"]
    assert any(t.startswith("Pneumonia (heatmap: ") and t.endswith(" zone)") for t in texts)


def test_monochrome2_normal_radiograph_yields_no_nodule(node, pacs, tmp_path):
    phantom = generate_cxr(seed=202, size=SIZE, photometric="MONOCHROME2", patient_name=PATIENT_NAME)
    _send(node, phantom, tmp_path / "in")
    source = phantom.dataset
    results = _results(pacs, source)
    assert SEG not in results, "no nodule, no SEG"
    (sc,) = results[SECONDARY_CAPTURE]
    nodule_sr, pneumonia_sr = _split_reports(results[COMPREHENSIVE_3D_SR])
    _check_common([sc, nodule_sr, pneumonia_sr], source, tmp_path)
    assert coded_values(nodule_sr)["Nodule"] == ["Absent"]
    # "absent" is drawn around the whole radiograph (OHIF 3.13 stops on a group without SCOORD)
    (region,) = [i for i in content_items(nodule_sr) if i.ValueType == "SCOORD"]
    assert region.GraphicType == "POLYLINE" and len(region.GraphicData) == 10
    assert "Probability" in numeric_values(pneumonia_sr)
