"""The chest CT phantom: geometry, variety, landmark truth, determinism, DICOM validity, CLI."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from models.phantoms.chest_ct import (
    LANDMARKS,
    MIN_VISIBLE_AREA_MM2,
    generate_chest_ct,
    write_phantom,
)
from node.cli import main
from node.packs.protocol import sort_slices
from tests.dicom_validation import dciodvfy_errors


@pytest.fixture(scope="module")
def phantom():
    return generate_chest_ct(seed=3)


def test_geometry(phantom):
    ds = phantom.datasets
    n = len(ds)
    assert 55 <= n <= 95
    assert phantom.hu.shape == (n, 256, 256) and phantom.hu.dtype == np.int16
    z = np.array([float(d.ImagePositionPatient[2]) for d in ds])
    assert np.allclose(np.diff(z), 4.0, atol=1e-3)
    assert np.allclose(z, phantom.z_positions, atol=1e-3)
    assert sort_slices(list(reversed(ds))) == ds
    for d in ds:
        assert d.Modality == "CT" and d.BodyPartExamined == "CHEST"
        assert float(d.SliceThickness) == 4.0
        assert d.SeriesInstanceUID == ds[0].SeriesInstanceUID
    assert len({d.SOPInstanceUID for d in ds}) == n


def test_pixel_data_is_the_hu_volume(phantom):
    for k in (0, len(phantom.datasets) // 2):
        d = phantom.datasets[k]
        assert np.array_equal(apply_modality_lut(d.pixel_array, d), phantom.hu[k])


def test_hu_ranges(phantom):
    mid = phantom.hu[phantom.landmarks["carina"] - 3]
    assert (mid < -700).sum() > 4000, "lungs"
    assert (mid > 500).sum() > 50, "bone"
    assert ((mid > 0) & (mid < 100)).sum() > 5000, "soft tissue"


@pytest.fixture(scope="module")
def lobar_phantom():
    """Seed 1,000,000: a lobar bronchus rises beside the trachea above the spur."""
    return generate_chest_ct(seed=1_000_000)


@pytest.mark.parametrize("which", ["phantom", "lobar_phantom"])
def test_landmark_truth_follows_its_definitions(which, request):
    """The truth follows the definitions; the carina is where the trachea itself divides
    (just below the spur), not the first slice where a lobar bronchus shows beside it."""
    phantom = request.getfixturevalue(which)
    marks = phantom.landmarks
    assert set(marks) == set(LANDMARKS)
    assert marks["diaphragm"] < marks["carina"] < marks["apex"]
    lung, dome = phantom.lung_area_mm2, phantom.dome_area_mm2
    # apex: the most superior slice with visible lung
    assert lung[marks["apex"]] >= MIN_VISIBLE_AREA_MM2
    assert (lung[marks["apex"] + 1:] < MIN_VISIBLE_AREA_MM2).all()
    # diaphragm: just above the highest slice with the dome visible in a lung field
    assert dome[marks["diaphragm"] - 1] >= MIN_VISIBLE_AREA_MM2
    assert (dome[marks["diaphragm"]:] < MIN_VISIBLE_AREA_MM2).all()
    # carina: the most superior slice showing the airway as two lumens, just below the spur
    assert phantom.airway_divided[marks["carina"]]
    assert not phantom.airway_divided[marks["carina"] + 1:].any()
    assert phantom.z_positions[marks["carina"]] < phantom.carina_z < phantom.z_positions[marks["carina"]] + 8.0


def test_seed_varies_patient_and_is_deterministic():
    a = generate_chest_ct(seed=11, size=96)
    b = generate_chest_ct(seed=11, size=96)
    c = generate_chest_ct(seed=12, size=96)
    assert np.array_equal(a.hu, b.hu) and a.landmarks == b.landmarks
    assert a.datasets[0].SeriesInstanceUID != b.datasets[0].SeriesInstanceUID
    assert (len(a.datasets), a.landmarks, a.info["noise_hu"]) != (len(c.datasets), c.landmarks, c.info["noise_hu"])
    assert a.z_positions[0] != c.z_positions[0]


def test_thin_slices():
    thin = generate_chest_ct(seed=3, slice_thickness=2.0, size=64)
    thick = generate_chest_ct(seed=3, size=64)
    assert 1.8 < len(thin.datasets) / len(thick.datasets) < 2.2
    assert float(thin.datasets[0].SliceThickness) == 2.0
    for name in LANDMARKS:  # the same anatomy, found at the same height (within a thick slice)
        dz = thin.z_positions[thin.landmarks[name]] - thick.z_positions[thick.landmarks[name]]
        assert abs(dz) <= 4.0, name


def test_write_phantom_truth_and_dciodvfy(phantom, tmp_path):
    paths = write_phantom(phantom, tmp_path)
    dicoms = [p for p in paths if p.suffix == ".dcm"]
    assert len(dicoms) == len(phantom.datasets) and dicoms[0].name == "0001.dcm"
    truth = json.loads((tmp_path / "truth.json").read_text())
    for name, index in phantom.landmarks.items():
        entry = truth["landmarks"][name]
        assert entry["index"] == index
        assert entry["sop_instance_uid"] == phantom.datasets[index].SOPInstanceUID
        assert entry["instance_number"] == index + 1
    back = pydicom.dcmread(dicoms[phantom.landmarks["carina"]])
    assert back.SOPInstanceUID == truth["landmarks"]["carina"]["sop_instance_uid"]
    assert dciodvfy_errors(dicoms[0]) == []


def test_cli(tmp_path):
    assert main(["phantom", "chest-ct", "--out", str(tmp_path), "--seed", "4", "--size", "64"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert len(list(tmp_path.glob("*.dcm"))) == truth["slices"]
    assert set(truth["landmarks"]) == set(LANDMARKS)


def test_cli_writes_family_b(tmp_path):
    assert main(["phantom", "chest-ct", "--family", "b", "--out", str(tmp_path), "--seed", "4", "--size", "64"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    files = sorted(tmp_path.glob("*.dcm"))
    assert len(files) == truth["slices"]
    assert set(truth["landmarks"]) == set(LANDMARKS)
    first = pydicom.dcmread(files[0])
    assert first.PatientID == "CHESTCTB-4" and first.Rows == 64
