"""Saving a job's result objects: each under stable series UIDs, durably, then handed over.

An object is saved as ``<SOP Instance UID>.dcm`` in the job's folder and, for a
``hand_over`` job, put on the runner's queue at once (see :func:`set_handover`), so
that the runner delivers it while the worker saves the next.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pydicom

from ..packs.protocol import ModelPack, ResultContext
from ..results.aside import EncodedObject
from ..store.rows import ResultObject
from ..store.spool import write_durable
from .result_uids import SentBefore, StableSeries, stable_result_series
from .spec import JobSpec
from .yielding import Yielded, asked_to_yield


@dataclass
class Parked:
    """A job that yielded while writing: the rest of its stream, and what it saved and found."""

    objects: Iterator[Any]
    stable: StableSeries
    saved: list[ResultObject]
    sent: SentBefore = field(default_factory=lambda: SentBefore(()))
    """What an interrupted run of the job sent (its UIDs are taken over)."""
    outcome: dict[str, Any] = field(default_factory=dict)
    """What its outcome will carry (engine, summary, times), filled by :func:`node.worker.job.run_job`."""

__all__ = ["Parked", "parked", "resume_parked", "save_dataset", "save_encoded", "save_results", "set_handover"]

_HANDOVER: Any = None
_PARKED: dict[int, "Parked"] = {}
"""Jobs parked in this process while writing (at most one), by job id (see :func:`_save_stream`)."""
"""The runner's queue of written objects, ``(job_id, sop_uid, sop_class, path)`` each (see :func:`set_handover`)."""


def set_handover(handover: Any) -> None:
    """Send each saved object of a ``hand_over`` job to ``handover`` (a queue the runner reads)."""
    global _HANDOVER
    _HANDOVER = handover


def save_results(spec: JobSpec, pack: ModelPack, series: list[pydicom.Dataset], findings: Any,
                 context: ResultContext) -> list[ResultObject]:
    """Build, name and save the result objects; hand each over as soon as it is saved.

    A pack with ``stream_results`` (same arguments as ``write_results``, yields the
    objects one by one, every object after those it references) is saved object by
    object as it builds them; otherwise its list is saved in order.
    """
    handover = _HANDOVER if spec.hand_over else None
    out_dir = Path(spec.out_dir)
    if pack.stream_results is None or handover is None:
        objects = pack.write_results(series, findings, context)
        stable_result_series(objects, spec.series_uid, spec.model)
        sent = SentBefore(spec.sent_before)
        for ds in [*objects, *objects]:  # twice: an object may cite one after it
            sent.apply(ds)
        saved = []
        for ds in objects:
            saved.append(save_dataset(ds, out_dir, spec.model))
            if handover is not None:
                handover.put((spec.job_id, saved[-1]))
        return saved
    stable = StableSeries(spec.series_uid, spec.model)
    state = Parked(iter(pack.stream_results(series, findings, context)), stable, [], SentBefore(spec.sent_before))
    return _save_stream(spec, state, handover)


def _save_stream(spec: JobSpec, state: Parked, handover: Any) -> list[ResultObject]:
    """Save and hand over each object of ``objects`` as it comes; park the job when it is asked to yield.

    Parking (``spec.may_park``, one job per process): after an object was handed over, the
    rest of the stream is kept in this process, and the job's next run here goes on with it
    (:func:`resume_parked`): the objects sent keep their UIDs, none is made twice.
    """
    out_dir = Path(spec.out_dir)
    stable, saved, sent = state.stable, state.saved, state.sent
    for obj in state.objects:
        if isinstance(obj, EncodedObject):
            stable.learn_series(obj.series_instance_uid, obj.series_number)
        if isinstance(obj, EncodedObject) and stable.changes_nothing() and not sent.concerns(obj):
            saved.append(save_encoded(obj, out_dir, spec.model))  # stable UIDs already: saved as it came
        else:
            obj = obj.dataset() if isinstance(obj, EncodedObject) else obj
            stable.learn(obj)
            stable.apply(obj)
            sent.apply(obj)
            saved.append(save_dataset(obj, out_dir, spec.model))
        handover.put((spec.job_id, saved[-1]))
        if spec.may_park and not _PARKED and asked_to_yield(spec.job_id):
            _PARKED[spec.job_id] = state
            raise Yielded(spec.job_id, parked=True)
    return saved


def parked(job_id: int) -> Parked | None:
    """The job's stream parked in this process, if any."""
    return _PARKED.get(job_id)


def resume_parked(spec: JobSpec) -> list[ResultObject]:
    """Go on with the parked stream of ``spec``'s job: every object of the job, those saved before too."""
    return _save_stream(spec, _PARKED.pop(spec.job_id), _HANDOVER)


def save_encoded(obj: EncodedObject, out_dir: Path, model: str) -> ResultObject:
    """Write an encoded object of ``model``'s job durably as ``<SOP Instance UID>.dcm``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{obj.sop_instance_uid}.dcm"
    write_durable(path, obj.data)
    return ResultObject(obj.sop_instance_uid, obj.sop_class_uid, str(path), model)


def save_dataset(ds: pydicom.Dataset, out_dir: Path, model: str) -> ResultObject:
    """Write ``ds``, an object of ``model``'s job, durably as ``<SOP Instance UID>.dcm``."""
    return save_encoded(EncodedObject.of(ds), out_dir, model)
