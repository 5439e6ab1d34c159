"""The fuzz generators (``benchmarks.fuzz``): seeded, covering every family, from both the
project's phantoms and real pydicom-data files; fast, no services."""
from __future__ import annotations

import io

import pydicom
from pydicom.filereader import read_file_meta_info

from benchmarks.fuzz import DATASET_MUTATIONS, dataset_cases, garbage_pdus, series_cases
from models.phantoms.head_ct import generate_head_ct


def test_dataset_cases_are_reproducible_and_cover_every_family_and_source():
    first = list(dataset_cases(120, seed=5))
    again = list(dataset_cases(120, seed=5))
    # the same decisions (family, base, kind of change); UIDs are fresh on every run, so byte
    # counts and offsets that depend on their lengths may differ
    def decisions(cases):
        return [(c.family, c.source, _shape(c.name)) for c in cases]

    assert decisions(first) == decisions(again)
    assert {c.family for c in first} == set(DATASET_MUTATIONS)
    sources = {c.source.split(":")[0] for c in first}
    assert sources == {"phantom", "pydicom-data"}


def _shape(name: str) -> str:
    return "".join("#" if ch.isdigit() else ch for ch in name.split(" ", 1)[1])


def test_every_case_has_a_valid_file_meta_matching_the_case(tmp_path):
    for case in dataset_cases(80, seed=9):
        path = tmp_path / "case.dcm"
        path.write_bytes(case.data)
        meta = read_file_meta_info(path)
        assert meta.MediaStorageSOPInstanceUID == case.sop_instance_uid
        assert meta.MediaStorageSOPClassUID == case.sop_class_uid
        assert meta.TransferSyntaxUID == case.transfer_syntax


def test_intact_cases_read_back_with_their_new_uid():
    intact = [c for c in dataset_cases(60, seed=3) if c.family == "intact"]
    assert intact
    for case in intact:
        ds = pydicom.dcmread(io.BytesIO(case.data), stop_before_pixels=True)
        assert ds.SOPInstanceUID == case.sop_instance_uid


def test_series_cases_are_head_ct_series_with_their_own_uids():
    head = generate_head_ct(seed=1, slices=3, hematoma=True).datasets
    cases = series_cases(head, seed=1)
    names = {c.name for c in cases}
    assert {"one-slice", "no-usable-slice", "mixed-sizes", "duplicate-position", "real-ct-693"} <= names
    assert len({c.series_uid for c in cases}) == len(cases)
    for series in cases:
        for case in series.cases:
            assert case.sop_instance_uid not in {str(ds.SOPInstanceUID) for ds in head}


def test_garbage_pdus_are_reproducible():
    a = [(p.name, p.data) for p in garbage_pdus(40, seed=2)]
    b = [(p.name, p.data) for p in garbage_pdus(40, seed=2)]
    assert a == b
    assert len({p.family for p in garbage_pdus(40, seed=2)}) >= 8
