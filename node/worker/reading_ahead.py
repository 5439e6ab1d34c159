"""Reading ahead: a worker reads and runs a slice-wise model on a series' files while it arrives.

What it read and ran is kept in this process's :class:`~node.worker.slice_cache.SliceCache`
until the series' job takes it (:func:`take_read_ahead`) and runs the model only on the
slices that are not there.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pydicom

from ..packs.protocol import ModelPack
from ..redact import scrub
from .engines import engine_for, model_key, pack_for, run_batched
from .series import read_images
from .slice_cache import CachedFile, SliceCache, file_identity, outputs_by_image, stack_outputs
from .spec import JobSpec

__all__ = ["ReadAheadOutcome", "descriptors_read_ahead", "give_back_read_ahead", "merge_outputs",
           "outputs_read_ahead", "read_ahead", "take_read_ahead"]

_READ_AHEAD_BYTES = 256 * 1024 * 1024
_SLICES = SliceCache(_READ_AHEAD_BYTES)
"""Files of series still arriving that this worker has read and run ahead (see :mod:`node.worker.slice_cache`)."""


@dataclass(frozen=True)
class ReadAheadOutcome:
    """What :func:`read_ahead` did: whether the model reads ahead at all, and how many images it ran."""

    model: str
    slice_wise: bool
    images: int = 0
    seconds: float = 0.0
    reason: str | None = None
    series_uid: str = ""


def read_ahead(spec: JobSpec) -> ReadAheadOutcome:
    """Read and run ``spec``'s files now, for the job of their series to take later; never raises.

    Only for a pack that handles each slice on its own (``slice_wise``): its preprocessing
    and its model see one slice at a time, so outputs computed for some slices now are
    the outputs the job would compute for them. Files already read ahead are skipped. A
    failure only loses the head start: the job reads and runs those files itself, and
    reports what fails there.
    """
    started = time.perf_counter()
    try:
        pack = pack_for(spec.pack, spec.weights)
        if not pack.slice_wise:
            return ReadAheadOutcome(spec.model, False, series_uid=spec.series_uid)
        engine = engine_for(spec, pack)
        key = model_key(spec, pack)
        fresh: list[CachedFile] = []
        for path in spec.instance_paths:
            identity = file_identity(path)
            if identity is None or _SLICES.get(key, identity) is not None:
                continue
            fresh.append(CachedFile.of(read_images(path)))
            _SLICES.put(key, identity, fresh[-1])
        images = [image for entry in fresh for image in entry.images]
        if images:
            inputs = pack.preprocess(images)
            outputs = iter(outputs_by_image(images, run_batched(engine, inputs, spec.batch_size or pack.batch_size)))
            for entry in fresh:
                entry.outputs = [next(outputs) for _ in entry.images]
            rows = _descriptors(pack, inputs, len(images))
            for entry in fresh:
                entry.descriptors = None if rows is None else [next(rows) for _ in entry.images]
        return ReadAheadOutcome(spec.model, True, len(images), time.perf_counter() - started,
                                series_uid=spec.series_uid)
    except Exception as exc:
        reason = scrub(f"{type(exc).__name__}: {exc}")[:300]
        return ReadAheadOutcome(spec.model, True, 0, time.perf_counter() - started, reason, spec.series_uid)


def _descriptors(pack: ModelPack, inputs: dict[str, np.ndarray], count: int) -> Iterator[np.ndarray] | None:
    """The applicability descriptor of each of ``count`` images, described now so that the job's
    verdict at completion only describes the slices not read ahead; ``None`` without a check
    (or when the rows do not match the images one to one). A description that fails loses only
    this head start, never the outputs: the job describes those slices itself and reports there."""
    if pack.applicability is None:
        return None
    try:
        rows = pack.applicability.describe(inputs)
    except Exception:
        return None
    return iter(rows) if len(rows) == count else None


def descriptors_read_ahead(taken: dict[str, CachedFile]) -> dict[int, np.ndarray]:
    """The applicability descriptors read ahead, by ``id`` of their image."""
    return {id(image): row for entry in taken.values() if entry.descriptors
            for image, row in zip(entry.images, entry.descriptors)}


def take_read_ahead(spec: JobSpec, pack: ModelPack) -> dict[str, CachedFile]:
    """The entries read ahead for the job's files (taken out of the cache: a job uses them once)."""
    if not pack.slice_wise or not len(_SLICES):
        return {}
    key = model_key(spec, pack)
    taken = {path: _SLICES.take(key, file_identity(path)) for path in spec.instance_paths}
    return {path: entry for path, entry in taken.items() if entry is not None}


def give_back_read_ahead(spec: JobSpec, pack: ModelPack, taken: dict[str, CachedFile]) -> None:
    """Put back what :func:`take_read_ahead` took, for the job's next run (it yielded its worker)."""
    key = model_key(spec, pack)
    for path, entry in taken.items():
        identity = file_identity(path)
        if identity is not None:
            _SLICES.put(key, identity, entry)


def outputs_read_ahead(taken: dict[str, CachedFile]) -> dict[int, dict[str, np.ndarray]]:
    """The outputs read ahead, by ``id`` of their image."""
    return {id(image): out for entry in taken.values() if entry.outputs
            for image, out in zip(entry.images, entry.outputs)}


def merge_outputs(series: Sequence[pydicom.Dataset], known: dict[int, dict[str, np.ndarray]],
                  missing: Sequence[pydicom.Dataset], outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of every image of ``series``, in its order: read ahead, or just run (``missing``)."""
    if missing:
        known = {**known, **dict(zip(map(id, missing), outputs_by_image(missing, outputs)))}
    return stack_outputs([known[id(image)] for image in series])
