"""Input attributes checked where they are read (issue 35): a job that cannot use its input
fails at ``load`` with a reason naming the attribute (name and tag) and what is wrong with
it, never a Python exception's text; attribute names survive the scrubber, values do not."""
from __future__ import annotations

import math
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from benchmarks.faults.fuzzing import names_an_attribute
from node.dicom.attributes import RADIOGRAPH, VOLUME, InputError, check_file, check_image
from node.redact import scrub
from node.states import FailureStage
from node.worker import JobSpec, run_job


def _ct() -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.BodyPartExamined = "HEAD"
    return ds


def _error(ds: pydicom.Dataset, attributes=VOLUME) -> str:
    with pytest.raises(InputError) as caught:
        check_image(ds, attributes)
    return str(caught.value)


@pytest.mark.parametrize(("change", "expected"), [
    ({"PixelSpacing": ["0", "0"]}, "Pixel Spacing (0028,0030) is 0\\0"),
    ({"PixelSpacing": ["-1", "-1"]}, "Pixel Spacing (0028,0030) is -1\\-1, not positive"),
    ({"PixelSpacing": ["1"]}, "Pixel Spacing (0028,0030) has 1 value, expected 2"),
    ({"PixelSpacing": None}, "Pixel Spacing (0028,0030) missing"),
    ({"Rows": None}, "Rows (0028,0010) missing"),
    ({"RescaleSlope": "0"}, "Rescale Slope (0028,1053) is 0"),
    ({"ImageOrientationPatient": [0, 0, 0, 0, 0, 0]}, "Image Orientation (Patient) (0020,0037) is not two unit vectors"),
    ({"ImagePositionPatient": ["1", "2"]}, "Image Position (Patient) (0020,0032) has 2 values, expected 3"),
    ({"PhotometricInterpretation": "RGB"}, "Photometric Interpretation (0028,0004) is not one of MONOCHROME1, MONOCHROME2"),
    ({"Modality": None}, "Modality (0008,0060) missing"),
    ({"SpecificCharacterSet": "ISO 2022 IR 87"}, "Specific Character Set (0008,0005) is a code extension without a"
                                                 " default character set before it (one value, expected two or more)"),
    ({"BitsAllocated": 12}, "Bits Allocated (0028,0100) is 12, not one of 1, 8, 16, 32, 64"),
])
def test_a_bad_attribute_is_named_with_its_tag_and_defect(change, expected):
    ds = _ct()
    for keyword, value in change.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    assert _error(ds) == expected
    assert names_an_attribute(expected)


def test_text_and_nan_are_not_numbers():
    ds = _ct()
    ds["RescaleSlope"] = pydicom.DataElement(0x00281053, "DS", "nan")
    assert "Rescale Slope (0028,1053) is not a number" in _error(ds)
    ds = _ct()
    ds.RescaleIntercept = math.inf
    assert _error(ds) == "Rescale Intercept (0028,1052) is not finite"


def test_a_radiograph_may_have_pixel_spacing_0_and_no_geometry():
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))  # the real CR: Pixel Spacing 0\0
    check_file(ds)
    check_image(ds, RADIOGRAPH)


def test_short_pixel_data_is_named_before_decoding():
    ds = _ct()
    ds.PixelData = bytes(ds.PixelData)[:100]
    with pytest.raises(InputError, match=r"^Pixel Data \(7FE0,0010\) has 100 bytes, 32768 expected"):
        check_file(ds)


def test_the_scrubber_keeps_attribute_names_and_tags_but_not_values():
    text = scrub("AttributeError: Missing required element: (0028,0010) 'Rows' and 'Pixel Spacing' for 'SMITH'")
    assert "(0028,0010) 'Rows'" in text and "'Pixel Spacing'" in text and "SMITH" not in text


@pytest.mark.parametrize(("keyword", "value", "stage_reason"), [
    ("PixelSpacing", ["0", "0"], "Pixel Spacing (0028,0030) is 0\\0"),
    ("Rows", None, "Rows (0028,0010) missing"),
    ("RescaleSlope", "abc", "Rescale Slope (0028,1053) is not a number"),
])
def test_a_job_fails_at_load_naming_the_attribute(tmp_path: Path, keyword, value, stage_reason):
    ds = _ct()
    if value is None:
        delattr(ds, keyword)
    elif keyword == "RescaleSlope":
        ds["RescaleSlope"] = pydicom.DataElement(0x00281053, "DS", "0")
    else:
        setattr(ds, keyword, value)
    path = tmp_path / "slice.dcm"
    ds.save_as(path)
    if keyword == "RescaleSlope":  # a value pydicom will not write: patched into the file's bytes
        raw = path.read_bytes()
        marker = b"\x28\x00\x53\x10DS\x02\x000 "
        assert marker in raw
        path.write_bytes(raw.replace(marker, b"\x28\x00\x53\x10DS\x04\x00abc "))
    outcome = run_job(JobSpec(1, "head-ct-hematoma", "head-ct-hematoma", None, "onnxruntime-cpu", None,
                              (str(path),), str(tmp_path / "out"), str(ds.SeriesInstanceUID)))
    assert not outcome.ok
    assert outcome.stage == FailureStage.LOAD
    assert outcome.reason.startswith(stage_reason), outcome.reason
    assert names_an_attribute(outcome.reason), outcome.reason
