"""Writing results fast: overlays made from the first of their series, the report built aside in a helper process."""
from __future__ import annotations

import io
import os
import signal

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset, dcmread

from dicom_validation import dciodvfy_errors
from models.head_ct_hematoma.findings import HEMATOMA, HematomaFindings
from models.head_ct_hematoma.report import write_results
from models.phantoms.head_ct import generate_head_ct
from node.results.aside import InlineAside, ProcessAside
from node.results.references import check_cited_as, evidence_reference, headers_only
from node.packs.protocol import AlgorithmInfo, ResultContext
from node.results import OverlaySeries, Placement, build_overlay_sc

ALGORITHM = AlgorithmInfo(name="Head CT hematoma", version="0.1.0", device_uid=hd.UID(), manufacturer="ainode")
_CREATION_TIMES = {"InstanceCreationTime", "ContentTime", "TimeOfSecondaryCapture", "InstanceCreationDate",
                   "ContentDate", "DateOfSecondaryCapture"}


@pytest.fixture(scope="module")
def series() -> list[Dataset]:
    return generate_head_ct(seed=41, slices=6, hematoma=True, patient_name="山田^太郎").datasets


def _written(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def _differences(a: Dataset, b: Dataset) -> set[str]:
    """Keywords whose values differ, creation times and Contributing Equipment times aside."""
    differ = set()
    for tag in set(a.keys()) | set(b.keys()):
        keyword = (a[tag] if tag in a else b[tag]).keyword
        if keyword in _CREATION_TIMES:
            continue
        if keyword == "ContributingEquipmentSequence":
            strip = [{k: item[k] for k in item.keys() if item[k].keyword != "ContributionDateTime"} for item in a[tag]]
            other = [{k: item[k] for k in item.keys() if item[k].keyword != "ContributionDateTime"} for item in b[tag]]
            if strip != other:
                differ.add(keyword)
        elif tag not in a or tag not in b or a[tag].value != b[tag].value:
            differ.add(keyword)
    return differ


def test_overlays_after_the_first_equal_a_full_build(series: list[Dataset]) -> None:
    rng = np.random.default_rng(0)
    overlays = OverlaySeries(Placement(ALGORITHM, 9102, "AI hemorrhage overlay", series_instance_uid=hd.UID()),
                             derivation_description="test")
    first = overlays.build(series[0], rng.integers(0, 255, (512, 512, 3), dtype=np.uint8), instance_number=1)
    for number, source in enumerate(series[1:4], start=2):
        rgb = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
        uid = hd.UID()
        fast = _written(overlays.build(source, rgb, instance_number=number, sop_instance_uid=uid))
        full = _written(build_overlay_sc(
            source, rgb,
            Placement(ALGORITHM, 9102, "AI hemorrhage overlay", instance_number=number,
                      series_instance_uid=str(first.SeriesInstanceUID)),
            derivation_description="test", sop_instance_uid=uid,
        ))
        assert _differences(fast, full) == set()
        assert fast.file_meta.MediaStorageSOPInstanceUID == uid
        assert fast.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert np.array_equal(fast.pixel_array, rgb)
        assert str(fast.PatientName) == "山田^太郎"
    assert dciodvfy_errors(fast) == []


def test_a_source_of_another_patient_gets_a_fresh_overlay(series: list[Dataset]) -> None:
    other = generate_head_ct(seed=42, slices=2, hematoma=False, patient_name="Other^Patient").datasets[0]
    rgb = np.zeros((512, 512, 3), dtype=np.uint8)
    overlays = OverlaySeries(Placement(ALGORITHM, 9102, "AI hemorrhage overlay", series_instance_uid=hd.UID()))
    overlays.build(series[0], rgb, instance_number=1)
    second = overlays.build(other, rgb, instance_number=2)
    assert str(second.PatientName) == "Other^Patient"
    assert second.StudyInstanceUID == other.StudyInstanceUID


def _findings(series: list[Dataset]) -> HematomaFindings:
    classes = np.zeros((len(series), 32, 32), dtype=np.uint8)
    classes[2:5, 12:16, 10:14] = HEMATOMA
    return HematomaFindings(patch_classes=classes, hematoma_probability=(classes == HEMATOMA).astype(np.float32),
                            patch_size=16, min_patches=4)


def _evidence_uids(sr: Dataset) -> set[str]:
    return {ref.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}


@pytest.mark.parametrize("aside", ["inline", "process"])
def test_the_report_built_aside_cites_the_objects_built_beside_it(series: list[Dataset], aside: str) -> None:
    lane = ProcessAside() if aside == "process" else InlineAside()
    try:
        seg, sr, *overlays = write_results(series, _findings(series),
                                           ResultContext(algorithm=ALGORITHM, series_number_base=9100, aside=lane))
    finally:
        if isinstance(lane, ProcessAside):
            lane.close()
    assert len(overlays) == 3
    cited = _evidence_uids(sr)
    assert {seg.SOPInstanceUID, *(o.SOPInstanceUID for o in overlays)} <= cited
    assert {ds.SOPInstanceUID for ds in series} <= cited
    series_of = {study.ReferencedSeriesSequence[i].SeriesInstanceUID
                 for study in sr.CurrentRequestedProcedureEvidenceSequence
                 for i in range(len(study.ReferencedSeriesSequence))}
    assert {seg.SeriesInstanceUID, overlays[0].SeriesInstanceUID} <= series_of
    segments = [item for item in sr.iterall() if item.keyword == "ReferencedSOPInstanceUID"
                and item.value == seg.SOPInstanceUID]
    assert segments, "the report references the SEG's segment"
    assert str(sr.PatientName) == "山田^太郎"
    for ds in (seg, sr, overlays[-1]):
        assert dciodvfy_errors(ds) == [], f"{ds.SOPClassUID} fails dciodvfy"


def test_a_dead_helper_process_means_the_object_is_built_inline() -> None:
    lane = ProcessAside()
    try:
        assert lane.submit(pow, 2, 10).result() == 1024
        # the helper dies while building: the caller builds it itself (here: dies no more)
        result = lane.submit(_boom_once, os.getpid())
        assert result.result() == "built by the caller"
        assert lane.submit(pow, 3, 2).result() == 9  # a new helper process
    finally:
        lane.close()


def _boom_once(caller: int) -> str:
    if os.getpid() != caller:
        os.kill(os.getpid(), signal.SIGKILL)
    return "built by the caller"


def test_headers_only_keeps_every_attribute_but_the_pixels(series: list[Dataset]) -> None:
    header = headers_only(series[0])
    assert "PixelData" not in header and "PixelData" in series[0]
    assert set(header.keys()) == set(series[0].keys()) - {0x7FE00010}
    assert header.ImagePositionPatient == series[0].ImagePositionPatient
    assert str(header.PatientName) == "山田^太郎"


def test_evidence_reference_stands_for_a_seg() -> None:
    ref = evidence_reference(sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4", sop_instance_uid="1.2.3",
                             series_instance_uid="1.2.4", study_instance_uid="1.2.5", modality="SEG",
                             segment_numbers=(1, 2))
    assert [int(s.SegmentNumber) for s in ref.SegmentSequence] == [1, 2]
    assert ref.Modality == "SEG" and ref.StudyInstanceUID == "1.2.5"


def test_a_built_object_that_is_not_the_one_cited_is_refused() -> None:
    cited = evidence_reference(sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4", sop_instance_uid="1.2.3",
                               series_instance_uid="1.2.4", study_instance_uid="1.2.5", modality="SEG",
                               segment_numbers=(1,))
    built = Dataset()
    built.SOPClassUID, built.SOPInstanceUID, built.SeriesInstanceUID = cited.SOPClassUID, "1.2.3", "1.2.4"
    built.SegmentSequence = cited.SegmentSequence
    check_cited_as(built, cited)
    built.SOPInstanceUID = "1.2.9"
    with pytest.raises(ValueError, match="another object"):
        check_cited_as(built, cited)
