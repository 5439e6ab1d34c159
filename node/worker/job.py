"""One job, run in a worker process: load → engine → preprocess → inference → postprocess → write.

Before each step up to ``write`` and between inference batches the job may yield its worker
to stat work (:mod:`.yielding`): it then ends with an outcome marked ``yielded``, nothing written.
While writing, a job that may park stops after an object and its next run here goes on from it.

A failure is returned, not raised, with the stage it happened in, the time each stage
took, and a traceback scrubbed of values. An input the pack cannot use fails at ``load``
with the sentence of its :class:`~node.dicom.attributes.InputError` as the reason (the
attribute's name and tag and what is wrong), not an exception's text.
"""
from __future__ import annotations

import time
import traceback
from typing import Any, Callable

import numpy as np
import pydicom

from ..dicom.attributes import InputError
from ..packs.protocol import ModelPack, ResultContext
from ..redact import scrub
from ..results.aside import InlineAside
from ..states import FailureStage
from .engines import engine_for, pack_for, run_batched
from .out_of_domain import WITHHOLD, action_for, judge, summary_of, writer_for
from .process import RESULT_HELPER, log_to_json
from .reading_ahead import (descriptors_read_ahead, give_back_read_ahead, merge_outputs, outputs_read_ahead,
                            take_read_ahead)
from .result_uids import series_uid_naming
from .saving import Parked, parked, resume_parked, save_results
from .series import load_series
from .spec import JobOutcome, JobSpec
from .yielding import Yielded, check_yield

__all__ = ["run_job"]

_PREPROCESS_SLICES = 8
"""Slices a slice-wise pack preprocesses at once: a job may yield between them."""


class _StageError(Exception):
    def __init__(self, stage: FailureStage, cause: BaseException) -> None:
        super().__init__(stage)
        self.stage = stage
        self.cause = cause


