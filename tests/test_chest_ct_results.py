"""Result objects of the chest CT landmark pack: the KOS builder and the KOS + SR pair."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.sr.codedict import codes

from models.chest_ct_landmarks.findings import LANDMARKS, LandmarkFindings, representative_slices
from models.chest_ct_landmarks.report import FINDING_SITES, TRACKING_IDENTIFIERS, write_results
from models.phantoms.chest_ct import generate_chest_ct
from node.packs.protocol import AlgorithmInfo, ResultContext
from node.results import Placement
from node.results.ko import DOCUMENT_TITLES, OF_INTEREST, build_key_object_selection
from tests.dicom_validation import dciodvfy_errors, viewer_problems
from tests.sr_content import content_items, coded_values, numeric_values, referenced_sop_uids

ALGORITHM = AlgorithmInfo(name="test chest landmarks", version="0.0.1", device_uid="2.25.123456789")
NAME = "山田^花子"


@pytest.fixture(scope="module")
def series():
    return generate_chest_ct(seed=21, size=64, patient_name=NAME, patient_id="PID-1").datasets


@pytest.fixture(scope="module")
def findings(series):
    n = len(series)
    scores = np.full((n, 3), 0.01, dtype=np.float32)
    picks = {"apex": n - 8, "carina": n // 2 + 5, "diaphragm": 12}
    for k, name in enumerate(LANDMARKS):
        scores[picks[name], k] = 0.9 - 0.1 * k
    return LandmarkFindings(scores, picks, representative_slices(picks["apex"], picks["diaphragm"], n))


def test_representative_slices_between_apex_and_diaphragm():
    reps = representative_slices(60, 12, 70)
    assert [r.label for r in reps] == ["upper zone", "middle zone", "lower zone"]
    assert [r.index for r in reps] == [52, 36, 20]
    assert representative_slices(60, 12, 70, (("a", 0.0), ("b", 1.0)))[1].index == 12
    with pytest.raises(ValueError):
        representative_slices(60, 12, 70, (("bad", 1.5),))


def test_kos_builder(series):
    kos = build_key_object_selection(
        [series[3], series[9], series[3]], Placement(ALGORITHM, 77, "key slices"), description="three key slices",
    )
    assert kos.Modality == "KO" and kos.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"
    assert kos.ConceptNameCodeSequence[0].CodeValue == OF_INTEREST.value == "113000"
    assert kos.StudyInstanceUID == series[0].StudyInstanceUID
    assert kos.SeriesInstanceUID != series[0].SeriesInstanceUID and kos.SeriesNumber == 77
    assert str(kos.PatientName) == NAME and kos.SpecificCharacterSet == "ISO_IR 192"
    refs = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in content_items(kos) if i.ValueType == "IMAGE"]
    assert refs == [series[3].SOPInstanceUID, series[9].SOPInstanceUID]
    evidence = kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert {i.ReferencedSOPInstanceUID for i in evidence.ReferencedSOPSequence} == set(refs)
    item = kos.ContributingEquipmentSequence[-1]
    assert item.DeviceUID == ALGORITHM.device_uid and item.PurposeOfReferenceCodeSequence[0].CodeValue == "Newcode1"
    assert dciodvfy_errors(kos) == []
    assert viewer_problems(kos) == []


def test_kos_builder_validates(series):
    assert "113013" in DOCUMENT_TITLES and "113000" in DOCUMENT_TITLES
    kos = build_key_object_selection([series[0]], Placement(ALGORITHM, 1, "x"), title=codes.cid7010.ForResearch)
    assert kos.ConceptNameCodeSequence[0].CodeMeaning == "For Research"
    with pytest.raises(ValueError, match="CID 7010"):
        build_key_object_selection([series[0]], Placement(ALGORITHM, 1, "x"), title=codes.SCT.Lung)
    with pytest.raises(ValueError, match="key_images"):
        build_key_object_selection([], Placement(ALGORITHM, 1, "x"))
    with pytest.raises(ValueError, match="SeriesNumber"):
        build_key_object_selection([series[0]], Placement(ALGORITHM, 0, "x"))


def test_write_results_kos_and_sr(series, findings):
    kos, sr = write_results(series, findings, ResultContext(ALGORITHM, series_number_base=9010))
    assert (kos.SeriesNumber, sr.SeriesNumber) == (9010, 9011)
    selected = {series[i].SOPInstanceUID for i in findings.selected_indices}
    kos_refs = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in content_items(kos) if i.ValueType == "IMAGE"}
    assert kos_refs == selected and len(selected) == 6

    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert sr.StudyInstanceUID == series[0].StudyInstanceUID and str(sr.PatientName) == NAME
    sites = coded_values(sr)["Finding Site"]
    for name in LANDMARKS:
        assert FINDING_SITES[name].meaning in sites
    assert {"Upper zone of lung", "Middle zone of lung", "Lower zone of lung"} <= set(sites)
    scores = numeric_values(sr)["Landmark classifier score"]
    assert scores == pytest.approx([0.9, 0.8, 0.7], abs=1e-5)
    texts = [str(i.TextValue) for i in content_items(sr) if i.ValueType == "TEXT"]
    for name in LANDMARKS:
        assert TRACKING_IDENTIFIERS[name] in texts
    assert referenced_sop_uids(sr) >= selected
    # each marker group references exactly its picked slice
    for group in (i for i in content_items(sr) if i.ValueType == "CONTAINER" and i.ConceptNameCodeSequence[0].CodeValue == "125007"):
        ident = [str(c.TextValue) for c in group.ContentSequence if c.ValueType == "TEXT"]
        for name in LANDMARKS:
            if TRACKING_IDENTIFIERS[name] in ident:
                refs = {c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for c in content_items(group) if c.ValueType == "IMAGE"}
                assert refs == {series[findings.picks[name]].SOPInstanceUID}
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert kos.SOPInstanceUID in evidence
    assert sr.ContributingEquipmentSequence[-1].DeviceUID == ALGORITHM.device_uid
    assert dciodvfy_errors(kos) == []
    assert viewer_problems(kos) == []
    assert dciodvfy_errors(sr) == []
    assert viewer_problems(sr) == []


def test_write_results_rejects_mismatch(series, findings):
    with pytest.raises(ValueError):
        write_results(series[:-1], findings, ResultContext(ALGORITHM))
    with pytest.raises(TypeError):
        write_results(series, {"apex": 1}, ResultContext(ALGORITHM))
