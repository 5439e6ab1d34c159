"""Bring your own model, ``format = "command"``: any program deployed by configuration only.

A small script (a threshold "vendor tool") is configured as ``[models.NAME] format =
"command"`` and runs end to end: dcmtk storescu → ainode serve → a real Orthanc. The SEG in
Orthanc must lie on exactly the voxels the script labels when run directly on the same
series, carry the script's label names (SNOMED codes for a name the node knows), and pass
``dciodvfy``. A command that writes DICOM gets the node's stable series; one that claims
another study, exits 1 or hangs fails its job with the stage and the reason.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from node.config.keys import ConfigError
from node.config.parse import parse_config
from tests.byom_support import (DICOM_SCRIPT, FAIL_SCRIPT, HANG_SCRIPT, THRESHOLD_SCRIPT, routes_for,
                                seg_and_report, seg_label_volume, send_cases, write_script)
from tests.support import OrthancServer, start_node

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CASES = ("threshold", "dicom", "wrong-study", "exit1", "hang")


def _models(tools: Path) -> str:
    thresh = write_script(tools, THRESHOLD_SCRIPT, "threshold.py")
    dicom = write_script(tools, DICOM_SCRIPT, "dicom_tool.py")
    fail = write_script(tools, FAIL_SCRIPT, "fail.py")
    hang = write_script(tools, HANG_SCRIPT, "hang.py")
    text = f"""
[models.threshold]
format = "command"
command = ["{thresh}", "{{input}}", "{{output}}"]
memory_mb = 3000
version = "1.2"

[models.dicom]
format = "command"
command = ["{dicom}", "{{input}}", "{{output}}"]

[models.wrong-study]
format = "command"
command = ["{dicom}", "{{input}}", "{{output}}", "wrong-study"]

[models.exit1]
format = "command"
command = ["{fail}"]

[models.hang]
format = "command"
command = ["{hang}"]
timeout_seconds = 3
"""
    return text + routes_for(CASES)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer):
    work = tmp_path_factory.mktemp("byom-command")
    node = start_node(work / "node", pacs, _models(work / "tools"))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def sent(node, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[pydicom.Dataset]], dict[str, dict]]:
    """Each case's series (sorted), sent to the node, and its job once finished."""
    return send_cases(node, CASES, tmp_path_factory.mktemp("series"), 7100)


@pytest.mark.e2e
def test_label_image_becomes_seg_on_the_voxels_the_command_marked(node, pacs, sent, tmp_path: Path):
    series_of, jobs = sent
    assert jobs["threshold"]["state"] == "delivered", jobs["threshold"]
    series = series_of["threshold"]
    source = series[0]
    seg, sr = seg_and_report(pacs, source, tmp_path)
    # the script run directly, by itself, on the same files
    direct = tmp_path / "direct"
    (direct / "in").mkdir(parents=True)
    (direct / "out").mkdir()
    for i, ds in enumerate(series):
        ds.save_as(direct / "in" / f"{i:03d}.dcm", enforce_file_format=True)
    (direct / "in" / "task.json").write_text(f'{{"info": {{"uid": "{source.SeriesInstanceUID}"}}}}')
    script = next(Path(node.workdir).parent.glob("tools/threshold.py"))
    subprocess.run([sys.executable, str(script), str(direct / "in"), str(direct / "out")], check=True)
    import nibabel

    # the script writes its label image (row, column, slice)
    expected = np.asarray(nibabel.load(str(direct / "out" / "labels.nii.gz")).dataobj).transpose(2, 0, 1)
    masks = seg_label_volume(seg, series)
    assert set(masks) == {"Bright region", "Tumor"}, "labels from the model's labels file"
    assert np.array_equal(masks["Bright region"], expected == 1)
    assert np.array_equal(masks["Tumor"], expected == 2)
    assert masks["Tumor"].sum() > 100
    codes = {s.SegmentLabel: s.SegmentedPropertyTypeCodeSequence[0] for s in seg.SegmentSequence}
    assert (codes["Tumor"].CodingSchemeDesignator, codes["Tumor"].CodeValue) == ("SCT", "108369006")
    assert codes["Bright region"].CodingSchemeDesignator == "99AINODE"
    assert codes["Bright region"].CodeMeaning == "Bright region"
    assert str(seg.SeriesNumber) == "9100" and str(sr.SeriesNumber) == "9101"
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("threshold", "1.2")


