"""One job, run in a worker process: load → engine → preprocess → inference → postprocess → write.

Everything here runs outside the node's main process, so CPU-heavy model work never
slows the association threads. A failure is returned, not raised, with the stage it
happened in.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pydicom
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from ..results.aside import EncodedObject, InlineAside, ProcessAside
from ..engines import EngineOptions, create_engine
from ..dicom.frames import expand_frames
from ..logs import configure_logging
from ..packs.registry import load_pack
from ..packs.protocol import Engine, ModelPack, ResultContext, place_slices
from ..redact import scrub
from ..results.equipment import load_standard_tables
from ..results.demographics import repair_demographics
from .slice_cache import CachedFile, SliceCache, file_identity, outputs_by_image, stack_outputs
from ..store.spool import write_durable
from ..states import FailureStage

__all__ = [
    "JobOutcome", "JobSpec", "ReadAheadOutcome", "StableSeries", "die_with_parent", "engine_cache_key", "init_helper",
    "init_worker", "retain_freed_memory", "stable_result_series", "stable_series_uid",
    "network_module", "read_ahead", "run_batched", "run_job", "warm_up",
]

_SERIES_INSTANCE_UID = Tag(0x0020, 0x000E)
_PACKS: dict[tuple[str, str | None], ModelPack] = {}
_ENGINES: dict[tuple[Any, ...], Engine] = {}
_LOGGING_READY = False
"""This process's engines, by :func:`engine_cache_key` and the pack's model path."""
_HANDOVER: Any = None
"""The runner's queue of written objects, ``(job_id, sop_uid, sop_class, path)`` each (see :func:`init_worker`)."""
_READ_AHEAD_BYTES = 256 * 1024 * 1024
_SLICES = SliceCache(_READ_AHEAD_BYTES)
"""Files of series still arriving that this worker has read and run ahead (see :mod:`node.worker.slice_cache`)."""


@dataclass(frozen=True)
class JobSpec:
    """What a worker needs to run one job (plain data: it crosses a process boundary)."""

    job_id: int
    model: str
    pack: str
    weights: str | None
    engine: str
    batch_size: int | None
    instance_paths: tuple[str, ...]
    out_dir: str
    series_uid: str = ""
    engine_cache_dir: str | None = None
    triton_url: str | None = None
    triton_model: str | None = None
    hand_over: bool = False
    """Hand each object to the runner as soon as it is saved (for delivery while the next is written)."""


@dataclass(frozen=True)
class JobOutcome:
    """What came of a job: result files, or the stage and reason of the failure."""

    job_id: int
    ok: bool
    stage: FailureStage | None = None
    reason: str | None = None
    engine: str | None = None
    results: tuple[tuple[str, str, str], ...] = ()   # (SOP Instance UID, SOP Class UID, path)
    inference_seconds: float = 0.0
    total_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class _StageError(Exception):
    def __init__(self, stage: FailureStage, cause: BaseException) -> None:
        super().__init__(stage)
        self.stage = stage
        self.cause = cause


def die_with_parent(parent: int) -> None:
    """Worker process initializer: end this process when the node that started it dies.

    A kill -9 of the node gives its workers no chance to be told; without this they live
    on as orphans holding memory and GPU contexts. Linux's parent-death signal covers
    it; a watchdog thread that notices a new parent process id covers the rest.
    ``parent`` is the node's process id, passed in: a worker still starting when the
    node died must not take its new parent (init) for the node.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def _watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=_watch, name="parent-watchdog", daemon=True).start()
    _log_to_json()


_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def retain_freed_memory() -> None:
    """Keep the memory a job frees for the next job, instead of giving it back to the kernel (glibc).

    A job's large arrays (a 40-slice head CT's input alone is 84 MB) are otherwise mapped
    fresh and unmapped after every job; on a virtual machine that returns freed memory to
    its host, touching such memory again after a few idle seconds costs about ten times
    more (measured here: windowing a 40-slice series, 0.06 s back to back, 0.45-0.67 s
    after 2-10 s idle; 0.04 s either way with this). The price: a worker's heap stays at
    its peak (a few hundred MB), which a process that only runs models can afford.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    except (OSError, AttributeError):  # not glibc: its allocator's own policy stays
        pass


def init_helper(parent: int) -> None:
    """Initializer of a worker's helper process (:data:`_ASIDE`): as a worker's, without the queue."""
    retain_freed_memory()
    die_with_parent(parent)


_ASIDE = ProcessAside(initializer=init_helper)
"""This worker's helper process for objects built aside (see :mod:`node.results.aside`), started at warm-up."""


