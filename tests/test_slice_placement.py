"""Slices that cannot be placed are set aside with a reason; re-runs land in the same result series."""
from __future__ import annotations

from types import SimpleNamespace

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from node.packs.protocol import place_slices
from node.worker import stable_result_series
from node.worker.series import load_series as _load_series


def _series(files):
    return [pydicom.dcmread(p) for p in files]


def test_garbled_and_duplicate_positions_are_excluded_with_reasons(small_head_ct):
    _, files = small_head_ct
    slices = _series(files)
    raw = files[2].read_bytes()  # ImagePositionPatient's value bytes garbled, as on a broken wire
    at = raw.find(b"\x20\x00\x32\x00") + 8
    length = int.from_bytes(raw[at - 2:at], "little")
    garbled = pydicom.dcmread(pydicom.filebase.DicomBytesIO(raw[:at] + b"x\\" * (length // 2) + raw[at + length:]))
    slices[2] = garbled
    copy = pydicom.dcmread(files[4])
    copy.SOPInstanceUID = generate_uid()
    copy.InstanceNumber = 99
    placed = place_slices(list(reversed(slices)) + [copy])
    assert len(placed.slices) == len(files) - 1
    reasons = dict(placed.excluded)
    assert "unreadable geometry" in reasons[garbled.SOPInstanceUID]
    assert "duplicate position" in reasons[copy.SOPInstanceUID], "the later copy (by Instance Number) goes"
    z = [float(s.ImagePositionPatient[2]) for s in placed.slices]
    assert z == sorted(z) or z == sorted(z, reverse=True)


def test_a_model_that_needs_the_whole_volume_fails_with_the_reason(small_head_ct, tmp_path):
    _, files = small_head_ct
    broken = pydicom.dcmread(files[1])
    broken.ImageOrientationPatient = [0, 0, 0, 0, 0, 0]
    path = tmp_path / "broken.dcm"
    broken.save_as(path)
    paths = [str(files[0]), str(path), *map(str, files[2:])]
    with pytest.raises(ValueError, match="1 of 6 slices cannot be placed.*degenerate"):
        _load_series(paths, SimpleNamespace(tolerates_excluded_slices=False))
    series, excluded = _load_series(paths, SimpleNamespace(tolerates_excluded_slices=True))
    assert len(series) == 5 and excluded[0][0] == broken.SOPInstanceUID


def _result(series_uid: str, number: int, refs: list[str] = ()) -> Dataset:
    ds = Dataset()
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SOPInstanceUID = generate_uid()
    if refs:
        item = Dataset()
        item.SeriesInstanceUID = refs[0]
        ds.ReferencedSeriesSequence = Sequence([item])
    return ds


def _run(source: str) -> list[Dataset]:
    """One job's objects as a pack writes them: fresh UIDs every time, an SR citing its SEG."""
    seg, overlays = generate_uid(), generate_uid()
    objects = [_result(seg, 9000), _result(overlays, 9002), _result(overlays, 9002), _result(generate_uid(), 9001, [seg])]
    stable_result_series(objects, source, "head-ct-hematoma")
    return objects


def test_a_rerun_lands_in_the_same_result_series():
    source = generate_uid()
    first, second = _run(source), _run(source)
    assert [d.SeriesInstanceUID for d in first] == [d.SeriesInstanceUID for d in second]
    assert first[1].SeriesInstanceUID == first[2].SeriesInstanceUID, "one series stays one series"
    assert first[3].ReferencedSeriesSequence[0].SeriesInstanceUID == first[0].SeriesInstanceUID, "references follow"
    assert {d.SOPInstanceUID for d in first}.isdisjoint(d.SOPInstanceUID for d in second), "new instances"
    other = _run(generate_uid())
    assert other[0].SeriesInstanceUID != first[0].SeriesInstanceUID
