"""Chest CT phantom family B and family A's randomised styles: determinism, truth, series shape."""
from __future__ import annotations

import numpy as np
import pytest

from models.chest_ct_landmarks.preprocess import preprocess
from models.phantoms.chest_ct import LANDMARKS, MIN_VISIBLE_AREA_MM2, generate_chest_ct, random_style
from models.phantoms.chest_ct_b import generate_chest_ct_b
from node.packs.protocol import sort_slices


@pytest.fixture(scope="module")
def b_phantom():
    return generate_chest_ct_b(seed=5, size=128)


def _truth_follows_definitions(p) -> None:
    marks = p.landmarks
    assert set(marks) == set(LANDMARKS)
    assert marks["diaphragm"] < marks["carina"] < marks["apex"] < len(p.datasets)
    lung, dome = p.lung_area_mm2, p.dome_area_mm2
    assert lung[marks["apex"]] >= MIN_VISIBLE_AREA_MM2
    assert (lung[marks["apex"] + 1:] < MIN_VISIBLE_AREA_MM2).all()
    assert dome[marks["diaphragm"] - 1] >= MIN_VISIBLE_AREA_MM2
    assert (dome[marks["diaphragm"]:] < MIN_VISIBLE_AREA_MM2).all()
    assert p.airway_divided[marks["carina"]]
    assert not p.airway_divided[marks["carina"] + 1:].any()


def test_b_series_shape_is_what_the_pack_consumes(b_phantom):
    ds = b_phantom.datasets
    n = len(ds)
    assert 50 <= n <= 110
    assert b_phantom.hu.shape == (n, 128, 128) and b_phantom.hu.dtype == np.int16
    z = np.array([float(d.ImagePositionPatient[2]) for d in ds])
    assert np.allclose(np.diff(z), 4.0, atol=1e-3)
    assert sort_slices(list(reversed(ds))) == ds
    assert all(d.Modality == "CT" and d.BodyPartExamined == "CHEST" for d in ds)
    image = preprocess(ds)["image"]
    assert image.shape == (n, 3, 128, 128) and 0.0 <= image.min() and image.max() <= 1.0


def test_b_truth_follows_its_anatomy(b_phantom):
    _truth_follows_definitions(b_phantom)
    # The carina slice lies within a few slices below the point where the trachea ends.
    c = b_phantom.landmarks["carina"]
    assert b_phantom.z_positions[c] <= b_phantom.carina_z + 4.0
    assert b_phantom.z_positions[c] > b_phantom.carina_z - 40.0
    # Lung at the carina slice, none above the apex slice in the image either.
    hu = b_phantom.hu
    assert (hu[c] < -700).sum() > 500
    mid = hu[(b_phantom.landmarks["apex"] + b_phantom.landmarks["diaphragm"]) // 2]
    assert ((mid > 0) & (mid < 100)).sum() > 500 and (mid > 400).sum() > 10


def test_b_is_deterministic_per_seed_and_varies_between_seeds(b_phantom):
    again = generate_chest_ct_b(seed=5, size=128)
    other = generate_chest_ct_b(seed=6, size=128)
    assert np.array_equal(again.hu, b_phantom.hu) and again.landmarks == b_phantom.landmarks
    assert again.datasets[0].SeriesInstanceUID != b_phantom.datasets[0].SeriesInstanceUID
    assert (len(other.datasets), other.landmarks) != (len(b_phantom.datasets), b_phantom.landmarks)
    assert other.datasets[0].PatientID == "CHESTCTB-6"


def test_b_differs_from_a_for_the_same_seed(b_phantom):
    a = generate_chest_ct(seed=5, size=128)
    assert a.hu.shape != b_phantom.hu.shape or not np.array_equal(a.hu, b_phantom.hu)
    assert a.datasets[0].Manufacturer != b_phantom.datasets[0].Manufacturer


def test_a_styles_are_deterministic_and_leave_plain_phantoms_alone():
    style = random_style(7)
    assert style == random_style(7) and style != random_style(8)
    assert 3.0 <= style.slice_thickness <= 5.0 and style.size in (192, 256, 320)
    a = generate_chest_ct(seed=7, styles=True, slice_thickness=None, size=96)
    b = generate_chest_ct(seed=7, styles=True, slice_thickness=None, size=96)
    plain = generate_chest_ct(seed=7, size=96)
    assert np.array_equal(a.hu, b.hu) and a.landmarks == b.landmarks
    assert a.hu.shape[0] != plain.hu.shape[0] or not np.array_equal(a.hu, plain.hu)
    assert float(a.datasets[0].SliceThickness) == pytest.approx(style.slice_thickness, abs=1e-4)
    z = np.array([float(d.ImagePositionPatient[2]) for d in a.datasets])
    assert np.allclose(np.diff(z), style.slice_thickness * style.spacing_ratio, atol=1e-3)
    _truth_follows_definitions(a)


def test_a_styles_span_what_the_issue_names():
    styles = [random_style(s) for s in range(60)]
    assert {s.size for s in styles} == {192, 256, 320}
    assert any(s.contrast for s in styles) and not all(s.contrast for s in styles)
    assert any(s.spacing_ratio < 1.0 for s in styles) and any(s.sharpen > 0 for s in styles)
    assert min(s.noise for s in styles) < 15 and max(s.noise for s in styles) > 45
    assert max(s.bronchus_angle[1] for s in styles) - min(s.bronchus_angle[1] for s in styles) > 20
    assert {s.outside for s in styles} == {-1024.0, -3024.0}