def init_worker(parent: int, handover: Any = None) -> None:
    """Worker process initializer: :func:`retain_freed_memory`, :func:`die_with_parent`, and the
    queue saved objects go to.

    ``handover`` (a ``multiprocessing`` queue the runner reads) receives
    ``(job_id, sop_uid, sop_class, path)`` for each object of a ``hand_over`` job once it
    is on disk, durably.
    """
    global _HANDOVER
    _HANDOVER = handover
    retain_freed_memory()
    die_with_parent(parent)


def run_batched(engine: Engine, inputs: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Run ``inputs`` through ``engine`` in batches along axis 0 and concatenate the outputs."""
    n = len(next(iter(inputs.values())))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, max(1, batch_size)):
        parts.append(engine.run({k: v[start:start + batch_size] for k, v in inputs.items()}))
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def run_job(spec: JobSpec) -> JobOutcome:
    """Run one job; never raises."""
    _log_to_json()
    started = time.perf_counter()
    engine_name: str | None = None
    timings: dict[str, float] = {}

    def stage(name: FailureStage, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        except Exception as exc:
            raise _StageError(name, exc) from exc
        finally:
            timings[name.value] = timings.get(name.value, 0.0) + time.perf_counter() - t0

    try:
        pack = stage(FailureStage.LOAD, _pack, spec.pack, spec.weights)
        taken = stage(FailureStage.LOAD, _take_read_ahead, spec, pack)
        series, excluded = stage(FailureStage.LOAD, _load_series, spec.instance_paths, pack, taken)
        engine = stage(FailureStage.ENGINE, _engine, spec, pack)
        engine_name = engine.name
        known = _outputs_read_ahead(taken)
        missing = [image for image in series if id(image) not in known]
        outputs: dict[str, np.ndarray] = {}
        # every stage is reported, also one left with nothing to do
        timings.setdefault(FailureStage.PREPROCESS.value, 0.0)
        if missing:
            inputs = stage(FailureStage.PREPROCESS, pack.preprocess, missing)
            outputs = stage(FailureStage.INFERENCE, run_batched, engine, inputs, spec.batch_size or pack.batch_size)
        ahead = len(series) - len(missing)
        if ahead:
            outputs = stage(FailureStage.INFERENCE, _merge_outputs, series, known, missing, outputs)
        findings = stage(FailureStage.POSTPROCESS, pack.postprocess, series, outputs)
        context = ResultContext(algorithm=pack.algorithm, series_number_base=pack.series_number_base,
                                aside=_ASIDE if spec.hand_over else InlineAside(),
                                series_uid_for=_stable_uids(spec))
        results = stage(FailureStage.WRITE, _write, spec, pack, series, findings, context)
    except _StageError as exc:
        reason = scrub(f"{type(exc.cause).__name__}: {exc.cause}")[:500]
        return JobOutcome(
            spec.job_id, False, exc.stage, reason, engine_name,
            inference_seconds=timings.get(FailureStage.INFERENCE.value, 0.0), total_seconds=time.perf_counter() - started,
            stage_seconds=timings, summary={"traceback": _traceback(exc.cause)},
        )
    summary = findings.summary() if hasattr(findings, "summary") else {}
    if ahead:
        summary = {**summary, "slices_read_ahead": ahead}
    if excluded:
        summary = {**summary, "excluded_slices": [f"{uid}: {why}" for uid, why in excluded]}
    return JobOutcome(
        spec.job_id, True, engine=engine_name, results=tuple(results),
        inference_seconds=timings.get(FailureStage.INFERENCE.value, 0.0), total_seconds=time.perf_counter() - started,
        stage_seconds=timings, summary=summary,
    )


def _traceback(exc: BaseException) -> str:
    """The traceback of ``exc``: frames as they are (code, not data), the message scrubbed of values."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return (frames + (scrub("".join(traceback.format_exception_only(exc))) or ""))[-2000:]


def _log_to_json() -> None:
    """In a worker process, send logs and warnings (scrubbed) to stderr as JSON lines, once.

    A worker is a fresh (spawned) interpreter: without this, a third-party warning that
    quotes a patient's name would go to stderr as plain text.
    """
    global _LOGGING_READY
    if _LOGGING_READY or multiprocessing.parent_process() is None:
        return
    configure_logging(os.environ.get("AINODE_LOG_LEVEL", "INFO"))
    _LOGGING_READY = True


def warm_up(specs: Sequence[JobSpec]) -> list[str]:
    """Load each spec's pack and engine into this worker process before the first series.

    Returns one line per model: the engine it got, or why it could not be loaded (the
    job will then fail with that reason at its ``load`` or ``engine`` stage).
    """
    lines = []
    load_standard_tables()
    if any(spec.hand_over for spec in specs):
        try:
            _ASIDE.warm(load_standard_tables)
        except Exception as exc:  # objects meant for it are then built in the worker itself
            logging.getLogger(__name__).warning("helper process for results not started: %s", type(exc).__name__)
    for spec in specs:
        try:
            pack = _pack(spec.pack, spec.weights)
            lines.append(f"{spec.model}: {_engine(spec, pack).name}")
        except Exception as exc:
            lines.append(f"{spec.model}: not loaded ({type(exc).__name__}: {exc})")
    return lines


def _load_series(paths: Sequence[str], pack: ModelPack, taken: dict[str, CachedFile] | None = None,
                 ) -> tuple[list[pydicom.Dataset], list[tuple[str, str]]]:
    """The series in slice order, and the slices left out (only if the pack can do without them).

    Files in ``taken`` (read ahead) are not read again.
    """
    if not paths:
        raise ValueError("series has no instances")
    images = [image for path in paths
              for image in (taken[path].images if taken and path in taken else _read_images(path))]
    placed = place_slices(images)
    if placed.excluded and not getattr(pack, "tolerates_excluded_slices", False):
        first_uid, first_reason = placed.excluded[0]
        raise ValueError(f"{len(placed.excluded)} of {len(images)} slices cannot be placed (first: {first_uid}:"
                         f" {first_reason}); this model needs the whole volume")
    if not placed.slices:
        raise ValueError("no slice of the series can be placed")
    return placed.slices, placed.excluded


def _read_images(path: str) -> list[pydicom.Dataset]:
    """The images of one source file (every frame), its patient and study attributes made valid."""
    ds = pydicom.dcmread(path)
    repair_demographics(ds, str(ds.get("SeriesInstanceUID", "")))
    return expand_frames(ds)


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
        pack = _pack(spec.pack, spec.weights)
        if not getattr(pack, "slice_wise", False):
            return ReadAheadOutcome(spec.model, False, series_uid=spec.series_uid)
        engine = _engine(spec, pack)
        key = _model_key(spec, pack)
        fresh: list[CachedFile] = []
        for path in spec.instance_paths:
            identity = file_identity(path)
            if identity is None or _SLICES.get(key, identity) is not None:
                continue
            fresh.append(CachedFile.of(_read_images(path)))
            _SLICES.put(key, identity, fresh[-1])
        images = [image for entry in fresh for image in entry.images]
        if images:
            outputs = iter(outputs_by_image(
                images, run_batched(engine, pack.preprocess(images), spec.batch_size or pack.batch_size)))
            for entry in fresh:
                entry.outputs = [next(outputs) for _ in entry.images]
        return ReadAheadOutcome(spec.model, True, len(images), time.perf_counter() - started,
                                series_uid=spec.series_uid)
    except Exception as exc:
        reason = scrub(f"{type(exc).__name__}: {exc}")[:300]
        return ReadAheadOutcome(spec.model, True, 0, time.perf_counter() - started, reason, spec.series_uid)


def _outputs_read_ahead(taken: dict[str, CachedFile]) -> dict[int, dict[str, np.ndarray]]:
    """The outputs read ahead, by ``id`` of their image."""
    return {id(image): out for entry in taken.values() if entry.outputs
            for image, out in zip(entry.images, entry.outputs)}


def _merge_outputs(series: Sequence[pydicom.Dataset], known: dict[int, dict[str, np.ndarray]],
                   missing: Sequence[pydicom.Dataset], outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of every image of ``series``, in its order: read ahead, or just run (``missing``)."""
    if missing:
        known = {**known, **dict(zip(map(id, missing), outputs_by_image(missing, outputs)))}
    return stack_outputs([known[id(image)] for image in series])


def _take_read_ahead(spec: JobSpec, pack: ModelPack) -> dict[str, CachedFile]:
    """The entries read ahead for the job's files (taken out of the cache: a job uses them once)."""
    if not getattr(pack, "slice_wise", False) or not len(_SLICES):
        return {}
    key = _model_key(spec, pack)
    taken = {path: _SLICES.take(key, file_identity(path)) for path in spec.instance_paths}
    return {path: entry for path, entry in taken.items() if entry is not None}


def _write(spec: JobSpec, pack: ModelPack, series: list[pydicom.Dataset], findings: Any,
           context: ResultContext) -> list[tuple[str, str, str]]:
    """Build, name and save the result objects; hand each over as soon as it is saved.

    A pack with ``stream_results`` (same arguments as ``write_results``, yields the
    objects one by one, every object after those it references) is saved object by
    object as it builds them; otherwise its list is saved in order.
    """
    stream = getattr(pack, "stream_results", None)
    handover = _HANDOVER if spec.hand_over else None
    out_dir = Path(spec.out_dir)
    if stream is None or handover is None:
        objects = pack.write_results(series, findings, context)
        stable_result_series(objects, spec.series_uid, spec.model)
        saved = []
        for ds in objects:
            saved.append(_save_one(ds, out_dir))
            if handover is not None:
                handover.put((spec.job_id, *saved[-1]))
        return saved
    stable = StableSeries(spec.series_uid, spec.model)
    saved = []
    for obj in stream(series, findings, context):
        if isinstance(obj, EncodedObject):
            stable.learn_series(obj.series_instance_uid, obj.series_number)
            if stable.changes_nothing():  # its series UIDs are already the stable ones: save it as it came
                saved.append(_save_encoded(obj, out_dir))
                handover.put((spec.job_id, *saved[-1]))
                continue
            obj = obj.dataset()
        stable.learn(obj)
        stable.apply(obj)
        saved.append(_save_one(obj, out_dir))
        handover.put((spec.job_id, *saved[-1]))
    return saved


def _stable_uids(spec: JobSpec) -> Any:
    """``ResultContext.series_uid_for`` of a job: the UIDs :class:`StableSeries` would give."""
    if not spec.series_uid:
        return lambda _number: str(generate_uid())
    return lambda number: stable_series_uid(spec.series_uid, spec.model, str(number))


def stable_series_uid(source_series_uid: str, model: str, series_number: str) -> str:
    """The Series Instance UID of a model's result series: the same for every run on the source series."""
    return str(generate_uid(entropy_srcs=[source_series_uid, model, series_number]))


class StableSeries:
    """Result series UIDs derived from the source series, the model and each Series Number.

    A job run again (a late image, an operator's re-run) then sends its new objects into
    the same result series as the first run, as new instances, instead of a second copy
    of every series. References between the job's objects (an SR citing its SEG) follow,
    to the series of every object :meth:`learn` has seen.
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


def _pack(name: str, weights: str | None) -> ModelPack:
    key = (name, weights)
    if key not in _PACKS:
        _PACKS[key] = load_pack(name, Path(weights) if weights else None)
    return _PACKS[key]


def engine_cache_key(spec: JobSpec) -> tuple[Any, ...]:
    """Every field of ``spec`` that selects the engine it runs on (not the job's own data).

    Two models that differ in any of them (e.g. two Triton models on one server) get
    their own engine; ``triton_model`` unset means the model's name, as in :func:`_engine`.
    """
    return (
        spec.model, spec.pack, spec.weights, spec.engine, spec.batch_size, spec.engine_cache_dir,
        spec.triton_url, spec.triton_model or spec.model,
    )


def _model_key(spec: JobSpec, pack: ModelPack) -> tuple[Any, ...]:
    """Every field that selects the engine and the weights ``spec`` runs on."""
    return (*engine_cache_key(spec), str(pack.model_path()))


def _engine(spec: JobSpec, pack: ModelPack) -> Engine:
    key = _model_key(spec, pack)
    if key not in _ENGINES:
        options = EngineOptions(
            cache_dir=Path(spec.engine_cache_dir) if spec.engine_cache_dir else None,
            network_module=network_module(pack),
            triton_url=spec.triton_url,
            triton_model=spec.triton_model or spec.model,
        )
        _ENGINES[key] = create_engine(spec.engine, pack.model_path(), options)
    return _ENGINES[key]


def network_module(pack: ModelPack) -> str:
    """The module with ``build_network`` next to the pack (``models.<pack>.net``)."""
    return type(pack).__module__.rsplit(".", 1)[0] + ".net"


def _save(objects: Sequence[pydicom.Dataset], out_dir: Path) -> list[tuple[str, str, str]]:
    return [_save_one(ds, out_dir) for ds in objects]


def _save_encoded(obj: EncodedObject, out_dir: Path) -> tuple[str, str, str]:
    """Write an encoded object durably as ``<SOP Instance UID>.dcm``; ``(sop_uid, sop_class, path)``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{obj.sop_instance_uid}.dcm"
    write_durable(path, obj.data)
    return obj.sop_instance_uid, obj.sop_class_uid, str(path)


def _save_one(ds: pydicom.Dataset, out_dir: Path) -> tuple[str, str, str]:
    """Write ``ds`` durably as ``<SOP Instance UID>.dcm``; ``(sop_uid, sop_class, path)``."""
    return _save_encoded(EncodedObject.of(ds), out_dir)
