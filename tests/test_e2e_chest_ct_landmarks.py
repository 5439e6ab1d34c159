"""End to end for the chest CT landmark pack: storescu → ainode serve → a real Orthanc.

A phantom chest CT, stored to Orthanc and to the node, yields a KOS and a TID 1500 SR in its study that pass ``dciodvfy -new``,
reference instances that exist in Orthanc, and pick slices within ±1 of the phantom's
truth; a head CT phantom sent to the same node matches no route and produces no job.
"""
from __future__ import annotations

import io
import json
import re
import time

import httpx
import pydicom
import pytest

from models.chest_ct_landmarks.findings import LANDMARKS
from models.chest_ct_landmarks.report import TRACKING_IDENTIFIERS
from models.chest_ct_landmarks.train import TEST_SEED_BASE
from models.phantoms.chest_ct import generate_chest_ct, write_phantom
from models.phantoms.head_ct import generate_head_ct
from models.phantoms.head_ct import write_phantom as write_head_phantom
from tests.dicom_validation import dciodvfy_errors
from tests.sr_content import content_items
from tests.support import OrthancServer, start_node, storescu, wait_for

pytestmark = pytest.mark.e2e

KOS = "1.2.840.10008.5.1.4.1.1.88.59"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
QUIET_SECONDS = 2
CHEST_SEED = TEST_SEED_BASE + 901  # a held-out seed, never trained on (see the card for the error rate)
NAME = "佐藤^一郎=サトウ^イチロウ"


ROUTES = """
[[routes]]
name = "chest-ct"
model = "chest-ct-landmarks"
destinations = ["pacs"]
match = { Modality = "CT", BodyPartExamined = "CHEST" }
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer):
    node = start_node(tmp_path_factory.mktemp("node"), pacs, ROUTES, quiet_seconds=QUIET_SECONDS)
    yield node
    node.stop()


def _group_picks(sr: pydicom.Dataset) -> dict[str, str]:
    """Landmark → SOP Instance UID referenced by its measurement group."""
    picks = {}
    for item in content_items(sr):
        if item.ValueType != "CONTAINER" or item.ConceptNameCodeSequence[0].CodeValue != "125007":
            continue
        texts = [str(c.TextValue) for c in item.ContentSequence if c.ValueType == "TEXT"]
        refs = [c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for c in content_items(item) if c.ValueType == "IMAGE"]
        for name in LANDMARKS:
            if TRACKING_IDENTIFIERS[name] in texts:
                picks[name] = refs[0]
    return picks


def test_chest_ct_gets_kos_and_sr_and_head_ct_is_not_routed(node, pacs, tmp_path):
    chest = generate_chest_ct(seed=CHEST_SEED, patient_name=NAME, patient_id="PID-CHEST-1")
    chest_files = sorted(p for p in write_phantom(chest, tmp_path / "chest") if p.suffix == ".dcm")
    head = generate_head_ct(seed=5, slices=6, hematoma=False)
    head_files = sorted(p for p in write_head_phantom(head, tmp_path / "head") if p.suffix == ".dcm")
    source = chest.datasets[0]

    storescu(chest_files, pacs.dicom_port, called_ae=pacs.ae_title)  # the modality stores to the PACS
    storescu(chest_files, node.dicom_port)  # ... and to the node
    storescu(head_files, node.dicom_port)
    head_sent = time.monotonic()

    def delivered():
        jobs = [j for j in node.jobs() if j["series_uid"] == source.SeriesInstanceUID]
        return jobs[0] if jobs and jobs[0]["state"] in ("delivered", "failed") else None

    job = wait_for(delivered, 180, what="chest CT job")
    assert job["state"] == "delivered", job
    assert job["model"] == "chest-ct-landmarks"

    # The head CT: complete after its quiet period, matched by no route, so no job at all.
    time.sleep(max(0.0, QUIET_SECONDS + 6.0 - (time.monotonic() - head_sent)))
    head_uid = head.datasets[0].SeriesInstanceUID
    assert [j for j in node.jobs() if j["series_uid"] == head_uid] == []
    ignored = [json.loads(line) for line in node.log_text().splitlines()
               if head_uid in line and "series ignored" in line]
    assert ignored, "the head CT series was declared complete and ignored"
    assert re.search(r'ainode_series_routed_total\{outcome="ignored"\} 1', node.metrics())
    detail = httpx.get(f"{node.http_url}/api/series/{head_uid}", timeout=10).json()
    assert detail["state"] == "ignored" and detail["jobs"] == []

    # The results, fetched back from Orthanc.
    results: dict[str, list[pydicom.Dataset]] = {}
    in_study = pacs.instances_of_study(source.StudyInstanceUID)
    for inst in in_study:
        if inst["SeriesTags"].get("SeriesInstanceUID") == source.SeriesInstanceUID:
            continue
        ds = pydicom.dcmread(io.BytesIO(pacs.instance_file(inst["ID"])))
        results.setdefault(str(ds.SOPClassUID), []).append(ds)
    assert set(results) == {KOS, COMPREHENSIVE_3D_SR}
    (kos,) = results[KOS]
    (sr,) = results[COMPREHENSIVE_3D_SR]
    for ds in (kos, sr):
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], f"{ds.SOPClassUID} fails dciodvfy"
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientName == NAME and ds.PatientID == "PID-CHEST-1"
        assert ds.ContributingEquipmentSequence[-1].DeviceUID

    # Every referenced instance exists in Orthanc.
    in_orthanc = {inst["MainDicomTags"]["SOPInstanceUID"] for inst in in_study}
    kos_refs = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in content_items(kos) if i.ValueType == "IMAGE"}
    sr_refs = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in content_items(sr) if i.ValueType == "IMAGE"}
    assert kos_refs and sr_refs
    assert kos_refs <= in_orthanc and sr_refs <= in_orthanc

    # The picks: within ±1 slice of the phantom's truth; and the KOS holds them.
    index = {ds.SOPInstanceUID: i for i, ds in enumerate(chest.datasets)}
    picks = _group_picks(sr)
    assert set(picks) == set(LANDMARKS)
    for name in LANDMARKS:
        offset = index[picks[name]] - chest.landmarks[name]
        assert abs(offset) <= 1, f"{name}: pick {index[picks[name]]}, truth {chest.landmarks[name]}"
    assert set(picks.values()) <= kos_refs
