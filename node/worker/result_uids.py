"""Stable result series: the Series Instance UIDs a model's results get, the same on every run.

A job run again (a late image, an operator's re-run) sends its new objects into the same
result series as the first run, as new instances, instead of a second copy of every
series: each result series UID is derived from the source series, the model and the
result's Series Number.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pydicom
from pydicom.tag import Tag
from pydicom.uid import generate_uid

__all__ = ["StableSeries", "series_uid_naming", "stable_result_series", "stable_series_uid"]

_SERIES_INSTANCE_UID = Tag(0x0020, 0x000E)


def stable_series_uid(source_series_uid: str, model: str, series_number: str) -> str:
    """The Series Instance UID of a model's result series: the same for every run on the source series."""
    return str(generate_uid(entropy_srcs=[source_series_uid, model, series_number]))


def series_uid_naming(source_series_uid: str, model: str) -> Callable[[int], str]:
    """``ResultContext.series_uid_for`` of a job: the UIDs :class:`StableSeries` would give
    (fresh ones when the source series is not known)."""
    if not source_series_uid:
        return lambda _number: str(generate_uid())
    return lambda number: stable_series_uid(source_series_uid, model, str(number))


class StableSeries:
    """Result series UIDs derived from the source series, the model and each Series Number.

    References between the job's objects (an SR citing its SEG) follow, to the series of
    every object :meth:`learn` has seen.
    """

    def __init__(self, source_series_uid: str, model: str) -> None:
        self._source = source_series_uid
        self._model = model
        self._mapping: dict[str, str] = {}

    def learn(self, ds: pydicom.Dataset) -> None:
        """Give the series of ``ds`` its stable UID (once per series)."""
        old = str(ds.SeriesInstanceUID)
        self.learn_series(old, str(ds.get("SeriesNumber", old)))

    def learn_series(self, series_uid: str, series_number: str) -> None:
        """Give the series ``series_uid`` (number ``series_number``) its stable UID, once."""
        if self._source and series_uid not in self._mapping:
            self._mapping[series_uid] = stable_series_uid(self._source, self._model, series_number)

    def changes_nothing(self) -> bool:
        """Whether every series learnt already has its stable UID (then :meth:`apply` changes nothing)."""
        return all(old == new for old, new in self._mapping.items())

    def apply(self, ds: pydicom.Dataset) -> None:
        """Replace every learnt series UID in ``ds`` (its own and its references)."""
        if not self.changes_nothing():
            _replace_series_uids(ds, {old: new for old, new in self._mapping.items() if old != new})


def stable_result_series(objects: Sequence[pydicom.Dataset], source_series_uid: str, model: str) -> None:
    """Give each result series a stable UID (see :class:`StableSeries`), all objects at once."""
    stable = StableSeries(source_series_uid, model)
    for ds in objects:
        stable.learn(ds)
    for ds in objects:
        stable.apply(ds)


def _replace_series_uids(ds: pydicom.Dataset, mapping: dict[str, str]) -> None:
    for element in ds.iterall():
        if element.tag == _SERIES_INSTANCE_UID and str(element.value) in mapping:
            element.value = mapping[str(element.value)]
