"""Bring your own model, ``format = "nnunet"``: an nnU-Net v2 results folder deployed by configuration only.

A tiny nnU-Net v2 model is made with nnU-Net's own tools: planned by
``nnUNetv2_extract_fingerprint`` / ``nnUNetv2_plan_experiment`` on a raw dataset of brain MR
phantoms, its network built by ``nnUNetTrainer`` from the plans, trained a few steps with
nnU-Net's loss and saved as ``fold_0/checkpoint_final.pth``. Deployed by configuration it
runs end to end (storescu → ainode serve → a real Orthanc); the SEG must lie on the voxels
nnU-Net's predictor marks when run by itself on the same series (read as nnU-Net reads
images, with SimpleITK from NIfTI), carry the labels of ``dataset.json`` and pass ``dciodvfy``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("nnunetv2", reason="the byom extra (nnunetv2) is not installed")

from node.config.keys import ConfigError  # noqa: E402
from node.config.parse import parse_config  # noqa: E402
from tests.byom_support import (NNUNET_LABELS, make_nnunet_model, routes_for, seg_and_report,  # noqa: E402
                                seg_label_volume, send_cases, series_nifti)
from tests.support import OrthancServer, start_node  # noqa: E402

CASES = ("nnunet",)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(2)
    return make_nnunet_model(tmp_path_factory.mktemp("nnunet"), steps=10)


@pytest.fixture(scope="module")
def node(model: Path, tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer):
    models = f'\n[models.nnunet]\nformat = "nnunet"\npath = "{model}"\nfolds = [0]\n'
    node = start_node(tmp_path_factory.mktemp("node"), pacs, models + routes_for(CASES))
    yield node
    node.stop()


def nnunet_prediction(model: Path, series: list[pydicom.Dataset], folder: Path) -> np.ndarray:
    """nnU-Net's predictor by itself on ``series`` (NIfTI read by nnU-Net's SimpleITKIO): ``(slice, row, col)``."""
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    folder.mkdir(parents=True, exist_ok=True)
    image, properties = SimpleITKIO().read_images([str(series_nifti(series, folder / "case_0000.nii.gz"))])
    predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    return np.asarray(predictor.predict_single_npy_array(image, properties, None, None, False))


@pytest.mark.e2e
def test_nnunet_seg_lies_on_the_voxels_nnunet_marks(model, node, pacs, tmp_path_factory, tmp_path: Path):
    series_of, jobs = send_cases(node, CASES, tmp_path_factory.mktemp("series"), 9300, timeout=600)
    assert jobs["nnunet"]["state"] == "delivered", (jobs["nnunet"]["stage"], jobs["nnunet"]["reason"])
    series = series_of["nnunet"]
    seg, _ = seg_and_report(pacs, series[0], tmp_path)
    expected = nnunet_prediction(model, series, tmp_path / "direct")
    assert expected.shape == (len(series), series[0].Rows, series[0].Columns)
    masks = seg_label_volume(seg, series)
    names = {value: name for name, value in NNUNET_LABELS.items()}
    present = {names[int(v)] for v in np.unique(expected) if v != 0}
    assert present and set(masks) == present, "one segment per label nnU-Net marked, named by dataset.json"
    for name, mask in masks.items():
        assert np.array_equal(mask, expected == NNUNET_LABELS[name]), name
        assert mask.sum() > 1000
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmVersion == "2.0", "the version of dataset.json"


def test_nnunet_folder_without_the_fold_is_a_one_line_error(model: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^models\.m\.path: nnU-Net folder .* has no fold_3/checkpoint_final\.pth$"):
        parse_config({"models": {"m": {"format": "nnunet", "path": str(model), "folds": [3]}}}, tmp_path)


def test_models_check_runs_the_nnunet_model_on_a_phantom(model: Path, tmp_path: Path):
    import subprocess
    import sys

    config = tmp_path / "config.toml"
    config.write_text(f'[models.nnunet]\nformat = "nnunet"\npath = "{model}"\nfolds = [0]\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "node.cli", "models", "check", "nnunet", "--config", str(config),
                             "--phantom", "brain-mr"], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SEG series 9100" in result.stdout, result.stdout
    assert "brain (SCT 12738006)" in result.stdout, result.stdout  # the label of dataset.json, with its code
