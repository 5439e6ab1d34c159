"""Every state of the pipeline and every allowed transition, in one place.

The job store refuses a transition that is not listed here (:class:`IllegalTransition`),
so a bug that would skip a step or resurrect finished work fails loudly instead of
silently losing or repeating it. No other module spells a state as a bare string.

::

    instance: received ─▶ indexed
                    └───▶ quarantined (header unreadable: reason recorded, never retried)
              quarantined | indexed ─▶ received (a new copy of it arrived and replaced the file)
    series:   received ─▶ complete ─▶ routed ─▶ purged ─▶ received (re-sent after retention)
                                  │       └─▶ received (reopened: an image arrived after its jobs ran)
                                  └─▶ ignored ─▶ purged
    job:      queued ─▶ running ─▶ written ─▶ delivered
                 │         │          └─────▶ failed (deliver: dead letters)
                 │         ├─▶ failed (load, engine, preprocess, inference, postprocess, write, worker)
                 │         └─▶ queued (lease expired: the worker died; or it yielded its
                 │                     worker to a stat job: not a failure, not a run)
                 └─▶ failed (spec: the job cannot even be described to a worker)
              failed | delivered ─▶ queued (an operator re-runs it)
              failed (deliver) ─▶ written (an operator replays its dead letters)
              any but superseded ─▶ superseded (its series was reopened: a new job sees every image)
    study route: waiting ─▶ fired (every required series complete: one job for the study)
                      └─▶ incomplete (study_timeout_seconds passed first: recorded, no job)
    result:   pending ─▶ delivered ─▶ retracted (its job was rejected or superseded: the
                 │   │                         destination deleted it, or took a rejection note)
                 │   └─▶ dead ─▶ pending (replayed)
                 └──────────────▶ superseded (its job was re-run: a newer result replaces it)
    An outbox item is a delivery or a retraction (:class:`OutboxKind`); both move through
    the result states (a retraction: pending ─▶ delivered | dead ─▶ pending).
"""
from __future__ import annotations

from enum import StrEnum
from typing import Iterable, Mapping, Protocol

__all__ = [
    "FAILURE_STAGES",
    "FailureStage",
    "NO_WAKEUPS",
    "Stage",
    "TIMED_STAGES",
    "Wakeups",
    "IllegalTransition",
    "InstanceState",
    "JobState",
    "OutboxKind",
    "RetractCause",
    "ResultState",
    "SeriesState",
    "StudyRouteState",
    "TRANSITIONS",
    "check_transition",
]


class InstanceState(StrEnum):
    """A received instance: durable, then indexed under its series, or quarantined.

    received
        Its file is on disk and acknowledged; its header is not read yet.
    indexed
        Its header is read and it is filed under its series.
    quarantined
        Its header is unreadable: the reason is recorded, it is never retried.
    """

    RECEIVED = "received"
    INDEXED = "indexed"
    QUARANTINED = "quarantined"


class SeriesState(StrEnum):
    """A series, from its first instance to the removal of its files.

    received
        Its instances are arriving (again, after a reopening or a re-send).
    complete
        Its sender is done with it (released, every expected instance, or quiet): ready to route.
    routed
        Its routes matched: its jobs are queued.
    ignored
        No route matched it.
    purged
        Its files were removed at the end of their retention.
    """

    RECEIVED = "received"
    COMPLETE = "complete"
    ROUTED = "routed"
    IGNORED = "ignored"
    PURGED = "purged"


class StudyRouteState(StrEnum):
    """A study-level route on one study: waiting for its required series, then decided once.

    waiting
        Some of the series it requires are not complete yet.
    fired
        Every required series is complete: one job for the study is queued.
    incomplete
        ``study_timeout_seconds`` passed before that: the decision is recorded, and no job is queued.
    """

    WAITING = "waiting"
    FIRED = "fired"
    INCOMPLETE = "incomplete"


class JobState(StrEnum):
    """One model run on one series.

    queued
        Waiting until a worker claims it.
    running
        Claimed by a worker, under a lease.
    written
        Its result objects are written: their delivery is under way.
    delivered
        Every result reached its destination (or there was nothing to deliver).
    failed
        It failed in the stage ``jobs.stage`` names, for the reason recorded.
    superseded
        Its series was reopened: a new job sees every image.
    """

    QUEUED = "queued"
    RUNNING = "running"
    WRITTEN = "written"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class ResultState(StrEnum):
    """One result object for one destination.

    pending
        Waiting in its destination's outbox (or for its next attempt).
    delivered
        Its destination took it.
    dead
        Every attempt failed: a dead letter, until an operator replays it.
    superseded
        Its job was re-run: a newer result replaces it.
    retracted
        Delivered, then withdrawn: its retraction reached the destination.
    """

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    SUPERSEDED = "superseded"
    RETRACTED = "retracted"


class RetractCause(StrEnum):
    """Why a delivered result is to be withdrawn from its destination (``results.retract_cause``).

    rejected
        A radiologist rejected the job's results.
    superseded
        The job was run again (a late image, an operator's re-run): newer results replace them.
    """

    REJECTED = "rejected"
    SUPERSEDED = "superseded"


class OutboxKind(StrEnum):
    """What an outbox item asks of its destination (``results.kind``).

    deliver
        Store the result object.
    retract
        Withdraw delivered results: the item is an IOCM rejection note referencing them; an
        Orthanc deletes the instances instead, a DIMSE or DICOMweb destination stores the note.
    """

    DELIVER = "deliver"
    RETRACT = "retract"


