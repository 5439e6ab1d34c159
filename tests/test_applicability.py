"""Applicability (issue 30): the score, its calibration and threshold, and what a job does outside the domain.

The full figures (held-out phantoms by the dozen, other packs' phantoms, real files) are
``ainode models eval NAME --applicability N`` and each card's "Applicability" section; here
a few held-out phantoms of every pack, so that the suite stays fast.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydicom.data import get_testdata_file

from models.training.applicability import (
    FIT_SEED_BASE, HELD_OUT_SEED_BASE, PHANTOM_KINDS, calibrate, phantom_series, radiograph_variants,
    write_block,
)
from node.config import ConfigError
from models.phantoms.head_ct import generate_head_ct
from node.http.web import create_app
from node.metrics import Metrics
from node.metrics.applicability import ApplicabilityMetrics, positive_of
from node.packs.applicability import (
    FEATURES, METHOD, ApplicabilityCheck, describe, describe_slices, fit_statistics, tail_threshold,
    threshold_for,
)
from node.packs.registry import PACKS, load_pack
from node.states import SeriesState
from node.store import SqliteJobStore
from node.worker.job import run_job
from node.worker.spec import JobSpec
from tests.dicom_validation import dciodvfy_errors
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture
from tests.test_priority import _parse, _route_toml
from tests.test_store_contract import store  # noqa: F401 - a fixture (SQLite and PostgreSQL)

SR = "1.2.840.10008.5.1.4.1.1.88.34"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"


# -- the descriptor and the distance ----------------------------------------------------------


def test_the_descriptor_tells_noise_from_smooth_structure():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(128, 128))
    y, x = np.mgrid[0:128, 0:128]
    smooth = np.sin(x / 20.0) + np.cos(y / 15.0)
    d_noise, d_smooth = describe(noise), describe(smooth)
    assert d_noise.shape == (len(FEATURES),) and np.isfinite(d_noise).all()
    slope = FEATURES.index("spectrum_slope")
    assert abs(d_noise[slope]) < 0.5, "white noise has a flat spectrum"
    assert d_smooth[slope] < -2.0, "a smooth image's power falls with frequency"
    noise_index = FEATURES.index("noise")
    assert d_noise[noise_index] > 10 * d_smooth[noise_index]


def test_a_job_is_described_slice_by_slice_on_its_first_input():
    rng = np.random.default_rng(1)
    volume = rng.random((3, 2, 64, 64)).astype(np.float32)
    expected = np.array([describe(volume[i, 0]) for i in range(3)])
    assert np.allclose(describe_slices({"image": volume, "other": volume * 0}), expected)


def _check_of(rows: np.ndarray) -> ApplicabilityCheck:
    return ApplicabilityCheck.from_statistics(fit_statistics(rows))


def test_about_one_percent_of_fresh_in_domain_draws_exceed_the_threshold():
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(12, 12))
    draw = lambda n: rng.normal(size=(n, 12)) @ mixing + 5.0  # noqa: E731 (correlated features)
    check = _check_of(draw(800))
    threshold = threshold_for([check.distance(row) for row in draw(400)])
    fresh = [check.distance(row) for row in draw(4000)]
    assert 0.002 <= np.mean(np.asarray(fresh) > threshold) <= 0.03
    assert check.distance(draw(1)[0] + 4 * draw(400).std(axis=0)) > threshold, "a shifted input is outside"


@pytest.mark.parametrize("phantoms", [30, 120])
def test_the_tail_threshold_holds_about_one_percent_however_few_the_phantoms(phantoms: int):
    """The empirical 99th percentile of 30 phantoms' scores is below the true one in most draws
    (about 4 % of fresh inputs exceed it on average); the tail threshold is above it in about
    90 % of draws, and under 1 % of fresh inputs exceed it on average."""
    from scipy.stats import norm

    rng = np.random.default_rng(phantoms)
    rate = lambda t: float(norm.sf((np.log(t) + 0.6) / 0.4))  # scores log-normal(-0.6, 0.4)
    draws = [np.exp(rng.normal(-0.6, 0.4, phantoms)) for _ in range(200)]
    tail = np.array([rate(tail_threshold(s, phantoms)) for s in draws])
    empirical = np.array([rate(threshold_for(s)) for s in draws])
    assert np.mean(tail < 0.01) >= 0.8 and 0.001 < tail.mean() < 0.01, (np.mean(tail < 0.01), tail.mean())
    assert empirical.mean() > 0.015, "the plain percentile lets more through"
    assert tail_threshold([0.5] * 10, 10) == 0.5, "no excess: the quantile itself"


def test_a_job_of_some_kinds_of_slices_scores_like_one_of_all_kinds():
    """Slices of two kinds (a head's vertex and its base): a series of one kind only is as near."""
    rng = np.random.default_rng(4)
    kinds = [np.full(6, 0.0), np.full(6, 8.0)]
    calibration = np.vstack([kinds[i % 2] + rng.normal(size=6) for i in range(600)])
    check = _check_of(calibration)
    both = np.vstack([kinds[i % 2] + rng.normal(size=6) for i in range(10)])
    one_kind = np.vstack([kinds[0] + rng.normal(size=6) for _ in range(4)])
    between = np.vstack([np.full(6, 4.0) + rng.normal(size=6) for _ in range(4)])
    assert check.distance(one_kind) < 1.5 * check.distance(both)
    assert check.distance(between) > 2 * check.distance(both), "a slice unlike either kind is far"


def test_a_model_json_without_a_block_or_of_another_method_has_no_check():
    assert ApplicabilityCheck.from_meta({}) is None
    assert ApplicabilityCheck.from_meta({"applicability": {"method": "other", "threshold": 1}}) is None


# -- the calibration ---------------------------------------------------------------------------


def test_calibrate_writes_the_block_beside_the_weights_and_keeps_every_other_key(tmp_path: Path):
    source = load_pack("cxr-pneumonia").model_path()
    weights = tmp_path / "model.onnx"
    shutil.copy(source, weights)
    meta = json.loads(source.with_suffix(".json").read_text())
    meta.pop("applicability", None)
    weights.with_suffix(".json").write_text(json.dumps(meta))
    block = calibrate("cxr-pneumonia", weights, phantoms=4, folds=2)
    write_block(weights, block)
    written = json.loads(weights.with_suffix(".json").read_text())
    assert {k: v for k, v in written.items() if k != "applicability"} == meta
    assert written["applicability"]["method"] == METHOD
    assert written["applicability"]["threshold"] >= written["applicability"]["validation_scores"]["median"]
    assert written["applicability"]["validation_scores"]["jobs"] == 8
    block = written["applicability"]
    assert len(block["statistics"]["centre"]) == len(block["features"]) <= len(FEATURES)
    assert block["statistics"]["reference_shape"] == [8, len(block["features"])], "one reference per slice"
    assert load_pack("cxr-pneumonia", weights).applicability.threshold == written["applicability"]["threshold"]


def test_the_calibration_seeds_are_disjoint_from_training_and_held_out_seeds():
    for name, base in HELD_OUT_SEED_BASE.items():  # held out: base.. (plain), base + 500 000.. (styled)
        assert FIT_SEED_BASE >= base + 1_000_000, name
    block = json.loads(load_pack("cxr-nodule").model_path().with_suffix(".json").read_text())["applicability"]
    assert block["phantoms"]["plain"][0] == FIT_SEED_BASE and block["phantoms"]["styled"][1] < FIT_SEED_BASE + 1_000_000


@pytest.mark.parametrize("name", sorted(PACKS))
def test_every_shipped_pack_is_calibrated(name: str):
    pack = load_pack(name)
    block = json.loads(pack.model_path().with_suffix(".json").read_text())["applicability"]
    assert block["method"] == METHOD and block["quantile"] == 0.99
    assert pack.applicability is not None and pack.applicability.threshold == block["threshold"] > 0


# -- held-out phantoms are in the domain; the real radiograph is not ---------------------------

_FEW = {"cxr-nodule": 3, "cxr-pneumonia": 3, "head-ct-hematoma": 1, "chest-ct-landmarks": 1, "brain-mr": 1}


@pytest.mark.parametrize("name", sorted(PACKS))
def test_held_out_phantoms_plain_and_styled_are_in_the_domain(name: str):
    pack = load_pack(name)
    base = HELD_OUT_SEED_BASE[name]
    scores = [pack.applicability.score(pack.preprocess(phantom_series(PHANTOM_KINDS[name], seed, styled)))
              for styled in (False, True) for seed in range(base + 7, base + 7 + _FEW[name])]
    assert max(scores) <= pack.applicability.threshold, scores


def test_a_head_ct_that_covers_only_the_top_of_the_head_is_in_the_domain():
    pack = load_pack("head-ct-hematoma")
    for seed, slices in ((HELD_OUT_SEED_BASE["head-ct-hematoma"] + 3, 3), (HELD_OUT_SEED_BASE["head-ct-hematoma"] + 4, 8)):
        series = generate_head_ct(seed, slices=slices, hematoma=True).datasets
        assert pack.applicability.score(pack.preprocess(series)) <= pack.applicability.threshold, slices


@pytest.mark.parametrize("name", ["cxr-nodule", "cxr-pneumonia"])
def test_the_real_radiograph_turned_cropped_and_resampled_is_outside(name: str):
    pack = load_pack(name)
    cr = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    cr.BodyPartExamined = "CHEST"
    for label, ds in radiograph_variants(cr).items():
        score = pack.applicability.score(pack.preprocess([ds]))
        assert score > pack.applicability.threshold, (label, score)


# -- the job: withheld, flagged, unchanged ------------------------------------------------------


def _job(tmp_path: Path, name: str, datasets: list[pydicom.Dataset], action: str):
    folder = tmp_path / f"in-{name}-{action}"
    folder.mkdir()
    paths = []
    for i, ds in enumerate(datasets):
        paths.append(str(folder / f"{i}.dcm"))
        ds.save_as(paths[-1], enforce_file_format=True)
    outcome = run_job(JobSpec(1, name, name, None, "onnxruntime-cpu", None, tuple(paths),
                              str(tmp_path / f"out-{name}-{action}"), str(datasets[0].SeriesInstanceUID),
                              on_out_of_domain=action))
    assert outcome.ok, (outcome.stage, outcome.reason, outcome.summary.get("traceback"))
    return outcome, [pydicom.dcmread(r.path) for r in outcome.results]


def _texts(ds: pydicom.Dataset) -> list[str]:
    return [str(e.value) for e in ds.iterall() if e.keyword in ("TextValue", "CodeMeaning")]


@pytest.fixture(scope="module")
def real_cr() -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    ds.BodyPartExamined = "CHEST"
    return ds


def test_withheld_the_real_radiograph_gets_only_a_valid_report_that_it_was_not_evaluated(tmp_path, real_cr):
    outcome, objects = _job(tmp_path, "cxr-pneumonia", [real_cr], "withhold")
    assert [str(ds.SOPClassUID) for ds in objects] == [SR]
    entry = outcome.summary["applicability"]
    assert entry["out_of_domain"] and entry["action"] == "withhold" and entry["score"] > entry["threshold"]
    assert "pneumonia_present" not in outcome.summary, "no finding is made"
    texts = _texts(objects[0])
    assert any(t.startswith("Not evaluated: image outside validated domain") for t in texts), texts
    assert "Not evaluated: outside what the model was validated on" in texts
    assert not any("Pneumonia" in t or "Present" == t for t in texts), texts
    assert any(e.keyword == "GraphicType" for e in objects[0].iterall()), "OHIF 3.13 needs a region"
    assert dciodvfy_errors(objects[0]) == []


def test_flagged_every_object_says_it_is_unvalidated(tmp_path, real_cr):
    outcome, objects = _job(tmp_path, "cxr-nodule", [real_cr], "flag")
    assert outcome.summary["applicability"]["action"] == "flag"
    assert SEG in {str(ds.SOPClassUID) for ds in objects}, "the results are sent"
    assert all(ds.SeriesDescription.startswith(("UNVALIDATED", "AI ")) for ds in objects)
    assert all("UNVALIDATED" in ds.SeriesDescription for ds in objects)
    seg = next(ds for ds in objects if str(ds.SOPClassUID) == SEG)
    assert all(s.SegmentLabel.startswith("UNVALIDATED") for s in seg.SegmentSequence)
    reports = [ds for ds in objects if str(ds.SOPClassUID) == SR]
    assert len(reports) == 2 and all(any("outside" in t for t in _texts(ds)) for ds in reports)
    for ds in objects:
        assert dciodvfy_errors(ds) == [], ds.SeriesDescription


@pytest.mark.parametrize("name", sorted(PACKS))
def test_an_in_domain_phantom_gets_the_same_findings_withheld_or_ignored(tmp_path, name):
    seed = HELD_OUT_SEED_BASE[name] + 2  # styled, and with a finding (a nodule, pneumonia, a hematoma, a tumour)
    series = phantom_series(PHANTOM_KINDS[name], seed, True)  # the same instances (UIDs) for both jobs
    kept, kept_objects = _job(tmp_path, name, series, "withhold")
    plain, plain_objects = _job(tmp_path, name, series, "ignore")
    assert not kept.summary["applicability"]["out_of_domain"]
    assert {k: v for k, v in kept.summary.items() if k != "applicability"} == \
        {k: v for k, v in plain.summary.items() if k != "applicability"}
    assert [str(ds.SOPClassUID) for ds in kept_objects] == [str(ds.SOPClassUID) for ds in plain_objects]
    assert not any("UNVALIDATED" in ds.SeriesDescription for ds in kept_objects)


# -- configuration and metrics ----------------------------------------------------------------

def _routes(extra: str):
    return _parse(_route_toml(extra)).routes


def test_on_out_of_domain_is_withhold_by_default_and_refuses_other_words():
    assert _routes("")[0].on_out_of_domain == "withhold"
    assert _routes('on_out_of_domain = "flag"')[0].on_out_of_domain == "flag"
    with pytest.raises(ConfigError, match="on_out_of_domain"):
        _routes('on_out_of_domain = "drop"')


def test_metrics_count_scores_out_of_domain_jobs_and_drift():
    registry = CollectorRegistry()
    metrics = ApplicabilityMetrics(registry, window=4)
    inside = {"applicability": {"score": 0.8, "threshold": 2.0, "out_of_domain": False, "action": "none"}}
    outside = {"applicability": {"score": 7.0, "threshold": 2.0, "out_of_domain": True, "action": "withhold"}}
    for summary in ({**inside, "nodules": 1}, {**inside, "nodules": 0}, outside, outside, {**inside, "nodules": 2}):
        metrics.record("cxr-nodule", summary)
    value = lambda name, **labels: registry.get_sample_value(name, labels)  # noqa: E731
    assert value("ainode_applicability_score_count", model="cxr-nodule") == 5
    assert value("ainode_out_of_domain_total", model="cxr-nodule", action="withhold") == 2
    assert value("ainode_drift_window_jobs", model="cxr-nodule") == 4, "the window keeps the last 4"
    assert value("ainode_drift_out_of_domain_ratio", model="cxr-nodule") == 0.5
    assert value("ainode_drift_positive_ratio", model="cxr-nodule") == 0.5, "of the 2 evaluated in the window"
    assert positive_of({"hemorrhage_present": True}) is True and positive_of({"picks": {}}) is None


# -- the store: the job's score on both backends ------------------------------------------------


def _cxr_job(store) -> int:
    uid = "1.2.30.1"
    store.add_instance(f"{uid}.1", "1.2.840.10008.5.1.4.1.1.1", f"/spool/{uid}.dcm", "MOD")
    store.index_instance(f"{uid}.1", uid, "1.2.30", {"Modality": "CR", "BodyPartExamined": "CHEST"}, 0.0)
    store.set_series_state(uid, SeriesState.COMPLETE)
    (job_id,) = store.route_series(uid, [("cxr", "cxr-nodule", ["pacs"])])
    return job_id


def test_the_store_keeps_a_jobs_score_threshold_and_action(store):
    job_id = _cxr_job(store)
    assert store.get_job(job_id).applicability_score is None, "not scored yet"
    store.set_job_applicability(job_id, 4.58, 2.3, "withhold")
    job = store.get_job(job_id)
    assert (job.applicability_score, job.applicability_threshold, job.out_of_domain_action) == (4.58, 2.3, "withhold")
    assert job.as_dict()["applicability_score"] == 4.58


def test_the_job_page_and_api_show_the_score(tmp_path: Path):
    store = SqliteJobStore(tmp_path / "store.sqlite")
    job_id = _cxr_job(store)
    health = lambda: {"status": "ok", "disk": {}, "accepting_instances": True}  # noqa: E731
    with TestClient(create_app(store, Metrics(), health)) as client:
        assert "not scored" in client.get(f"/jobs/{job_id}").text
        store.set_job_applicability(job_id, 4.73, 1.85, "withhold")
        page = client.get(f"/jobs/{job_id}").text
        assert '<b id="applicability-score">4.73</b> (threshold 1.85)' in page
        assert "outside what the model was validated on" in page and "findings withheld" in page
        job = client.get(f"/api/jobs/{job_id}").json()
        assert (job["applicability_score"], job["applicability_threshold"], job["out_of_domain_action"]) == \
            (4.73, 1.85, "withhold")
    store.close()
