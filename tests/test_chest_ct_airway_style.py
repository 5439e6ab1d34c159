"""The airway style axis of the chest CT phantoms (issue 33): it moves what it says, both
families, the truth follows it, the same seed gives the same phantom, plain phantoms unchanged."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from models.phantoms.chest_ct import apply_airway_style, generate_chest_ct
from models.phantoms.chest_ct_airway import (
    SUBSLICES_PER_SLICE,
    random_airway_style,
    slab_offsets,
    subslice_heights,
)
from models.phantoms.chest_ct_anatomy import random_anatomy
from models.phantoms.chest_ct_b import generate_chest_ct_b
from models.phantoms.chest_ct_b_patient import PatientB, discs
from models.phantoms.chest_ct_body import Body
from models.phantoms.chest_ct_truth import landmark_truth

GENERATORS = {"a": generate_chest_ct, "b": generate_chest_ct_b}


def _body_a(style, seed: int = 5, spacing: float = 0.25, half: float = 200.0) -> Body:
    rng = np.random.default_rng(seed)
    anatomy = random_anatomy(rng)
    apply_airway_style(anatomy, style)
    g = np.arange(-half, half, spacing, dtype=np.float32)
    X, Y = np.meshgrid(g, g)
    return Body(anatomy, rng, X, Y, spacing)


def _patient_b(style, seed: int = 5) -> PatientB:
    return PatientB(np.random.default_rng([seed, 0xB]), style)


def test_style_is_drawn_from_the_seed_alone_and_spans_its_ranges():
    styles = [random_airway_style(s) for s in range(300)]
    assert random_airway_style(17) == random_airway_style(17)
    walls = np.array([s.wall_mm for s in styles])
    right = np.array([s.bronchus_angle[0] for s in styles])
    left = np.array([s.bronchus_angle[1] for s in styles])
    motion = np.array([s.amplitude for s in styles])
    assert walls.min() < 1.3 and walls.max() > 4.2 and np.all((walls >= 1.0) & (walls <= 4.5))
    assert right.min() < 15 and right.max() > 42 and left.min() < 32 and left.max() > 68
    assert {s.slice_thickness for s in styles} == {5.0}
    assert 0.3 < np.mean(motion == 0.0) < 0.5 and motion.max() > 16.0


def test_plain_phantoms_are_unchanged():
    """The axis draws from streams of its own: without it, a seed's phantom is the one it was
    before the axis existed (sha256 of the HU volume, recorded before the change)."""
    pins = {
        "a": "04b8cb679eabeb4a5d39f815a7f671fb76612deccb361185905a92cb645bff53",
        "b": "2dd99687b6bc8cf69ed99a91f4a654a1354ed8bbd03d67bc76eface8146b5ff5",
    }
    for family, gen in GENERATORS.items():
        phantom = gen(3, size=64)
        assert hashlib.sha256(phantom.hu.tobytes()).hexdigest() == pins[family], family
        assert "airway_wall_mm" not in phantom.info


def test_subslice_heights_are_the_5mm_slab_and_the_breathing_patient():
    zs = np.arange(-150.0, 80.0, 5.0)
    held = replace(random_airway_style(1), amplitude=0.0)
    heights = subslice_heights(zs, held, apex=75.0, dome=-140.0)
    assert heights.shape == (len(zs), SUBSLICES_PER_SLICE)
    assert np.allclose(heights - zs[:, None], slab_offsets() * 5.0)
    assert np.ptp(heights[0]) == pytest.approx(5.0 * (1 - 1 / SUBSLICES_PER_SLICE))
    moving = replace(held, amplitude=15.0, period=4.0, rotation=0.5, table_speed=40.0)
    shifted = subslice_heights(zs, moving, apex=75.0, dome=-140.0) - heights
    # Inspiration moves the anatomy down, so the table sees anatomy from above (z0 >= z).
    assert shifted.min() >= -1e-9 and shifted.max() <= 15.0 + 1e-9 and shifted.max() > 8.0
    # Within one slice, sub-slices see different phases: the slab is smeared (doubling).
    assert np.ptp(shifted, axis=1).max() > 1.5
    # Held in full inspiration: the anatomy at rest height z0 sits at z0 - 15 w(z0), w falling
    # linearly from 1 at the dome to 0.15 at the apex; the table at z sees z0 = z + 15 w(z0).
    inspired = replace(moving, period=1e9, phase=np.pi)
    shifted = subslice_heights(zs, inspired, apex=75.0, dome=-140.0) - heights
    k = 0.85 / 215.0
    expected = 15.0 * (0.15 + k * (75.0 - heights)) / (1.0 + 15.0 * k)
    inside = (heights > -140.0) & (heights + expected < 75.0)
    assert np.allclose(shifted[inside], expected[inside], atol=0.01)
    carina_row = int(np.argmin(np.abs(zs)))
    assert 0.35 < shifted[carina_row].mean() / shifted.max() < 0.5  # the carina moves under half as far


@pytest.mark.parametrize("family", ["a", "b"])
def test_wall_thickness_shows_in_the_hu_profile(family):
    """A noise-free sub-slice 30-40 mm above the carina: the run of wall-valued pixels on the row
    through the trachea is the style's wall thickness on each side."""
    for wall in (1.0, 2.5, 4.0):
        style = replace(random_airway_style(1), wall_mm=wall, wall_hu=63.0)
        if family == "a":
            body = _body_a(style)
            hu, _, _ = body.render(30.0, np.zeros(body.X.shape, np.float32))
            row = hu[int(round((body.trachea_xy[1] - float(body.Y[0, 0])) / 0.25))]
            measured = np.count_nonzero(row == np.float32(63.0)) * 0.25 / 2
        else:
            pt = _patient_b(style)
            c = pt.carina_pt
            g = np.arange(-48.0, 48.0, 0.2)
            gx, gy = np.meshgrid(c[0] + g, c[1] + g)
            ring = discs(pt.airway_wall, 40.0, gx, gy, 0.2) & ~discs(pt.lumen, 40.0, gx, gy, 0.2)
            ty = pt.trachea_line[np.argmin(np.abs(pt.trachea_line[:, 2] - 40.0)), 1]
            measured = np.count_nonzero(ring[int(round((ty - gy[0, 0]) / 0.2))]) * 0.2 / 2
            assert pt.wall_hu == 63.0
        assert measured == pytest.approx(wall, abs=0.3), (family, wall)