class Stage(StrEnum):
    """Every stage name the node uses, in one vocabulary: the stages of the pipeline (the
    rows of :mod:`node.pipeline.stages`), the steps of a job in its worker, and the spans
    that metrics time. A failed job records the stage it failed in (``jobs.stage``, one of
    :data:`FAILURE_STAGES`); ``ainode_stage_duration_seconds`` is labelled with one of
    :data:`TIMED_STAGES`."""

    INGEST = "ingest"
    INDEX = "index"
    ASSEMBLE = "assemble"
    ROUTE = "route"
    RUN = "run"
    DELIVER = "deliver"
    RETAIN = "retain"
    OPERATE = "operate"
    """An operator's request (HTTP API, ``ainode`` commands): re-run a job, replay dead letters."""
    RECEIVE = "receive"
    """First instance received → series complete (a timed span)."""
    QUEUE = "queue"
    """Job queued → claimed by a worker (a timed span)."""
    SPEC = "spec"
    LOAD = "load"
    ENGINE = "engine"
    PREPROCESS = "preprocess"
    INFERENCE = "inference"
    POSTPROCESS = "postprocess"
    WRITE = "write"
    WORKER = "worker"


FailureStage = Stage
"""Where a failed job failed (``jobs.stage``): a :class:`Stage`, one of :data:`FAILURE_STAGES`."""

FAILURE_STAGES: tuple[Stage, ...] = (
    Stage.SPEC, Stage.LOAD, Stage.ENGINE, Stage.PREPROCESS, Stage.INFERENCE, Stage.POSTPROCESS, Stage.WRITE,
    Stage.WORKER, Stage.DELIVER,
)
"""The stages a job can fail in: the worker's steps, the worker itself, and delivery."""

TIMED_STAGES: tuple[Stage, ...] = (
    Stage.RECEIVE, Stage.QUEUE, Stage.LOAD, Stage.ENGINE, Stage.PREPROCESS, Stage.INFERENCE, Stage.POSTPROCESS,
    Stage.WRITE, Stage.DELIVER,
)
"""The ``stage`` label values of ``ainode_stage_duration_seconds``, in pipeline order."""


class Wakeups(Protocol):
    """Who is told that work reached a state: the stage table wakes the stage that consumes it.

    Components get one :class:`Wakeups` (the node's :class:`node.pipeline.stages.Pipeline`)
    instead of one callback per neighbour.
    """

    def produced(self, *states: StrEnum) -> None:
        """Work reached ``states`` (committed to the store): wake the stages that consume them."""
        ...

    def released(self, series_uids: Iterable[str]) -> None:
        """The association or STOW-RS request that brought these series ended normally (now)."""
        ...


class _NoWakeups:
    """Nobody to wake in this process: the consuming stages poll the (shared) store."""

    def produced(self, *states: StrEnum) -> None:
        """Nothing to wake."""

    def released(self, series_uids: Iterable[str]) -> None:
        """Nothing to tell."""


NO_WAKEUPS: Wakeups = _NoWakeups()
"""The :class:`Wakeups` of a component alone (tests, a process whose consumers run elsewhere)."""


_I, _S, _J, _R, _T = InstanceState, SeriesState, JobState, ResultState, StudyRouteState

TRANSITIONS: Mapping[type, Mapping[StrEnum, frozenset[StrEnum]]] = {
    InstanceState: {
        _I.RECEIVED: frozenset({_I.INDEXED, _I.QUARANTINED}),
        _I.INDEXED: frozenset({_I.RECEIVED}),
        _I.QUARANTINED: frozenset({_I.RECEIVED}),
    },
    SeriesState: {
        _S.RECEIVED: frozenset({_S.COMPLETE}),
        _S.COMPLETE: frozenset({_S.ROUTED, _S.IGNORED}),
        _S.ROUTED: frozenset({_S.PURGED, _S.RECEIVED}),
        _S.IGNORED: frozenset({_S.PURGED}),
        _S.PURGED: frozenset({_S.RECEIVED}),
    },
    JobState: {
        _J.QUEUED: frozenset({_J.RUNNING, _J.FAILED, _J.SUPERSEDED}),
        _J.RUNNING: frozenset({_J.WRITTEN, _J.FAILED, _J.QUEUED, _J.SUPERSEDED}),
        _J.WRITTEN: frozenset({_J.DELIVERED, _J.FAILED, _J.SUPERSEDED}),
        _J.DELIVERED: frozenset({_J.QUEUED, _J.SUPERSEDED}),
        _J.FAILED: frozenset({_J.QUEUED, _J.WRITTEN, _J.SUPERSEDED}),
        _J.SUPERSEDED: frozenset(),
    },
    StudyRouteState: {
        _T.WAITING: frozenset({_T.FIRED, _T.INCOMPLETE}),
        _T.FIRED: frozenset(),
        _T.INCOMPLETE: frozenset(),
    },
    ResultState: {
        _R.PENDING: frozenset({_R.DELIVERED, _R.DEAD, _R.SUPERSEDED, _R.PENDING}),
        _R.DEAD: frozenset({_R.PENDING, _R.SUPERSEDED}),
        _R.DELIVERED: frozenset({_R.RETRACTED}),
        _R.SUPERSEDED: frozenset(),
        _R.RETRACTED: frozenset(),
    },
}
"""For each kind of state: from each state, the states it may move to."""


class IllegalTransition(RuntimeError):
    """A state change the pipeline does not allow (a bug, never an input problem)."""


def check_transition(old: StrEnum | str, new: StrEnum) -> None:
    """Raise :class:`IllegalTransition` unless ``old → new`` is allowed for ``type(new)``."""
    kind = type(new)
    table = TRANSITIONS[kind]
    try:
        current = kind(old)
    except ValueError as exc:
        raise IllegalTransition(f"{kind.__name__}: unknown state {old!r}") from exc
    if new not in table[current]:
        raise IllegalTransition(f"{kind.__name__}: {current.value} → {new.value} is not allowed")
