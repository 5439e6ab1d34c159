"""Read-ahead: a worker runs a slice-wise model on a series' slices while the series arrives.

The job at completion takes what was read ahead and runs only the rest; its results must
be those of a job that read everything itself. Worker-level tests run the worker's
functions in this process on the project's head CT phantoms; the node-level test sends a
series with dcmtk ``storescu`` to a real node delivering to a real Orthanc.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.phantoms.cxr import generate_cxr, write_phantom as write_cxr
from models.phantoms.head_ct import generate_head_ct, write_phantom
from node.worker import reading_ahead as worker
from node.worker.slice_cache import CachedFile, SliceCache, file_identity
from node.worker import JobSpec, read_ahead, run_job
from tests.support import OrthancServer, start_node, storescu, wait_for

SLICES = 12


def _series(tmp_path: Path, seed: int = 11) -> tuple[list[str], str]:
    phantom = generate_head_ct(seed=seed, slices=SLICES, hematoma=True)
    files = sorted(str(p) for p in write_phantom(phantom, tmp_path / f"ct-{seed}") if p.suffix == ".dcm")
    return files, str(phantom.datasets[0].SeriesInstanceUID)


def _spec(job_id: int, paths: list[str], out: Path, series_uid: str, pack: str = "head-ct-hematoma") -> JobSpec:
    return JobSpec(job_id=job_id, model=pack, pack=pack, weights=None, engine="onnxruntime-cpu", batch_size=None,
                   instance_paths=tuple(paths), out_dir=str(out / f"job-{job_id}"), series_uid=series_uid)


def _pixels_by_modality(outcome) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for _uid, _cls, path, _model in outcome.results:
        ds = pydicom.dcmread(path)
        if "PixelData" in ds:
            found.setdefault(str(ds.Modality), []).append(bytes(ds.PixelData))
    return found


@pytest.fixture(autouse=True)
def _empty_cache(monkeypatch):
    monkeypatch.setattr(worker, "_SLICES", SliceCache(64 * 1024 * 1024))


def test_a_job_takes_the_slices_read_ahead_and_writes_what_a_full_run_writes(tmp_path):
    files, series_uid = _series(tmp_path)
    plain = run_job(_spec(1, files, tmp_path, series_uid))
    assert plain.ok, plain.reason
    assert "slices_read_ahead" not in plain.summary

    first = read_ahead(_spec(0, files[:5], tmp_path, series_uid))
    second = read_ahead(_spec(0, files[:8], tmp_path, series_uid))  # the first five are not read twice
    assert (first.slice_wise, first.images, first.reason) == (True, 5, None)
    assert (second.images, second.reason) == (3, None)

    # the applicability descriptors are made as the slices are read ahead, not again at completion
    entries = list(worker._SLICES._entries.values())
    assert len(entries) == 8 and all(e.descriptors is not None and len(e.descriptors) == 1 for e in entries)

    ahead = run_job(_spec(2, files, tmp_path, series_uid))
    assert ahead.ok, ahead.reason
    assert ahead.summary["slices_read_ahead"] == 8
    assert {k: v for k, v in ahead.summary.items() if k != "slices_read_ahead"} == plain.summary
    assert plain.summary["hematoma_patches"] > 0
    assert plain.summary["applicability"]["score"] > 0  # the score, equal above, is really computed
    assert _pixels_by_modality(ahead) == _pixels_by_modality(plain)  # SEG and every overlay, pixel for pixel
    assert len(worker._SLICES) == 0  # the job took its entries out


def test_slices_read_ahead_without_descriptors_are_scored_at_completion(tmp_path):
    """An entry without descriptors (read ahead by a pack without a check, say): the job
    preprocesses the whole series again for its verdict, and the score is the same."""
    files, series_uid = _series(tmp_path, seed=13)
    plain = run_job(_spec(1, files, tmp_path, series_uid))
    read_ahead(_spec(0, files[:6], tmp_path, series_uid))
    for entry in list(worker._SLICES._entries.values())[:2]:
        entry.descriptors = None
    ahead = run_job(_spec(2, files, tmp_path, series_uid))
    assert ahead.ok, ahead.reason
    assert ahead.summary["applicability"] == plain.summary["applicability"]


def test_a_description_that_fails_at_read_ahead_keeps_the_outputs(tmp_path, monkeypatch):
    """The applicability description failing while slices are read ahead loses only the descriptors:
    the outputs stay for the job, which describes the slices itself (same score as a full run)."""
    from node.packs.applicability import ApplicabilityCheck

    files, series_uid = _series(tmp_path, seed=14)
    plain = run_job(_spec(1, files, tmp_path, series_uid))

    def broken(self, inputs):
        raise FloatingPointError("describe failed")

    with monkeypatch.context() as patch:
        patch.setattr(ApplicabilityCheck, "describe", broken)
        outcome = read_ahead(_spec(0, files[:6], tmp_path, series_uid))
    assert (outcome.images, outcome.reason) == (6, None)
    entries = list(worker._SLICES._entries.values())
    assert all(e.outputs is not None and e.descriptors is None for e in entries)
    ahead = run_job(_spec(2, files, tmp_path, series_uid))
    assert ahead.ok and ahead.summary["slices_read_ahead"] == 6
    assert ahead.summary["applicability"] == plain.summary["applicability"]


def test_a_file_replaced_after_it_was_read_ahead_is_read_again(tmp_path):
    files, series_uid = _series(tmp_path, seed=12)
    before = run_job(_spec(9, files, tmp_path, series_uid))
    assert read_ahead(_spec(0, files, tmp_path, series_uid)).images == SLICES
    # the same path, other content: brighter by 60 HU everywhere (more of the brain in the hematoma range)
    ds = pydicom.dcmread(files[SLICES // 2])
    pixels = ds.pixel_array.astype(np.int32) + int(round(60 / float(ds.RescaleSlope)))
    ds.PixelData = pixels.astype(ds.pixel_array.dtype).tobytes()
    ds.save_as(files[SLICES // 2], enforce_file_format=True)

    ahead = run_job(_spec(1, files, tmp_path, series_uid))
    worker._SLICES = SliceCache(64 * 1024 * 1024)
    plain = run_job(_spec(2, files, tmp_path, series_uid))
    assert ahead.ok and plain.ok
    assert ahead.summary["slices_read_ahead"] == SLICES - 1
    assert ahead.summary == {**plain.summary, "slices_read_ahead": SLICES - 1}
    assert _pixels_by_modality(ahead) == _pixels_by_modality(plain)
    assert _pixels_by_modality(plain)["SEG"] != _pixels_by_modality(before)["SEG"]  # the change shows


def test_a_pack_that_is_not_slice_wise_does_not_read_ahead(tmp_path):
    radiograph = generate_cxr(seed=3, nodules=0, pneumonia=True, size=256)
    path = write_cxr(radiograph, tmp_path / "cxr")[0]
    outcome = read_ahead(_spec(0, [str(path)], tmp_path, "", pack="cxr-pneumonia"))
    assert (outcome.slice_wise, outcome.images, outcome.reason) == (False, 0, None)
    assert len(worker._SLICES) == 0


def test_a_failed_read_ahead_is_returned_and_the_job_reads_for_itself(tmp_path):
    files, series_uid = _series(tmp_path, seed=13)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    failed = read_ahead(_spec(0, [*files[:4], str(garbage)], tmp_path, series_uid))
    assert failed.slice_wise and failed.images == 0 and failed.reason
    job = run_job(_spec(1, files, tmp_path, series_uid))
    assert job.ok, job.reason
    assert "slices_read_ahead" not in job.summary


def test_slice_cache_keeps_its_byte_budget_least_recently_used_first_out(tmp_path):
    cache = SliceCache(max_bytes=3000)
    identities = []
    for i in range(4):
        path = tmp_path / f"f{i}"
        path.write_bytes(b"x" * (i + 1))
        identities.append(file_identity(str(path)))
    image = pydicom.Dataset()
    image.PixelData = b"\0" * 1000
    for identity in identities[:3]:
        cache.put("m", identity, CachedFile.of([image]))
    assert cache.get("m", identities[0]) is not None  # now the most recently used
    cache.put("m", identities[3], CachedFile.of([image]))
    assert cache.nbytes == 3000 and len(cache) == 3
    assert cache.get("m", identities[1]) is None  # the least recently used went out
    assert cache.get("other model", identities[0]) is None
    assert cache.take("m", identities[0]) is not None and cache.take("m", identities[0]) is None
    assert file_identity(str(tmp_path / "missing")) is None


@pytest.mark.e2e
def test_a_node_reads_a_head_ct_ahead_while_it_arrives(pacs: OrthancServer, tmp_path):
    routes = ('[[routes]]\nname = "head-ct"\nmodel = "head-ct-hematoma"\ndestinations = ["pacs"]\n'
              'match = { Modality = "CT", BodyPartExamined = "HEAD" }\n')
    node = start_node(tmp_path / "node", pacs, routes)
    try:
        files, series_uid = _series(tmp_path, seed=16)
        storescu([Path(f) for f in files], node.dicom_port)

        def delivered():
            jobs = [j for j in node.jobs() if j["series_uid"] == series_uid]
            return jobs[0] if jobs and jobs[0]["state"] in ("delivered", "failed") else None

        job = wait_for(delivered, 120, what="the head CT's job")
        assert job["state"] == "delivered", job
        counted = re.search(r'ainode_slices_read_ahead_total\{model="head-ct-hematoma"\} ([0-9.]+)', node.metrics())
        assert counted and 1 <= float(counted.group(1)) <= SLICES
        # the one worker ran the read-aheads before the job: the job took every slice they read
        written = [line for line in node.log_text().splitlines() if '"job written"' in line]
        assert written and f'"slices_read_ahead": {int(float(counted.group(1)))}' in written[-1]
    finally:
        node.stop()


def _runner(tmp_path: Path, routes: list[dict]) -> "Runner":
    from node.config import parse_config
    from node.metrics import Metrics
    from node.pipeline.run import Runner
    from node.store.spool import Spool
    from node.store import JobStore

    config = parse_config({"node": {"data_dir": str(tmp_path / "data")}, "routes": routes,
                           "destinations": [{"name": "pacs", "host": "127.0.0.1", "port": 104, "ae_title": "PACS"}]},
                          tmp_path)
    return Runner(config, JobStore(tmp_path / "jobs.sqlite"), Spool(tmp_path / "spool"), Metrics())


def test_filing_wakes_the_runner_only_when_a_routed_model_may_read_ahead(tmp_path):
    head_ct = {"name": "head-ct", "model": "head-ct-hematoma", "destinations": ["pacs"], "match": {"Modality": "CT"}}
    idle = _runner(tmp_path / "none", [])
    reading = _runner(tmp_path / "ct", [head_ct])
    try:
        idle.instances_filed()
        reading.instances_filed()
        assert not idle._loop._wake.is_set()  # nothing routed: filing an instance costs the runner nothing
        assert reading._loop._wake.is_set()
        reading._loop._wake.clear()
        reading._not_slice_wise.add("head-ct-hematoma")  # as a worker answers for a volume-wide pack
        reading.instances_filed()
        assert not reading._loop._wake.is_set()
    finally:
        idle.stop()
        reading.stop()