@pytest.mark.parametrize("family", ["a", "b"])
def test_bronchus_angles_move_the_main_bronchi(family):
    """Wider style angles put each main bronchus lumen further from the midline just below the
    spur (lumen centroid of each half, 8 mm (A) / 6 mm (B) below the carina)."""
    base = random_airway_style(1)
    offsets = []
    for angles in ((20.0, 35.0), (40.0, 65.0)):
        style = replace(base, bronchus_angle=angles)
        if family == "a":
            body = _body_a(style, spacing=2.0)
            gx, gy = body._airway_grid()
            lumen, cx = body._lumen_on(gx, gy, -8.0), body.trachea_xy[0]
        else:
            pt = _patient_b(style)
            g = np.arange(-48.0, 48.0, 0.4)
            gx, gy = np.meshgrid(pt.carina_pt[0] + g, pt.carina_pt[1] + g)
            lumen, cx = discs(pt.lumen, -6.0, gx, gy, 0.4), pt.carina_pt[0]
        offsets.append([abs(float(gx[lumen & (sign * (gx - cx) > 0)].mean()) - cx) for sign in (-1, 1)])
    (narrow_r, narrow_l), (wide_r, wide_l) = offsets
    assert wide_r - narrow_r > 1.2 and wide_l - narrow_l > 4.0, offsets


@pytest.mark.parametrize("family", ["a", "b"])
def test_styled_series_is_5mm_deterministic_and_its_truth_follows_it(family):
    gen = GENERATORS[family]
    seed = 1  # a breathing patient (amplitude 11.8 mm)
    style = random_airway_style(seed)
    assert style.amplitude > 5.0
    one = gen(seed, slice_thickness=None, size=96, airway_style=True)
    two = gen(seed, slice_thickness=None, size=96, airway_style=True)
    assert np.array_equal(one.hu, two.hu) and one.landmarks == two.landmarks
    assert float(one.datasets[0].SliceThickness) == 5.0
    assert np.allclose(np.diff(one.z_positions), 5.0, atol=1e-3)
    assert one.info["airway_wall_mm"] == style.wall_mm and one.info["airway_motion_mm"] == style.amplitude
    # The truth is the landmark rule applied to what was rendered (areas and lumens at the
    # breathing heights), and its carina is the most superior slice the airway shows divided.
    assert one.landmarks == landmark_truth(one.lung_area_mm2, one.dome_area_mm2, one.airway_divided)
    assert one.landmarks["carina"] == int(np.flatnonzero(one.airway_divided).max())
