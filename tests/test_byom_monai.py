"""Bring your own model, ``format = "monai-bundle"``: a MONAI bundle deployed by configuration only.

A small bundle is written in MONAI's bundle layout (``configs/metadata.json``,
``configs/inference.json``, ``models/model.pt``) and its UNet trained briefly on brain MR
phantoms through the bundle's own preprocessing. Deployed twice (``engine = "torch"`` and
``engine = "auto"``: the network on ONNX Runtime, MONAI's pre- and post-processing kept) it
runs end to end: storescu → ainode serve → a real Orthanc. Each SEG must lie on the voxels
the bundle marks when MONAI runs it by itself (its own ``LoadImaged`` on the same series as
NIfTI, its ``SaveImaged`` output), carry the labels of the bundle's ``channel_def``, and pass
``dciodvfy``. A bundle whose network does not load fails its job at ``load`` with the reason.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("monai", reason="the byom extra (monai) is not installed")

from node.config.keys import ConfigError  # noqa: E402
from node.config.parse import parse_config  # noqa: E402
from tests.byom_support import (make_bundle, routes_for, seg_and_report, seg_label_volume, send_cases,  # noqa: E402
                                series_nifti)
from tests.support import OrthancServer, start_node  # noqa: E402

CASES = ("bundle-torch", "bundle-onnx", "bundle-broken")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle, trained briefly (25 steps) on two phantoms."""
    import torch

    torch.set_num_threads(2)
    work = tmp_path_factory.mktemp("bundle")
    return make_bundle(work / "phantom_brain_bundle", work / "training", steps=25)


@pytest.fixture(scope="module")
def broken_bundle(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same bundle with weights of another network (``network_def`` cannot load them)."""
    import shutil

    import torch

    root = tmp_path_factory.mktemp("broken") / "bundle"
    shutil.copytree(bundle, root)
    torch.save({"conv.weight": torch.zeros(3, 1, 3, 3, 3)}, root / "models" / "model.pt")
    return root


@pytest.fixture(scope="module")
def node(bundle: Path, broken_bundle: Path, tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer):
    models = f"""
[models.bundle-torch]
format = "monai-bundle"
path = "{bundle}"
engine = "torch"

[models.bundle-onnx]
format = "monai-bundle"
path = "{bundle}"

[models.bundle-broken]
format = "monai-bundle"
path = "{broken_bundle}"
"""
    node = start_node(tmp_path_factory.mktemp("node"), pacs, models + routes_for(CASES))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def sent(node, tmp_path_factory: pytest.TempPathFactory):
    return send_cases(node, CASES, tmp_path_factory.mktemp("series"), 8300, timeout=400)


def monai_prediction(bundle: Path, series: list[pydicom.Dataset], folder: Path) -> np.ndarray:
    """The bundle run by MONAI alone on ``series`` (as NIfTI): its saved prediction, ``(slice, row, col)``."""
    import nibabel
    import torch
    from monai.bundle import ConfigParser

    folder.mkdir(parents=True, exist_ok=True)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(folder)
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    network.eval()
    pre, inferer = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("inferer")
    post = parser.get_parsed_content("postprocessing")
    with torch.no_grad():
        d = pre({"image": str(series_nifti(series, folder / "series.nii.gz"))})
        d["pred"] = inferer(d["image"][None], network)[0]
        post(d)
    (saved,) = (folder / "eval").glob("*.nii.gz")
    data = np.asarray(nibabel.load(str(saved)).dataobj)
    while data.ndim > 3:
        data = data[..., 0] if data.shape[-1] == 1 else data[0]
    return np.rint(data).astype(np.int32).transpose(2, 1, 0)


@pytest.mark.e2e
@pytest.mark.parametrize("case, agreement", [("bundle-torch", 1.0), ("bundle-onnx", 0.999)])
def test_bundle_seg_lies_on_the_voxels_monai_marks(bundle, pacs, sent, case, agreement, tmp_path: Path):
    series_of, jobs = sent
    assert jobs[case]["state"] == "delivered", (jobs[case]["stage"], jobs[case]["reason"])
    assert jobs[case]["engine"] == ("torch" if case == "bundle-torch" else "onnxruntime-cpu")
    series = series_of[case]
    source = series[0]
    seg, _ = seg_and_report(pacs, source, tmp_path)
    expected = monai_prediction(bundle, series, tmp_path / "monai")
    masks = seg_label_volume(seg, series)
    names = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]["outputs"]["pred"]["channel_def"]
    present = {names[str(v)] for v in np.unique(expected) if v != 0}
    assert present and set(masks) == present, "one segment per label the bundle marked, named by its channel_def"
    for value, name in names.items():
        if name in masks:
            same = np.mean(masks[name] == (expected == int(value)))
            assert same >= agreement, f"{name}: {same:.5f} of voxels agree with MONAI's own run"
            assert masks[name].sum() > 1000
    codes = {s.SegmentLabel: s.SegmentedPropertyTypeCodeSequence[0] for s in seg.SegmentSequence}
    if "brain" in codes:
        assert (codes["brain"].CodingSchemeDesignator, codes["brain"].CodeValue) == ("SCT", "12738006")
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "0.1.0"


@pytest.mark.e2e
def test_bundle_whose_network_does_not_load_fails_at_load(sent):
    _, jobs = sent
    job = jobs["bundle-broken"]
    assert job["state"] == "failed" and job["stage"] == "load", job
    assert "state_dict" in job["reason"], job["reason"]


def test_bundle_without_weights_is_a_one_line_error(bundle: Path, tmp_path: Path):
    import shutil

    root = tmp_path / "no-weights"
    shutil.copytree(bundle, root)
    (root / "models" / "model.pt").unlink()
    with pytest.raises(ConfigError, match=r"^models\.m\.path: MONAI bundle .* has no models/model\.pt"):
        parse_config({"models": {"m": {"format": "monai-bundle", "path": str(root)}}}, tmp_path)


def test_missing_byom_extra_is_named_at_start(bundle: Path, tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(f'[models.m]\nformat = "monai-bundle"\npath = "{bundle}"\n', encoding="utf-8")
    code = ("import sys; sys.modules['monai'] = None; from node.cli import main; "
            f"sys.argv = ['ainode', 'check-config', {str(config)!r}]; sys.exit(main())")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "models.m.format" in lines[0] and "pip install 'ainode[byom]'" in lines[0], lines[0]


def test_models_check_runs_the_bundle_on_a_phantom(bundle: Path, tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(f'[models.brain]\nformat = "monai-bundle"\npath = "{bundle}"\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "node.cli", "models", "check", "brain", "--config", str(config),
                             "--phantom", "brain-mr"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "engine onnxruntime-cpu" in result.stdout, result.stdout
    assert "SEG series 9100" in result.stdout and "brain (SCT 12738006)" in result.stdout, result.stdout
