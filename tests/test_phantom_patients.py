"""Phantom patient identity: different phantom patients never share a Patient ID.

A PACS (Orthanc, for one) files studies under their Patient ID; two phantoms that share
an ID with different names, sexes or birth dates would be merged into one patient with
conflicting demographics. The default ID depends on the kind and the seed, and
``--patient-id`` overrides it.
"""
from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from node.cli import main

# Small, fast variants of each kind (the identity does not depend on the size).
SMALL = {
    "head-ct": ["--slices", "2", "--no-hematoma"],
    "chest-ct": ["--size", "128", "--slice-thickness", "10"],
    "cxr": ["--size", "256"],
    "brain-mr": ["--slices", "4", "--no-tumor"],
}
PREFIX = {"head-ct": "HEADCT", "chest-ct": "CHESTCT", "cxr": "CXR", "brain-mr": "BRAINMR"}
DEMOGRAPHICS = ("PatientName", "PatientSex", "PatientBirthDate")


def _phantom(tmp_path: Path, kind: str, seed: int, *extra: str) -> list[pydicom.Dataset]:
    out = tmp_path / f"{kind}-{seed}-{len(extra)}"
    assert main(["phantom", kind, "--out", str(out), "--seed", str(seed), *SMALL[kind], *extra]) == 0
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(out.rglob("*.dcm"))]
    assert datasets, f"no DICOM files written by phantom {kind}"
    return datasets


def _identity(ds: pydicom.Dataset) -> tuple[str, tuple[str, ...]]:
    return str(ds.PatientID), tuple(str(ds.get(k, "")) for k in DEMOGRAPHICS)


def test_kinds_and_seeds_never_share_a_patient_id_with_other_demographics(tmp_path: Path):
    seen: dict[str, tuple[str, ...]] = {}
    owner: dict[str, tuple[str, int]] = {}
    for kind in SMALL:
        for seed in (3, 4):
            ids = {_identity(ds) for ds in _phantom(tmp_path, kind, seed)}
            assert len(ids) == 1, f"{kind} seed {seed}: one patient per phantom, got {ids}"
            ((patient_id, demographics),) = ids
            assert patient_id == f"{PREFIX[kind]}-{seed}"
            # Each (kind, seed) is its own patient: no two share an ID ...
            assert patient_id not in owner, f"{kind}/{seed} and {owner.get(patient_id)} share {patient_id}"
            owner[patient_id] = (kind, seed)
            seen[patient_id] = demographics
    assert len(seen) == 2 * len(SMALL)


def test_the_same_kind_and_seed_is_the_same_patient(tmp_path: Path):
    # Regenerating a phantom (e.g. with and without a finding) keeps the patient: one
    # ID, one set of demographics.
    first = {_identity(ds) for ds in _phantom(tmp_path, "head-ct", 3)}
    again = {_identity(ds) for ds in _phantom(tmp_path / "again", "head-ct", 3)}
    assert first == again


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_patient_id_option_is_honoured(tmp_path: Path, kind: str):
    datasets = _phantom(tmp_path, kind, 3, "--patient-id", f"MRN-{kind}-77")
    assert {str(ds.PatientID) for ds in datasets} == {f"MRN-{kind}-77"}
