"""The brain MR phantom: anatomy, contrasts, truth, DICOM and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from models.brain_mr.classes import CLASS_NAMES, TUMOR
from models.brain_mr.nifti import read_nifti
from models.phantoms.brain_mr import generate_brain_mr, write_phantom
from node.cli import main
from tests.dicom_validation import dciodvfy_errors

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@pytest.fixture(scope="module")
def both():
    return generate_brain_mr(seed=2, tumor=True, contrasts=("T1", "T2"))


def test_every_structure_is_present_with_plausible_volumes(both):
    volumes = both.volumes_ml()
    assert set(volumes) == set(CLASS_NAMES[1:])
    assert 700 < volumes["cerebrum"] < 1500
    assert 40 < volumes["cerebellum"] < 200
    assert 10 < volumes["brainstem"] < 60
    assert 3 < volumes["ventricles"] < 60
    assert 2 < volumes["vessels"] < 30
    assert volumes["tumor"] >= 1.0
    assert both.has_tumor
    assert not (both.labels[0] == TUMOR).any() and not (both.labels[-1] == TUMOR).any()


def test_contrasts_differ_as_t1_and_heavy_t2(both):
    t1, t2 = (both.images[c].astype(float) for c in ("T1", "T2"))
    labels = both.labels
    ventricles, cerebrum, vessels = labels == 4, labels == 1, labels == 5
    assert t1[ventricles].mean() < 0.6 * t1[cerebrum].mean()  # CSF dark on T1
    assert t2[ventricles].mean() > 2.0 * t2[cerebrum].mean()  # CSF bright on heavy T2
    assert t1[vessels].mean() > t1[cerebrum].mean()  # enhancing vessels
    assert t2[vessels].mean() < t2[cerebrum].mean()  # flow voids


def test_seed_varies_anatomy_and_tumor_flag():
    a = generate_brain_mr(seed=5, tumor=False, dicom=False)
    b = generate_brain_mr(seed=6, tumor=False, dicom=False)
    again = generate_brain_mr(seed=5, tumor=False, dicom=False)
    assert not a.has_tumor
    assert np.array_equal(a.labels, again.labels) and np.array_equal(a.images["T1"], again.images["T1"])
    assert not np.array_equal(a.labels, b.labels)
    assert abs(a.volumes_ml()["cerebrum"] - b.volumes_ml()["cerebrum"]) > 1.0


def test_two_series_share_study_and_frame_of_reference(both):
    t1, t2 = both.series["T1"], both.series["T2"]
    assert len(t1) == len(t2) == both.labels.shape[0]
    assert t1[0].StudyInstanceUID == t2[0].StudyInstanceUID
    assert t1[0].FrameOfReferenceUID == t2[0].FrameOfReferenceUID
    assert t1[0].SeriesInstanceUID != t2[0].SeriesInstanceUID
    ds = t1[0]
    assert ds.SOPClassUID == MR_IMAGE_STORAGE and ds.Modality == "MR" and ds.BodyPartExamined == "BRAIN"
    assert np.array_equal(ds.pixel_array, both.images["T1"][0])
    assert float(ds.PixelSpacing[0]) == pytest.approx(both.pixel_spacing, rel=1e-5)
    assert float(t1[1].ImagePositionPatient[2]) - float(ds.ImagePositionPatient[2]) == pytest.approx(4.0)
    assert dciodvfy_errors(ds) == []


def test_write_phantom_and_cli(tmp_path, both):
    files = write_phantom(both, tmp_path / "w")
    names = {p.name for p in files}
    assert {"labels.nii.gz", "truth.json", "truth.npz"} <= names
    truth = json.loads((tmp_path / "w" / "truth.json").read_text())
    assert truth["volumes_ml"]["tumor"] == pytest.approx(both.volumes_ml()["tumor"], abs=1e-3)
    data, affine = read_nifti(tmp_path / "w" / "labels.nii.gz")
    assert np.array_equal(data.transpose(2, 1, 0), both.labels)
    assert affine[0, 0] == pytest.approx(-both.pixel_spacing) and affine[2, 2] == pytest.approx(4.0)

    assert main(["phantom", "brain-mr", "--out", str(tmp_path / "cli"), "--seed", "3", "--no-tumor",
                 "--contrast", "T2", "--slices", "8"]) == 0
    written = sorted((tmp_path / "cli" / "T2").glob("*.dcm"))
    assert len(written) == 8
    ds = pydicom.dcmread(written[0])
    assert "T2" in ds.SeriesDescription
    assert json.loads((tmp_path / "cli" / "truth.json").read_text())["has_tumor"] is False
