"""The brain MR model: the committed ONNX graph and torch weights, held-out accuracy, training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models.brain_mr.classes import CLASS_NAMES, UNLABELLED
from models.brain_mr.pack import BrainMRPack
from models.brain_mr.preprocess import stack_context
from models.brain_mr.train import TEST_SEED_BASE, WEIGHTINGS, evaluate, thin_labels
from models.phantoms.brain_mr import generate_brain_mr
from node.packs.protocol import ModelPack, sort_slices

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "brain_mr" / "weights"
MODEL = WEIGHTS / "model.onnx"
META = json.loads((WEIGHTS / "model.json").read_text())

# The card's held-out figures come from seeds TEST_SEED_BASE + 0..7; this check uses three
# other held-out seeds (all with a tumour, never trained on). Margins below the measured
# per-class Dice (model.json metrics.test): 0.05 for the large structures, 0.10 for the thin
# or small ones (vessels, tumour, ventricles), whose Dice varies most between phantoms. The
# largest tumour volume error on the check seeds may exceed the largest one measured on the
# card's held-out seeds (1.8 %, weights 0.4.0-phantom) by 0.03; measured on the check seeds:
# 0.1 %. The same seeds drawn with randomised styles are held to the styled figures
# (metrics.test_styled: worst 19.3 %) with the same margins; measured: 0.1, 0.1, 3.7 %.
CHECK_SEEDS = [TEST_SEED_BASE + 500, TEST_SEED_BASE + 501, TEST_SEED_BASE + 502]
MARGIN = {"cerebrum": 0.05, "cerebellum": 0.05, "brainstem": 0.05, "ventricles": 0.10, "vessels": 0.10, "tumor": 0.10}
VOLUME_MARGIN = 0.03
HELD_OUT_WORST_VOLUME_ERROR = 0.018
STYLED_WORST_VOLUME_ERROR = 0.193


def _relative_errors(volumes: list[dict]) -> list[float]:
    return [abs(v["predicted_ml"] - v["truth_ml"]) / v["truth_ml"] for v in volumes if v["truth_ml"] > 0]


def test_model_json_and_comparison():
    assert META["name"] == "brain-mr" and META["device_uid"].startswith("2.25.")
    assert META["trained_on"]["seeds"][1] < TEST_SEED_BASE and META["trained_on"]["styled_seeds"][1] < TEST_SEED_BASE
    test = META["metrics"]["test"]
    assert min(test["seeds"]) >= TEST_SEED_BASE and len(test["seeds"]) >= 8
    assert set(test["dice"]) == set(CLASS_NAMES[1:])
    runs = META["comparison"]["runs"]
    for variant in ("unet", "frru"):
        for weighting in WEIGHTINGS:
            assert set(runs[f"{variant}-{weighting}"]["dice"]) == set(CLASS_NAMES[1:])
    every4 = [r for r in runs.values() if r["label_every"] == 4]
    assert len(every4) == 1
    best = max((r for r in runs.values() if r["label_every"] == 1), key=lambda r: r["mean_dice"])
    assert (META["architecture"]["variant"], META["trained_on"]["weighting"]) == (best["variant"], best["weighting"])
    assert MODEL.stat().st_size < 5 * 1024 * 1024


def test_committed_onnx_runs_on_any_multiple_of_8():
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    channels = META["architecture"]["in_channels"]
    assert channels == 2 * META["architecture"].get("context", 0) + 1 == META["input"]["shape"][1]
    (logits,) = session.run(["logits"], {"image": np.zeros((3, channels, 96, 112), np.float32)})
    assert logits.shape == (3, len(CLASS_NAMES), 96, 112) and np.isfinite(logits).all()


def test_stack_context_and_pack_input():
    volume = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 2, 3), np.float32)
    assert stack_context(volume, 0).shape == (4, 1, 2, 3)
    stacked = stack_context(volume, 1)
    assert stacked.shape == (4, 3, 2, 3)
    assert [list(stacked[k, :, 0, 0]) for k in range(4)] == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    pack = BrainMRPack()
    phantom = generate_brain_mr(seed=TEST_SEED_BASE + 602, tumor=True, slices=6)
    image = pack.preprocess(sort_slices(phantom.datasets))["image"]
    assert image.shape == (6, META["architecture"]["in_channels"], 128, 128)
    middle = pack.context
    assert np.array_equal(image[2:5, middle], image[1:4, middle + 1] if middle else image[2:5, 0])


def test_torch_weights_rebuild_the_onnx_graph():
    torch = pytest.importorskip("torch")
    from models.brain_mr.net import build_network

    model = build_network(META)
    model.load_state_dict(torch.load(WEIGHTS / "model.pt", weights_only=True))
    model.eval()
    phantom = generate_brain_mr(seed=TEST_SEED_BASE + 600, tumor=True, slices=8, dicom=True)
    image = BrainMRPack().preprocess(phantom.datasets)["image"]
    with torch.no_grad():
        eager = model(torch.from_numpy(image)).numpy()
    (onnx,) = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(["logits"], {"image": image})
    assert np.allclose(eager, onnx, atol=1e-3)


def test_pack_protocol_and_findings():
    pack = BrainMRPack()
    assert isinstance(pack, ModelPack)
    assert pack.series_number_base == 9040 and pack.algorithm.device_uid == META["device_uid"]
    phantom = generate_brain_mr(seed=TEST_SEED_BASE + 601, tumor=True)
    series = sort_slices(phantom.datasets)
    session = ort.InferenceSession(str(pack.model_path()), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], pack.preprocess(series))
    findings = pack.postprocess(series, {"logits": logits})
    assert findings.labels.shape == phantom.labels.shape
    assert findings.voxel_ml == pytest.approx(phantom.voxel_ml, rel=1e-4)
    assert findings.summary()["tumor_present"] is True


@pytest.mark.parametrize("styles", [False, True], ids=["plain", "styled"])
def test_held_out_dice_and_tumor_volume(styles):
    measured = META["metrics"]["test_styled" if styles else "test"]
    report = evaluate(MODEL, CHECK_SEEDS, min_tumor_ml=META["min_tumor_ml"], styles=styles)
    for name, value in report["dice"].items():
        assert value >= measured["dice"][name] - MARGIN[name], name
    worst = max(_relative_errors(measured["tumor_volume"]))
    stated = STYLED_WORST_VOLUME_ERROR if styles else HELD_OUT_WORST_VOLUME_ERROR
    assert worst <= stated + 0.001, "model.json and the card disagree"
    assert measured["tumor_volume_error"]["worst_abs_percent"] == pytest.approx(100 * worst, abs=0.06)
    assert max(_relative_errors(report["tumor_volume"])) <= worst + VOLUME_MARGIN
    assert report["tumor_volume_error"]["cases"] == len(CHECK_SEEDS)


def test_thin_labels():
    labels = np.ones((9, 4, 4), np.uint8)
    thin = thin_labels(labels, 4, offset=1)
    assert [bool((thin[k] != UNLABELLED).any()) for k in range(9)] == [k % 4 == 1 for k in range(9)]


def test_training_smoke(tmp_path):
    pytest.importorskip("torch")
    from models.brain_mr.train import FitOptions, train

    meta = train(tmp_path, phantoms=1, seed=0, fit=FitOptions(steps=2, variant="unet", weighting="distance"),
                 test_phantoms=0, label_every=4)
    assert meta["trained_on"]["label_every"] == 4 and meta["trained_on"]["slices_used"] in (8, 9)
    for name in ("model.onnx", "model.pt", "model.json"):
        assert (tmp_path / name).exists()
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"image": np.zeros((2, 1, 64, 64), np.float32)})
    assert logits.shape == (2, len(CLASS_NAMES), 64, 64)


def test_training_smoke_2p5d(tmp_path):
    pytest.importorskip("torch")
    from models.brain_mr.train import FitOptions, predict, train

    meta = train(tmp_path, phantoms=1, seed=0, fit=FitOptions(steps=2, context=1, batch_size=2), test_phantoms=0)
    assert meta["architecture"]["in_channels"] == 3 and meta["architecture"]["context"] == 1
    assert meta["input"]["shape"][1] == 3
    pack = BrainMRPack(weights=tmp_path / "model.onnx")
    assert pack.context == 1
    phantom = generate_brain_mr(seed=TEST_SEED_BASE + 603, tumor=False, slices=5)
    image = pack.preprocess(sort_slices(phantom.datasets))["image"]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"image": image})
    assert image.shape == (5, 3, 128, 128) and logits.shape == (5, len(CLASS_NAMES), 128, 128)
    assert predict(session, phantom.images["T1"], phantom.voxel_ml).shape == phantom.labels.shape


def test_tumor_boundary_weights_and_tumor_slices(tmp_path):
    pytest.importorskip("torch")
    from models.brain_mr.loss_weights import tumor_boundary_weights as _tumor_boundary_weights
    from models.brain_mr.train import FitOptions, train

    labels = np.zeros((9, 9), np.uint8)
    labels[3:6, 3:6] = 6
    labels[0] = UNLABELLED
    w = _tumor_boundary_weights(labels, 3.0)
    assert w[3, 3] == pytest.approx(4.0) and w[3, 2] == pytest.approx(4.0)  # both sides of the edge
    assert w[4, 4] == pytest.approx(1.0 + 3.0 * np.exp(-0.5))  # one pixel inside
    assert w[8, 8] == pytest.approx(1.0, abs=0.01)
    assert (_tumor_boundary_weights(np.ones((5, 5), np.uint8), 3.0) == 1.0).all()
    fit = FitOptions(steps=2, batch_size=2, weighting="probability", tumor_boundary_weight=3.0,
                     tumor_slice_fraction=0.5)
    meta = train(tmp_path, phantoms=1, seed=0, fit=fit, test_phantoms=0)
    assert meta["trained_on"]["tumor_boundary_weight"] == 3.0
    assert meta["trained_on"]["tumor_slice_fraction"] == 0.5