class _Stages:
    """Runs the steps of one job, each under its stage: times them and tags what fails."""

    def __init__(self, job_id: int) -> None:
        self.seconds: dict[str, float] = {}
        self.job_id = job_id

    def run(self, name: FailureStage, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, its time added to stage ``name``; a failure raised as :class:`_StageError`.

        Before any step but ``write``, a safe point: :class:`Yielded` if the runner asked.
        """
        if name is not FailureStage.WRITE:
            check_yield(self.job_id)
        t0 = time.perf_counter()
        try:
            return fn(*args)
        except Yielded:
            raise
        except Exception as exc:
            raise _StageError(name, exc) from exc
        finally:
            self.seconds[name.value] = self.seconds.get(name.value, 0.0) + time.perf_counter() - t0

    @property
    def inference(self) -> float:
        """Seconds spent in the inference stage."""
        return self.seconds.get(FailureStage.INFERENCE.value, 0.0)


def run_job(spec: JobSpec) -> JobOutcome:
    """Run one job; never raises."""
    log_to_json()
    state = parked(spec.job_id)
    if state is not None:  # it yielded while writing, here: it goes on from there
        return _resume(spec, state)
    started = time.perf_counter()
    engine_name: str | None = None
    stages = _Stages(spec.job_id)
    stage = stages.run
    taken: dict[str, Any] = {}
    try:
        pack = stage(FailureStage.LOAD, pack_for, spec.pack, spec.weights)
        taken = stage(FailureStage.LOAD, take_read_ahead, spec, pack)
        series, excluded = stage(FailureStage.LOAD, load_series, spec.instance_paths, pack, taken)
        engine = stage(FailureStage.ENGINE, engine_for, spec, pack)
        engine_name = engine.name
        known = outputs_read_ahead(taken)
        missing = [image for image in series if id(image) not in known]
        outputs: dict[str, np.ndarray] = {}
        # every stage is reported, also one left with nothing to do
        stages.seconds.setdefault(FailureStage.PREPROCESS.value, 0.0)
        inputs = stage(FailureStage.PREPROCESS, _preprocess, pack, missing, spec.job_id) if missing else None
        ahead = len(series) - len(missing)
        verdict = stage(FailureStage.PREPROCESS, judge, pack, series, missing, inputs, descriptors_read_ahead(taken))
        action = action_for(verdict, spec.on_out_of_domain)
        findings = None
        if action != WITHHOLD:  # withheld: no finding is made, only the report that the image was not evaluated
            if missing:
                outputs = stage(FailureStage.INFERENCE, run_batched, engine, inputs,
                                spec.batch_size or pack.batch_size, lambda: check_yield(spec.job_id))
            if ahead:
                outputs = stage(FailureStage.INFERENCE, merge_outputs, series, known, missing, outputs)
            findings = stage(FailureStage.POSTPROCESS, pack.postprocess, series, outputs)
        context = ResultContext(algorithm=pack.algorithm, series_number_base=pack.series_number_base,
                                aside=RESULT_HELPER if spec.hand_over else InlineAside(),
                                series_uid_for=series_uid_naming(spec.series_uid, spec.model))
        summary = {**(findings.summary() if hasattr(findings, "summary") else {}), **summary_of(verdict, action)}
        if ahead:
            summary = {**summary, "slices_read_ahead": ahead}
        if excluded:
            summary = {**summary, "excluded_slices": [f"{uid}: {why}" for uid, why in excluded]}
        results = stage(FailureStage.WRITE, save_results, spec, writer_for(pack, verdict, action), series,
                        findings, context)
    except Yielded as exc:  # before its write: nothing written; while writing: parked here, goes on next time
        if taken and not exc.parked:  # the slices read ahead wait for its next run
            give_back_read_ahead(spec, pack, taken)
        outcome = JobOutcome(spec.job_id, False, reason="yielded its worker to a stat job", engine=engine_name,
                             inference_seconds=stages.inference, total_seconds=time.perf_counter() - started,
                             stage_seconds=stages.seconds, yielded=True, parked=exc.parked)
        if exc.parked:
            parked(spec.job_id).outcome.update(outcome=outcome, summary=summary)  # type: ignore[union-attr]
        return outcome
    except _StageError as exc:
        reason = scrub(_reason(exc.cause))[:500]
        return JobOutcome(
            spec.job_id, False, exc.stage, reason, engine_name,
            inference_seconds=stages.inference, total_seconds=time.perf_counter() - started,
            stage_seconds=stages.seconds, summary={"traceback": _traceback(exc.cause)},
        )
    return JobOutcome(
        spec.job_id, True, engine=engine_name, results=tuple(results),
        inference_seconds=stages.inference, total_seconds=time.perf_counter() - started,
        stage_seconds=stages.seconds, summary=summary,
    )


def _resume(spec: JobSpec, state: Parked) -> JobOutcome:
    """Go on writing a job parked in this process; its outcome is of both runs together."""
    before: JobOutcome = state.outcome["outcome"]
    started = time.perf_counter()
    seconds = dict(before.stage_seconds)
    try:
        results = resume_parked(spec)
        ok, stage, reason, yielded = True, None, None, False
    except Yielded:  # asked again: parked again
        results, ok, stage, reason, yielded = [], False, None, before.reason, True
    except Exception as exc:
        results, ok, stage, reason, yielded = [], False, FailureStage.WRITE, scrub(_reason(exc))[:500], False
    seconds[FailureStage.WRITE.value] = seconds.get(FailureStage.WRITE.value, 0.0) + time.perf_counter() - started
    outcome = JobOutcome(spec.job_id, ok, stage, reason, before.engine, tuple(results), before.inference_seconds,
                         before.total_seconds + time.perf_counter() - started, seconds,
                         state.outcome["summary"] if ok else {}, yielded=yielded, parked=yielded)
    state.outcome["outcome"] = outcome
    return outcome


def _preprocess(pack: ModelPack, images: list[pydicom.Dataset], job_id: int) -> dict[str, np.ndarray]:
    """``pack.preprocess(images)``; for a slice-wise pack a few slices at a time, with a safe point
    between them (the same arrays: each slice is preprocessed on its own)."""
    if not pack.slice_wise or len(images) <= _PREPROCESS_SLICES:
        return pack.preprocess(images)
    parts = []
    for start in range(0, len(images), _PREPROCESS_SLICES):
        if start:
            check_yield(job_id)
        parts.append(pack.preprocess(images[start:start + _PREPROCESS_SLICES]))
    return {key: np.concatenate([part[key] for part in parts], axis=0) for key in parts[0]}


def _reason(exc: BaseException) -> str:
    """Why a stage failed: an input error's own sentence (attribute, tag, defect), else the exception."""
    if isinstance(exc, InputError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _traceback(exc: BaseException) -> str:
    """The traceback of ``exc``: frames as they are (code, not data), the message scrubbed of values."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return (frames + (scrub("".join(traceback.format_exception_only(exc))) or ""))[-2000:]
