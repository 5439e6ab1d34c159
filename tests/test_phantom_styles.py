"""Randomised styles of the CXR, head CT and brain MR phantoms: deterministic, plain phantoms
untouched, every style written into valid DICOM that the node reads the way it reads any other."""
from __future__ import annotations

import numpy as np
import pytest

from dicom_validation import dciodvfy_errors
from models.brain_mr.preprocess import series_geometry, series_volume
from models.radiograph import read_radiograph
from models.phantoms import brain_mr, cxr, head_ct
from models.phantoms.brain_mr import generate_brain_mr
from models.phantoms.cxr import generate_cxr
from models.phantoms.head_ct import generate_head_ct


@pytest.mark.parametrize("module", [cxr, head_ct, brain_mr], ids=["cxr", "head-ct", "brain-mr"])
def test_a_style_is_drawn_from_the_seed_alone(module):
    assert module.random_style(11) == module.random_style(11)
    assert module.random_style(11) != module.random_style(12)


def test_cxr_styles_span_dose_processing_bits_and_patient():
    styles = [cxr.random_style(s) for s in range(80)]
    assert {s.bits for s in styles} == {12, 14}
    assert min(s.dose for s in styles) < 0.35 and max(s.dose for s in styles) > 1.1
    assert any(s.processing == 0 for s in styles) and max(s.processing for s in styles) > 1.2
    assert any(s.noise_grain == 0 for s in styles) and any(s.noise_grain > 0.6 for s in styles)
    assert max(s.body_scale for s in styles) - min(s.body_scale for s in styles) > 0.2
    assert max(abs(s.tilt) for s in styles) > 0.06


def test_cxr_plain_phantom_ignores_the_style_stream():
    plain = generate_cxr(seed=5, size=128, nodules=2)
    styled = generate_cxr(seed=5, size=128, nodules=2, styles=True)
    assert plain.style is None and styled.style == cxr.random_style(5)
    assert np.array_equal(plain.image, generate_cxr(seed=5, size=128, nodules=2).image)
    assert not np.array_equal(plain.image, styled.image)
    assert np.array_equal(styled.image, generate_cxr(seed=5, size=128, nodules=2, styles=True).image)


@pytest.mark.parametrize("seed", [2, 3, 9])
def test_styled_cxr_twin_differs_only_by_the_nodules(seed):
    """Training embeds ``image - twin`` into other radiographs: with a style (noise, blur,
    processing) that difference must still be the nodules and nothing else."""
    p = generate_cxr(seed=seed, size=256, nodules=2, styles=True)
    assert p.nodules
    diff = np.abs(p.image - p.clean)
    near = np.zeros_like(p.nodule_mask)
    for n in p.nodules:
        rr, cc = np.ogrid[:256, :256]
        reach = n.radius_px + 3 * p.style.processing_mm / p.pixel_spacing + 6
        near |= (rr - n.row) ** 2 + (cc - n.col) ** 2 <= reach ** 2
    assert diff[~near].max() < 0.05   # Gaussian tails of the processing kernel, far below one stored value
    assert diff[p.nodule_mask].mean() > 1.0


@pytest.mark.parametrize("seed", [0, 1, 6, 7])
def test_styled_cxr_is_valid_dicom_read_back_as_made(seed, tmp_path):
    photometric = "MONOCHROME1" if seed % 2 else "MONOCHROME2"
    p = generate_cxr(seed=seed, size=256, nodules=1, photometric=photometric, styles=True)
    ds = p.dataset
    top = (1 << p.style.bits) - 1
    assert int(ds.BitsStored) == p.style.bits and int(ds.HighBit) == p.style.bits - 1
    assert 0 <= int(ds.pixel_array.min()) and int(ds.pixel_array.max()) <= top
    dense_high = read_radiograph(ds)
    # the node reads dense as high whatever the encoding: the phantom's image up to an offset
    # (and the rounding of the float32 copy kept in the phantom)
    offset = dense_high - p.image
    assert np.abs(offset - np.median(offset)).max() <= 1.0
    path = cxr.write_phantom(p, tmp_path)[0]
    assert dciodvfy_errors(path) == []


def test_head_ct_styles_span_field_noise_kernel_and_position():
    styles = [head_ct.random_style(s) for s in range(60)]
    assert min(s.fov_mm for s in styles) < 210 and max(s.fov_mm for s in styles) > 250
    assert min(s.noise for s in styles) < 4 and max(s.noise for s in styles) > 10
    assert any(s.sharpen > 0 for s in styles) and any(s.sharpen == 0 for s in styles)
    assert {s.outside for s in styles} == {-1024.0, -3024.0}
    assert max(abs(s.angle) for s in styles) > 0.3


def test_head_ct_styled_series_follows_its_style(tmp_path):
    plain = generate_head_ct(seed=3, slices=6, size=256)
    styled = generate_head_ct(seed=3, slices=6, size=256, styles=True)
    again = generate_head_ct(seed=3, slices=6, size=256)
    assert plain.style is None and np.array_equal(plain.hu, again.hu)
    assert not np.array_equal(plain.hu, styled.hu)
    style = styled.style
    assert float(styled.datasets[0].PixelSpacing[0]) == pytest.approx(style.fov_mm / 256, rel=1e-4)
    corner = styled.datasets[0].pixel_array[0, 0] * float(styled.datasets[0].RescaleSlope) \
        + float(styled.datasets[0].RescaleIntercept)
    assert corner == pytest.approx(style.outside)
    assert styled.has_hematoma and (styled.patch_labels == 2).any()
    path = tmp_path / "slice.dcm"
    styled.datasets[0].save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []


def test_brain_mr_styles_span_slices_noise_bias_and_gain():
    styles = [brain_mr.random_style(s) for s in range(60)]
    assert min(s.slice_mm for s in styles) < 3.3 and max(s.slice_mm for s in styles) > 4.7
    assert min(s.noise for s in styles) < 0.015 and max(s.noise for s in styles) > 0.05
    assert min(s.bias for s in styles) < 0.1 and max(s.bias for s in styles) > 0.4
    assert min(s.gain for s in styles) < 0.5 and max(s.gain for s in styles) > 1.7


def test_brain_mr_styled_series_has_its_geometry_and_a_whole_tumour(tmp_path):
    plain = generate_brain_mr(seed=2, slices=16, size=64, dicom=False)
    styled = generate_brain_mr(seed=2, slices=16, size=64, styles=True)
    assert not np.array_equal(plain.images["T1"], styled.images["T1"])
    style = styled.style
    assert styled.slice_spacing == pytest.approx(style.slice_mm)
    z = np.array([float(d.ImagePositionPatient[2]) for d in styled.datasets])
    assert np.allclose(np.diff(z), style.slice_mm, atol=1e-3)
    assert float(styled.datasets[0].PixelSpacing[0]) == pytest.approx(style.fov_mm / 64, rel=1e-4)
    tumour = styled.labels == 6
    assert tumour.sum() * styled.voxel_ml >= 1.0 and not tumour[0].any() and not tumour[-1].any()
    assert np.array_equal(series_volume(styled.datasets).astype(np.uint16), styled.images["T1"])
    assert series_geometry(styled.datasets)[2] == pytest.approx(style.slice_mm, abs=1e-3)
    path = tmp_path / "slice.dcm"
    styled.datasets[0].save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
