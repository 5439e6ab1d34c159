"""The shapes of the HTTP API's requests and answers (pydantic models, shown in ``/openapi.json``)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from ..config.choices import Priority
from ..redact import scrub
from ..states import FailureStage, JobState, OutboxKind, ResultState, SeriesState
from ..store.reviews import RejectReason, Verdict

__all__ = ["Event", "JobDetail", "JobList", "JobOut", "ProcessOut", "ProcessRequest", "QuarantineList", "QuarantinedInstance", "ResultOut", "RetryOut", "ReviewIn", "ReviewOut", "SeriesDetail"]


class Event(BaseModel):
    """One state change."""

    at: float
    state: str
    detail: str | None = None

    _scrub = field_validator("detail")(lambda cls, v: scrub(v))


class ResultOut(BaseModel):
    """One result object for one destination."""

    id: int
    sop_instance_uid: str
    sop_class_uid: str
    destination: str
    state: ResultState
    attempts: int
    next_attempt_at: float
    last_error: str | None = None
    kind: OutboxKind = OutboxKind.DELIVER
    """``deliver``, or ``retract``: an IOCM rejection note withdrawing delivered results."""

    _scrub = field_validator("last_error")(lambda cls, v: scrub(v))


class JobOut(BaseModel):
    """A job as listed."""

    id: int
    series_uid: str
    generation: int
    route: str
    model: str
    destinations: list[str]
    state: JobState
    stage: FailureStage | None = None
    reason: str | None = None
    engine: str | None = None
    timings: dict[str, float] = {}
    runs: int
    priority: Priority = Priority.ROUTINE
    """``stat``, ``urgent`` or ``routine``: the order in which workers claim it and its results go out."""
    applicability_score: float | None = None
    """How far the input was from the model's domain (above the threshold: outside it; None: not scored)."""
    applicability_threshold: float | None = None
    out_of_domain_action: str | None = None
    """``withhold``, ``flag`` or ``ignore`` for an input outside the domain, ``none`` inside."""
    created_at: float
    updated_at: float

    _scrub = field_validator("reason")(lambda cls, v: scrub(v))


class ReviewIn(BaseModel):
    """A radiologist's verdict: ``accepted``, or ``rejected`` with a reason."""

    verdict: Verdict
    reason: RejectReason | None = None
    comment: str | None = Field(None, max_length=500)
    reviewer: str | None = Field(None, max_length=64)
    """The name the radiologist gives, recorded beside the session's identity."""


class ReviewOut(BaseModel):
    """A verdict as recorded: who, when, and (a rejection) why and how many results it retracts."""

    id: int
    job_id: int
    verdict: Verdict
    reason: RejectReason | None = None
    reviewer: str
    comment: str | None = None
    at: float
    retracting: int = 0


class JobDetail(JobOut):
    """A job with its state history and its results per destination."""

    events: list[Event]
    results: list[ResultOut]
    reviews: list[ReviewOut] = []


class JobList(BaseModel):
    jobs: list[JobOut]


class SeriesDetail(BaseModel):
    """A series: its state, receive times, history and jobs (coded routing attributes only: no patient data)."""

    series_uid: str
    study_uid: str
    state: SeriesState
    attrs: dict[str, Any]
    withheld_attrs: list[str] = []
    """Free-text attributes the series has but the answer leaves out (``[http] show_free_text``)."""
    instance_count: int
    generation: int
    first_instance_at: float | None
    last_instance_at: float | None
    events: list[Event]
    jobs: list[JobOut]


class QuarantinedInstance(BaseModel):
    sop_instance_uid: str
    received_at: float
    calling_ae: str | None = None
    reason: str | None = None

    _scrub = field_validator("reason")(lambda cls, v: scrub(v))


class QuarantineList(BaseModel):
    instances: list[QuarantinedInstance]


class RetryOut(BaseModel):
    """What a retry did: ``dead letters requeued`` or ``queued again``."""

    job_id: int | None = None
    action: str
    requeued: int


class ProcessRequest(BaseModel):
    """Which ``[[sources]]`` entry to retrieve the study from, and optionally which routes to run."""

    source: str
    routes: list[str] | None = None


class ProcessOut(BaseModel):
    """What a process request did: instances taken in, and finished jobs run again."""

    study_uid: str
    source: str
    stored: int
    duplicate: int
    refused: int
    rerun_jobs: list[int]
