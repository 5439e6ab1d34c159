"""Study-level routes: one job when every required series of a study is complete, "incomplete" after the timeout."""
from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest

from models.phantoms.brain_mr import generate_brain_mr, write_phantom
from node.config import ConfigError, load_config
from node.states import JobState, StudyRouteState
from tests.support import OrthancServer, start_node, storescu, wait_for

STUDY_ROUTE = """
[[routes]]
name = "brain-t1-t2"
model = "brain-mr"
destinations = ["pacs"]
level = "study"
match = { Modality = "MR", BodyPartExamined = "BRAIN" }
requires = [{ SeriesDescription = "re:^T1" }, { SeriesDescription = "re:T2" }]
study_timeout_seconds = 6
"""


def _study(tmp_path: Path, seed: int) -> tuple[str, dict[str, list[Path]]]:
    phantom = generate_brain_mr(seed=seed, contrasts=("T1", "T2"), slices=6, size=64)
    by_series: dict[str, list[Path]] = {}
    study_uid = ""
    for path in write_phantom(phantom, tmp_path / f"study-{seed}"):
        if path.suffix == ".dcm":
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            study_uid = str(ds.StudyInstanceUID)
            by_series.setdefault("T1" if str(ds.SeriesDescription).startswith("T1") else "T2", []).append(path)
    return study_uid, by_series


def _decision(node, study_uid: str):
    rows = httpx.get(f"{node.http_url}/api/study-routes", params={"study_uid": study_uid}, timeout=10).json()
    return rows["study_routes"][0] if rows["study_routes"] else None


@pytest.mark.e2e
def test_a_study_route_fires_once_with_every_series_or_records_incomplete(tmp_path: Path):
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    node = start_node(tmp_path / "node", orthanc, STUDY_ROUTE, quiet_seconds=1.0)
    try:
        complete_study, complete = _study(tmp_path, seed=3)
        partial_study, partial = _study(tmp_path, seed=4)
        storescu(complete["T1"], node.dicom_port)
        storescu(partial["T1"], node.dicom_port)  # its T2 never comes
        storescu(complete["T2"], node.dicom_port)

        fired = wait_for(lambda: (d := _decision(node, complete_study)) and d["state"] == StudyRouteState.FIRED and d,
                         60, what="the study route to fire")
        assert len(fired["series"]) == 2 and fired["requirements_met"] == [0, 1] and fired["job_id"]
        jobs = [j for j in node.jobs() if j["route"] == "brain-t1-t2"]
        assert [j["id"] for j in jobs] == [fired["job_id"]], "one job for the whole study"
        assert jobs[0]["series_uid"] == fired["series"][0]

        incomplete = wait_for(lambda: (d := _decision(node, partial_study)) and d["state"] == StudyRouteState.INCOMPLETE
                              and d, 60, what="the incomplete decision")
        assert incomplete["job_id"] is None and incomplete["requirements_met"] == [0]
        assert "requires[1] not received" in incomplete["detail"] and "SeriesDescription=re:T2" in incomplete["detail"]
        assert [j["id"] for j in node.jobs() if j["route"] == "brain-t1-t2"] == [fired["job_id"]], \
            "no job for the incomplete study"
        metrics = node.metrics()
        assert 'ainode_study_route_decisions_total{decision="fired",route="brain-t1-t2"} 1.0' in metrics
        assert 'ainode_study_route_decisions_total{decision="incomplete",route="brain-t1-t2"} 1.0' in metrics

        # the job reads both series (12 instances). The brain-mr pack is series-level: it refuses
        # two volumes at the same positions, which shows it got both; a study-level pack would use them.
        done = wait_for(lambda: next((j for j in node.jobs() if j["id"] == fired["job_id"]
                                      and j["state"] in (JobState.DELIVERED, JobState.FAILED)), None),
                        120, what="the study job to finish")
        assert '"instances": 12' in node.log_text()
        assert done["state"] == JobState.FAILED and "of 12 slices" in done["reason"], done
    finally:
        node.stop()
        orthanc.stop()


@pytest.mark.parametrize("body, key", [
    ('level = "study"', "routes[0].requires"),
    ('level = "patient"', "routes[0].level"),
    ('requires = [{ SeriesDescription = "re:^T1" }]', "routes[0].requires"),
    ('level = "study"\nrequires = [{ SeriesDescriptio = "T1" }]', "routes[0].requires[0].SeriesDescriptio"),
    ('level = "study"\nrequires = ["T1"]', "routes[0].requires[0]"),
    ('level = "study"\nrequires = [{ SeriesDescription = "re:(" }]', "routes[0].requires[0].SeriesDescription"),
    ('level = "study"\nrequires = [{ Modality = "MR" }]\nstudy_timeout_seconds = 0', "routes[0].study_timeout_seconds"),
    ('study_timeout_seconds = 10', "routes[0].study_timeout_seconds"),
])
def test_study_route_config_errors_name_the_key(tmp_path: Path, body: str, key: str):
    config = tmp_path / "config.toml"
    config.write_text(f'[[routes]]\nname = "r"\nmodel = "brain-mr"\ndestinations = []\n{body}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.key == key, str(caught.value)


def test_a_study_route_config_loads(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(STUDY_ROUTE.replace('destinations = ["pacs"]', "destinations = []"))
    route = load_config(config).routes[0]
    assert route.level == "study" and len(route.requires) == 2 and route.study_timeout_seconds == 6.0
