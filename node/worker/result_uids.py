"""Stable result series: the Series Instance UIDs a model's results get, the same on every run.

A job run again (a late image, an operator's re-run) sends its new objects into the same
result series as the first run, as new instances, instead of a second copy of every
series: each result series UID is derived from the source series, the model and the
result's Series Number.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pydicom
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from ..results.aside import EncodedObject
from ..store.rows import ResultObject

__all__ = ["SentBefore", "StableSeries", "series_uid_naming", "stable_result_series", "stable_series_uid"]

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


Place = tuple[str, str, str]
"""Where an object stands among a job's results: SOP Class, Series Number, Instance Number."""


class SentBefore:
    """What an interrupted run of the job already sent: a new run's object in the same place
    takes the sent object's SOP Instance UID, and the objects citing it cite that UID.

    A run handed back after its first objects went out (a worker stopped or killed while it
    wrote, objects delivered as they were written) runs again from the start: with new UIDs
    the PACS would get a second SEG beside the first. With the sent UIDs the new object's
    row is the sent one's (one row per object and destination), so it is not sent again,
    and a later object (the SR) cites the object the PACS holds.
    """

    def __init__(self, sent: Sequence[ResultObject]) -> None:
        self._uid_at: dict[Place, str] = {}
        for obj in sent:
            try:
                ds = pydicom.dcmread(obj.path, stop_before_pixels=True,
                                     specific_tags=["SOPClassUID", "SeriesNumber", "InstanceNumber"])
            except Exception:  # its file is gone or unreadable: that object may go out again, the job runs on
                continue
            self._uid_at[_place(ds)] = obj.sop_instance_uid
        self._renamed: dict[str, str] = {}

    def concerns(self, obj: EncodedObject) -> bool:
        """Whether the encoded ``obj`` may take a sent object's UID or cites a renamed one (then
        it is decoded and :meth:`apply` given; otherwise it is saved as it came)."""
        if any(cls == obj.sop_class_uid and number == str(obj.series_number) for cls, number, _ in self._uid_at):
            return True
        return any(uid.encode() in obj.data for uid in self._renamed)

    def apply(self, ds: pydicom.Dataset) -> None:
        """Give ``ds`` the UID of the object sent in its place, if any, and cite renamed objects by
        the UIDs sent."""
        sent = self._uid_at.get(_place(ds))
        if sent is not None and sent != str(ds.SOPInstanceUID):
            self._renamed[str(ds.SOPInstanceUID)] = sent
        if self._renamed:
            _replace_uids(ds, self._renamed)


def _place(ds: pydicom.Dataset) -> Place:
    return str(ds.get("SOPClassUID", "")), str(ds.get("SeriesNumber", "")), str(ds.get("InstanceNumber", ""))


def _replace_uids(ds: pydicom.Dataset, mapping: dict[str, str]) -> None:
    """Every UI value of ``ds`` (and its file meta) found in ``mapping`` replaced."""
    meta = getattr(ds, "file_meta", None)
    for element in [*ds.iterall(), *(meta.iterall() if meta is not None else ())]:
        if element.VR != "UI" or element.value is None:
            continue
        if isinstance(element.value, MultiValue):
            element.value = [mapping.get(str(v), str(v)) for v in element.value]
        elif str(element.value) in mapping:
            element.value = mapping[str(element.value)]
