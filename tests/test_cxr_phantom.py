"""The chest radiograph phantom: DICOM, both photometric encodings, nodules, pneumonia."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from models.radiograph import read_radiograph, to_model
from models.phantoms.cxr import DX_FOR_PRESENTATION, FIELD_MM, add_cli_arguments, generate_cxr, run_cli, write_phantom
from dicom_validation import dciodvfy_errors


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_dx_dataset_is_valid(photometric, tmp_path):
    phantom = generate_cxr(seed=1, size=256, nodules=1, photometric=photometric)
    ds = phantom.dataset
    assert ds.SOPClassUID == DX_FOR_PRESENTATION and ds.Modality == "DX"
    assert ds.BodyPartExamined == "CHEST" and ds.ViewPosition == "PA"
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert float(ds.ImagerPixelSpacing[0]) == pytest.approx(FIELD_MM / 256, rel=1e-4)
    assert ds.PhotometricInterpretation == photometric
    assert ds.PresentationLUTShape == ("INVERSE" if photometric == "MONOCHROME1" else "IDENTITY")
    assert "WindowCenter" in ds and "WindowWidth" in ds
    path = write_phantom(phantom, tmp_path)[0]
    assert dciodvfy_errors(path) == []


def test_monochrome1_stores_inverted_values_of_the_same_anatomy():
    mono1 = generate_cxr(seed=4, size=256, nodules=2, photometric="MONOCHROME1").dataset
    mono2 = generate_cxr(seed=4, size=256, nodules=2, photometric="MONOCHROME2").dataset
    assert np.array_equal(mono1.pixel_array.astype(int), 4095 - mono2.pixel_array.astype(int))
    assert np.array_equal(read_radiograph(mono1) + 4095, read_radiograph(mono2))
    assert np.allclose(to_model(mono1, 128)[0], to_model(mono2, 128)[0], atol=1e-5)
    # the window shows the same picture
    c1, c2 = float(mono1.WindowCenter), float(mono2.WindowCenter)
    assert c1 == pytest.approx(4095 - c2, abs=0.2)


def test_projection_anatomy():
    phantom = generate_cxr(seed=2, size=256)
    image, lungs = phantom.image, phantom.lung_mask
    cols = image.shape[1]
    spine = image[60:140, cols // 2 - 3: cols // 2 + 3].mean()
    assert lungs[:, : cols // 2].any() and lungs[:, cols // 2:].any(), "two lung fields"
    assert image[lungs].mean() < spine - 300, "air-filled lungs are darker than the spine"
    outside = image[:, :8].mean()
    assert outside < image[lungs].mean(), "air outside the body is darkest"
    assert phantom.nodules == [] and not phantom.nodule_mask.any()
    assert np.array_equal(phantom.image, phantom.clean)


def test_nodules_and_their_nodule_free_twin():
    phantom = generate_cxr(seed=3, size=512, nodules=3, min_diameter_mm=8, max_diameter_mm=30)
    assert len(phantom.nodules) == 3
    diff = phantom.image - phantom.clean
    near = ndimage.binary_dilation(phantom.nodule_mask, iterations=6)
    assert np.abs(diff[~near]).max() < 1.0, "the twin differs only at the nodules"
    assert (diff[phantom.nodule_mask] > 0).mean() > 0.9, "nodules add attenuation"
    labels, n = ndimage.label(phantom.nodule_mask)
    assert n == 3
    for nodule in phantom.nodules:
        assert 4.0 <= nodule.diameter_mm <= 36.0
        assert phantom.lung_mask[int(round(nodule.row)), int(round(nodule.col))], "inside a lung field"
        assert phantom.nodule_mask[int(round(nodule.row)), int(round(nodule.col))]
        assert nodule.radius_px == pytest.approx(nodule.diameter_mm / 2 / phantom.pixel_spacing)


def test_nodule_shapes_vary():
    shapes = [generate_cxr(seed=s, size=256, nodules=1, min_diameter_mm=15, max_diameter_mm=30) for s in range(4)]
    diameters = {round(p.nodules[0].diameter_mm) for p in shapes}
    assert len(diameters) >= 3
    # a union of spheres is not a perfect disc: its area differs from the bounding circle's
    roundness = []
    for p in shapes:
        rows, cols = np.nonzero(p.nodule_mask)
        extent = max(np.ptp(rows), np.ptp(cols)) + 1
        roundness.append(len(rows) / (np.pi * extent ** 2 / 4))
    assert min(roundness) < 0.95


def test_pneumonia_is_in_the_lungs_mostly_lower():
    lower = 0
    for seed in range(6):
        phantom = generate_cxr(seed=seed, size=256, pneumonia=True)
        assert phantom.has_pneumonia
        mask = phantom.pneumonia_mask
        assert (mask & ~phantom.lung_mask).sum() == 0
        lung_rows = np.nonzero(phantom.lung_mask.any(axis=1))[0]
        mid = (lung_rows.min() + lung_rows.max()) / 2
        lower += np.nonzero(mask)[0].mean() > mid
        healthy = generate_cxr(seed=seed, size=256, pneumonia=False)
        assert phantom.image[mask].mean() > healthy.image[mask].mean() + 20, "consolidation is denser"
    assert lower >= 4


def test_cli_writes_dicom_and_truth(tmp_path):
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--seed", "5", "--size", "128", "--nodules", "2",
                              "--pneumonia", "--photometric", "MONOCHROME1"])
    assert run_cli(args) == 0
    ds = pydicom.dcmread(tmp_path / "image.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.Rows == 128
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["sop_instance_uid"] == ds.SOPInstanceUID
    assert len(truth["nodules"]) == 2 and truth["has_pneumonia"]
    masks = np.load(tmp_path / "truth.npz")
    assert masks["nodule_mask"].shape == (128, 128) and masks["clean"].shape == (128, 128)
    assert truth["style"] is None
    styled = tmp_path / "styled"
    assert run_cli(parser.parse_args(["--out", str(styled), "--seed", "5", "--size", "128", "--styles"])) == 0
    assert json.loads((styled / "truth.json").read_text())["style"]["bits"] == pydicom.dcmread(styled / "image.dcm").BitsStored
