"""Result writers: SEG, SR and SC of the head CT hematoma model, and the generic builders."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterator

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.sr.codedict import codes

from dicom_validation import dciodvfy_errors, viewer_problems
from sr_content import content_items
from models.head_ct_hematoma.findings import HEMATOMA, HematomaFindings
from models.head_ct_hematoma.report import (
    NUMBER_OF_AFFECTED_SLICES,
    NUMBER_OF_HEMATOMA_PATCHES,
    write_results,
)
from models.phantoms.head_ct import generate_head_ct
from node.packs.protocol import AlgorithmInfo, ResultContext
from node.results import (
    PROCESSING_ALGORITHM,
    FindingGroup,
    Placement,
    build_binary_seg,
    build_measurement_report,
    build_overlay_sc,
)

JAPANESE_NAME = "山田^太郎"
SLICES = 6
BASE = 9100
ALGORITHM = AlgorithmInfo(
    name="Head CT hematoma", version="0.1.0", device_uid=hd.UID(), manufacturer="ainode"
)


@dataclass
class Case:
    series: list[Dataset]
    findings: HematomaFindings
    objects: list[Dataset]

    @property
    def seg(self) -> Dataset:
        return self.objects[0]

    @property
    def sr(self) -> Dataset:
        return self.objects[1]

    @property
    def overlays(self) -> list[Dataset]:
        return self.objects[2:]


def _case(seed: int, hematoma: bool, patient_name: str) -> Case:
    phantom = generate_head_ct(
        seed=seed, slices=SLICES, hematoma=hematoma, patient_name=patient_name
    )
    findings = HematomaFindings(
        patch_classes=phantom.patch_labels.astype(np.uint8),
        hematoma_probability=(phantom.patch_labels == HEMATOMA).astype(np.float32),
    )
    context = ResultContext(algorithm=ALGORITHM, series_number_base=BASE)
    return Case(phantom.datasets, findings, write_results(phantom.datasets, findings, context))


@pytest.fixture(scope="module")
def positive() -> Case:
    case = _case(seed=1, hematoma=True, patient_name=JAPANESE_NAME)
    assert case.findings.present
    return case


@pytest.fixture(scope="module")
def negative() -> Case:
    case = _case(seed=2, hematoma=False, patient_name="Phantom^Negative")
    assert not case.findings.present
    return case


def _content_items(items: Iterator[Dataset] | list[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _content_items(item.get("ContentSequence", []))


def _items_named(sr: Dataset, value: str) -> list[Dataset]:
    return [
        item
        for item in _content_items(sr.ContentSequence)
        if "ConceptNameCodeSequence" in item
        and item.ConceptNameCodeSequence[0].CodeValue == value
    ]


def _numeric(sr: Dataset, concept: hd.sr.CodedConcept) -> float:
    (item,) = _items_named(sr, concept.value)
    return float(item.MeasuredValueSequence[0].NumericValue)


def _presence(sr: Dataset) -> str:
    (item,) = [i for i in _items_named(sr, "1386000") if i.ValueType == "CODE" and
               i.ConceptCodeSequence[0].CodeValue in ("52101004", "272519000")]
    return str(item.ConceptCodeSequence[0].CodeMeaning)


def _round_trip(ds: Dataset) -> tuple[Dataset, bytes]:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    raw = buffer.getvalue()
    return dcmread(io.BytesIO(raw)), raw


# --- the hematoma model's objects -------------------------------------------------------


@pytest.mark.parametrize("case_name", ["positive", "negative"])
def test_every_object_passes_dciodvfy(case_name: str, request: pytest.FixtureRequest) -> None:
    case: Case = request.getfixturevalue(case_name)
    for ds in case.objects:
        assert dciodvfy_errors(ds) == [], ds.Modality
        assert viewer_problems(ds) == [], ds.Modality


def test_the_hemorrhage_is_outlined_on_each_affected_slice(positive: Case) -> None:
    """Each region of hematoma patches is a POLYLINE on its slice; the SEG's Tracking UID is drawn."""
    scoords = [i for i in content_items(positive.sr) if i.ValueType == "SCOORD"]
    assert scoords and all(s.GraphicType == "POLYLINE" for s in scoords)
    on = {str(s.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for s in scoords}
    assert on == {str(positive.series[i].SOPInstanceUID) for i in positive.findings.affected_slices}
    segment_uid = str(positive.seg.SegmentSequence[0].TrackingUID)
    groups = [i for i in content_items(positive.sr) if i.ValueType == "CONTAINER"
              and i.ConceptNameCodeSequence[0].CodeValue == "125007"]
    drawn_uids = {str(c.UID) for g in groups for c in g.ContentSequence if c.ValueType == "UIDREF"
                  and any(x.ValueType == "SCOORD" for x in g.ContentSequence)}
    assert segment_uid in drawn_uids
    assert positive.seg.SegmentSequence[0].RecommendedDisplayCIELabValue is not None


def test_object_kinds_and_series_numbers(positive: Case, negative: Case) -> None:
    assert [ds.Modality for ds in positive.objects[:2]] == ["SEG", "SR"]
    assert positive.seg.SeriesNumber == BASE
    assert positive.sr.SeriesNumber == BASE + 1
    assert len(positive.overlays) == len(positive.findings.affected_slices) > 0
    assert {ds.SeriesNumber for ds in positive.overlays} == {BASE + 2}
    assert len({ds.SeriesInstanceUID for ds in positive.overlays}) == 1
    assert len(negative.objects) == 2  # no hematoma slice, no overlay


def test_seg_keeps_one_frame_per_slice(positive: Case) -> None:
    seg = positive.seg
    assert seg.SegmentationType == "BINARY"
    assert int(seg.NumberOfFrames) == len(positive.series) == SLICES
    frame_sources = [
        frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for frame in seg.PerFrameFunctionalGroupsSequence
    ]
    # highdicom orders the frames by position; each frame names its source slice
    slice_of = {ds.SOPInstanceUID: i for i, ds in enumerate(positive.series)}
    assert sorted(slice_of[uid] for uid in frame_sources) == list(range(SLICES))
    pixels = seg.pixel_array.reshape(SLICES, seg.Rows, seg.Columns).astype(bool)
    patches = positive.findings.hematoma_mask.repeat(16, axis=1).repeat(16, axis=2)
    expected = np.stack([patches[slice_of[uid]] for uid in frame_sources])
    np.testing.assert_array_equal(pixels, expected)
    assert any(not frame.any() for frame in pixels)  # empty frames are kept
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "Hemorrhage"
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "50960005"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == ALGORITHM.name


def test_negative_seg_is_empty_and_sr_says_absent(negative: Case) -> None:
    seg = negative.seg
    assert int(seg.NumberOfFrames) == SLICES
    assert not seg.pixel_array.any()
    assert _presence(negative.sr) == "Absent"
    assert _numeric(negative.sr, NUMBER_OF_HEMATOMA_PATCHES) == 0
    assert _numeric(negative.sr, NUMBER_OF_AFFECTED_SLICES) == 0
    assert _items_named(negative.sr, "121191") == []  # no Referenced Segment


def test_positive_sr_says_present_and_counts_match(positive: Case) -> None:
    sr = positive.sr
    findings = positive.findings
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert _presence(sr) == "Present"
    assert _numeric(sr, NUMBER_OF_HEMATOMA_PATCHES) == findings.hematoma_patch_count > 0
    assert _numeric(sr, NUMBER_OF_AFFECTED_SLICES) == len(findings.affected_slices)
    (segment,) = _items_named(sr, "121191")
    reference = segment.ReferencedSOPSequence[0]
    assert reference.ReferencedSOPInstanceUID == positive.seg.SOPInstanceUID
    assert reference.ReferencedSegmentNumber == 1
    sources = {
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for item in _items_named(sr, "121233")
    }
    assert sources == {positive.series[i].SOPInstanceUID for i in findings.affected_slices}
    tracking, *regions = _items_named(sr, "112039")  # the finding, then one group per outlined region
    assert tracking.TextValue == "Intracranial hemorrhage"
    assert regions and all(r.TextValue.startswith("Intracranial hemorrhage, image ") for r in regions)
    tracking_uid, *region_uids = _items_named(sr, "112040")
    assert tracking_uid.UID == positive.seg.SegmentSequence[0].TrackingUID
    assert [u.UID for u in region_uids].count(tracking_uid.UID) == 1  # the largest region: the finding drawn
    (observer_uid,) = _items_named(sr, "121012")  # Device Observer UID
    assert observer_uid.UID == ALGORITHM.device_uid
    evidence = {
        ref.ReferencedSOPInstanceUID
        for seq in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
        for study in sr.get(seq, [])
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert {ds.SOPInstanceUID for ds in positive.series} <= evidence
    assert positive.seg.SOPInstanceUID in evidence


def test_sc_references_its_source_image(positive: Case) -> None:
    for index, sc in zip(positive.findings.affected_slices, positive.overlays):
        source = positive.series[index]
        (item,) = sc.SourceImageSequence
        assert item.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert item.ReferencedSOPClassUID == source.SOPClassUID
        assert sc.PhotometricInterpretation == "RGB"
        assert (sc.Rows, sc.Columns) == (source.Rows, source.Columns)
        assert sc.BodyPartExamined == source.BodyPartExamined
        assert sc.DerivationDescription
        rgb = sc.pixel_array
        red = (rgb[..., 0] == 255) & (rgb[..., 1] == 0) & (rgb[..., 2] == 0)
        assert red.any()  # the hematoma outline


def test_processing_algorithm_item(positive: Case) -> None:
    for ds in positive.objects:
        items = [
            item
            for item in ds.ContributingEquipmentSequence
            if item.PurposeOfReferenceCodeSequence[0].CodeValue == PROCESSING_ALGORITHM.value
        ]
        assert len(items) == 1, ds.Modality
        (item,) = items
        purpose = item.PurposeOfReferenceCodeSequence[0]
        assert purpose.CodingSchemeDesignator == "99IHE"
        assert purpose.CodeMeaning == "Processing Algorithm"
        assert item.DeviceUID == ALGORITHM.device_uid
        assert item.Manufacturer == ALGORITHM.manufacturer
        assert item.ManufacturerModelName == ALGORITHM.name
        assert item.SoftwareVersions == ALGORITHM.version
        designators = [s.CodingSchemeDesignator for s in ds.CodingSchemeIdentificationSequence]
        assert "99IHE" in designators


def test_japanese_name_survives_write_and_read(positive: Case) -> None:
    encoded = JAPANESE_NAME.encode("utf-8")
    kinds = set()
    for ds in positive.objects:
        read, raw = _round_trip(ds)
        kinds.add(read.Modality)
        assert read.SpecificCharacterSet == "ISO_IR 192"
        assert str(read.PatientName) == JAPANESE_NAME
        assert encoded in raw
    assert kinds == {"SEG", "SR", "OT"}


@pytest.mark.parametrize("case_name", ["positive", "negative"])
def test_objects_stay_in_the_source_study(case_name: str, request: pytest.FixtureRequest) -> None:
    case: Case = request.getfixturevalue(case_name)
    source = case.series[0]
    series_uids = set()
    for ds in case.objects:
        for keyword in (
            "StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
            "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "StudyDescription",
        ):
            assert ds.get(keyword) == source.get(keyword), (ds.Modality, keyword)
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        series_uids.add(ds.SeriesInstanceUID)
    assert len(series_uids) == (3 if case.overlays else 2)


# --- generic builders: validation ------------------------------------------------------


@pytest.fixture(scope="module")
def small_series() -> list[Dataset]:
    return generate_head_ct(seed=3, slices=2, hematoma=False, size=64).datasets


def test_seg_rejects_a_mask_of_the_wrong_shape(small_series: list[Dataset]) -> None:
    with pytest.raises(ValueError, match='"mask" has 3 slices'):
        build_binary_seg(
            small_series,
            np.zeros((3, 64, 64), dtype=bool),
            Placement(ALGORITHM, 1, "x"),
            segment_label="Hemorrhage",
            category=codes.SCT.MorphologicallyAbnormalStructure,
            segment_type=codes.SCT.Hemorrhage,
        )
    with pytest.raises(TypeError, match="dtype bool"):
        build_binary_seg(
            small_series,
            np.zeros((2, 64, 64), dtype=np.uint8),
            Placement(ALGORITHM, 1, "x"),
            segment_label="Hemorrhage",
            category=codes.SCT.MorphologicallyAbnormalStructure,
            segment_type=codes.SCT.Hemorrhage,
        )


def test_builders_reject_a_bad_device_uid(small_series: list[Dataset]) -> None:
    bad = AlgorithmInfo(name="m", version="1", device_uid="not a uid")
    with pytest.raises(ValueError, match="DeviceUID"):
        build_overlay_sc(
            small_series[0],
            np.zeros((64, 64, 3), dtype=np.uint8),
            Placement(bad, 1, "x", series_instance_uid=hd.UID()),
        )


def test_finding_group_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="NumericValue"):
        FindingGroup(
            tracking_identifier="t",
            finding=codes.SCT.Hemorrhage,
            measurements=((codes.SCT.Hemorrhage, float("nan"), codes.UCUM.NoUnits),),
        )
    with pytest.raises(ValueError, match="Tracking Identifier"):
        FindingGroup(tracking_identifier="", finding=codes.SCT.Hemorrhage)


def test_generic_report_without_segment(small_series: list[Dataset]) -> None:
    group = FindingGroup(
        tracking_identifier="Finding 1",
        finding=codes.SCT.Hemorrhage,
        qualitative_evaluations=((codes.SCT.Hemorrhage, codes.SCT.Absent),),
        measurements=((codes.SCT.Hemorrhage, 0, codes.UCUM.NoUnits),),
        referenced_images=(small_series[1],),
    )
    # a finding no group draws is refused: OHIF 3.13 stops on a measurement without SCOORD
    with pytest.raises(ValueError, match="no image region"):
        build_measurement_report(small_series, [group], Placement(ALGORITHM, 5, "r"))
    drawn = FindingGroup(
        tracking_identifier="Finding 1 outline",
        tracking_uid=group.tracking_uid,
        finding=codes.SCT.Hemorrhage,
        image=small_series[1],
        graphic_type="POLYLINE",
        graphic_data=np.array([(1.0, 1.0), (4.0, 1.0), (4.0, 3.0), (1.0, 1.0)]),
    )
    sr = build_measurement_report(small_series, [group, drawn], Placement(ALGORITHM, 5, "r"))
    assert sr.StudyInstanceUID == small_series[0].StudyInstanceUID
    assert dciodvfy_errors(sr) == []
    assert [i.GraphicType for i in content_items(sr) if i.ValueType == "SCOORD"] == ["POLYLINE"]
    with pytest.raises(ValueError, match="not both"):
        FindingGroup(tracking_identifier="t", finding=codes.SCT.Hemorrhage, image=small_series[1],
                     graphic_type="POINT", graphic_data=np.array([(1.0, 1.0)]),
                     segmentation=Dataset())
