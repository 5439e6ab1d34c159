"""Saving a job's result objects: each under stable series UIDs, durably, then handed over.

An object is saved as ``<SOP Instance UID>.dcm`` in the job's folder and, for a
``hand_over`` job, put on the runner's queue at once (see :func:`set_handover`), so
that the runner delivers it while the worker saves the next.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom

from ..packs.protocol import ModelPack, ResultContext
from ..results.aside import EncodedObject
from ..store.rows import ResultObject
from ..store.spool import write_durable
from .result_uids import StableSeries, stable_result_series
from .spec import JobSpec

__all__ = ["save_dataset", "save_encoded", "save_results", "set_handover"]

_HANDOVER: Any = None
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
        saved = []
        for ds in objects:
            saved.append(save_dataset(ds, out_dir, spec.model))
            if handover is not None:
                handover.put((spec.job_id, saved[-1]))
        return saved
    stable = StableSeries(spec.series_uid, spec.model)
    saved = []
    for obj in pack.stream_results(series, findings, context):
        if isinstance(obj, EncodedObject):
            stable.learn_series(obj.series_instance_uid, obj.series_number)
            if stable.changes_nothing():  # its series UIDs are already the stable ones: save it as it came
                saved.append(save_encoded(obj, out_dir, spec.model))
                handover.put((spec.job_id, saved[-1]))
                continue
            obj = obj.dataset()
        stable.learn(obj)
        stable.apply(obj)
        saved.append(save_dataset(obj, out_dir, spec.model))
        handover.put((spec.job_id, saved[-1]))
    return saved


def save_encoded(obj: EncodedObject, out_dir: Path, model: str) -> ResultObject:
    """Write an encoded object of ``model``'s job durably as ``<SOP Instance UID>.dcm``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{obj.sop_instance_uid}.dcm"
    write_durable(path, obj.data)
    return ResultObject(obj.sop_instance_uid, obj.sop_class_uid, str(path), model)


def save_dataset(ds: pydicom.Dataset, out_dir: Path, model: str) -> ResultObject:
    """Write ``ds``, an object of ``model``'s job, durably as ``<SOP Instance UID>.dcm``."""
    return save_encoded(EncodedObject.of(ds), out_dir, model)