@pytest.mark.e2e
def test_dicom_output_gets_the_node_series_and_uids(pacs, sent):
    from node.worker.result_uids import stable_series_uid

    series_of, jobs = sent
    assert jobs["dicom"]["state"] == "delivered", (jobs["dicom"]["stage"], jobs["dicom"]["reason"])
    source = series_of["dicom"][0]
    results = pacs.results_by_class(source.StudyInstanceUID, source.SeriesInstanceUID)
    (sc,) = results[SECONDARY_CAPTURE]
    assert sc.SeriesInstanceUID == stable_series_uid(source.SeriesInstanceUID, "dicom", "9102")
    assert sc.SOPInstanceUID and sc.StudyInstanceUID == source.StudyInstanceUID


@pytest.mark.e2e
@pytest.mark.parametrize("case, stage, words", [
    ("wrong-study", "write", "does not reference the source study"),
    ("exit1", "inference", "exited with status 1: model weights corrupt"),
    ("hang", "inference", "did not finish in 3 s"),
])
def test_failing_command_fails_its_job_with_stage_and_reason(pacs, sent, case, stage, words):
    series_of, jobs = sent
    job = jobs[case]
    assert job["state"] == "failed", job
    assert job["stage"] == stage and words in job["reason"], job
    source = series_of[case][0]
    assert SECONDARY_CAPTURE not in pacs.results_by_class(source.StudyInstanceUID, source.SeriesInstanceUID)


def _parse(tmp_path: Path, table: dict) -> None:
    parse_config({"models": {"m": table}}, tmp_path)


@pytest.mark.parametrize("table, key, words", [
    ({"format": "docker"}, "models.m.format", "expected one of command, monai-bundle, nnunet"),
    ({"format": "command", "command": ["./no-such-tool", "{input}"]}, "models.m.command", "does not exist"),
    ({"format": "command", "command": ["no-such-program-anywhere"]}, "models.m.command", "is not on PATH"),
    ({"format": "command"}, "models.m.command", "required"),
    ({"format": "command", "command": ["true"], "timeout_seconds": 0}, "models.m.timeout_seconds", "> 0"),
    ({"format": "monai-bundle"}, "models.m.path", "required"),
    ({"format": "monai-bundle", "path": "missing"}, "models.m.path", "does not exist"),
    ({"format": "nnunet", "path": "."}, "models.m.path", "dataset.json"),
    ({"format": "command", "command": ["true"], "engine": "tensorrt"}, "models.m.engine", "auto, torch"),
])
def test_misconfigured_model_is_a_one_line_error(tmp_path: Path, table, key, words):
    with pytest.raises(ConfigError) as err:
        _parse(tmp_path, table)
    message = str(err.value)
    assert key in message and words in message and "\n" not in message, message


def test_models_check_prints_what_it_would_send(tmp_path: Path):
    write_script(tmp_path, THRESHOLD_SCRIPT, "threshold.py")
    write_script(tmp_path, FAIL_SCRIPT, "fail.py")
    config = tmp_path / "config.toml"
    config.write_text('[models.threshold]\nformat = "command"\ncommand = ["./threshold.py", "{input}", "{output}"]\n'
                      '[models.broken]\nformat = "command"\ncommand = ["./fail.py"]\n', encoding="utf-8")
    ainode = [sys.executable, "-m", "node.cli", "models", "check"]
    ok = subprocess.run([*ainode, "threshold", "--config", str(config), "--phantom", "brain-mr", "--out",
                         str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "SEG series 9100" in ok.stdout and "Tumor (SCT 108369006)" in ok.stdout, ok.stdout
    assert "SR series 9101" in ok.stdout, ok.stdout
    written = sorted((tmp_path / "out").glob("*.dcm"))
    assert {pydicom.dcmread(p).Modality for p in written} == {"SEG", "SR"}
    failed = subprocess.run([*ainode, "broken", "--config", str(config), "--phantom", "brain-mr"],
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    assert "broken: failed at inference: RuntimeError: command fail.py exited with status 1" in failed.stdout
