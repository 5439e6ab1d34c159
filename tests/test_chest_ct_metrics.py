"""The slice-offset metrics of the chest CT landmark pack: 1-Up-Down precision and histogram."""
from __future__ import annotations

import math

import pytest

from models.chest_ct_landmarks.metrics import (
    HISTOGRAM_BINS,
    offset_histogram,
    one_up_down_precision,
    slice_offsets,
)


def test_slice_offsets_are_pick_minus_truth():
    assert slice_offsets([10, 20, 31], [10, 22, 30]).tolist() == [0, -2, 1]
    with pytest.raises(ValueError):
        slice_offsets([1, 2], [1])


def test_one_up_down_counts_the_truth_and_its_neighbours():
    offsets = [0, 1, -1, 2, -3, 0, 5, -1]
    assert one_up_down_precision(offsets) == pytest.approx(5 / 8)
    assert one_up_down_precision(offsets, tolerance=0) == pytest.approx(2 / 8)
    assert one_up_down_precision(offsets, tolerance=2) == pytest.approx(6 / 8)
    assert math.isnan(one_up_down_precision([]))


def test_offset_histogram_bins():
    hist = offset_histogram([0, 1, -1, 2, -3, 0, 5, -1, -2, 3])
    assert list(hist) == list(HISTOGRAM_BINS)
    assert hist == {"<-2": 1, "-2": 1, "-1": 2, "0": 2, "+1": 1, "+2": 1, ">+2": 2}
    assert sum(hist.values()) == 10
    assert sum(offset_histogram([]).values()) == 0
