"""The shapes of the HTTP API's requests and answers (pydantic models, shown in ``/openapi.json``)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator

from ..redact import scrub
from ..states import FailureStage, JobState, ResultState, SeriesState

__all__ = ["Event", "JobDetail", "JobList", "JobOut", "ProcessOut", "ProcessRequest", "QuarantineList", "QuarantinedInstance", "ResultOut", "RetryOut", "SeriesDetail"]


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
    created_at: float
    updated_at: float

    _scrub = field_validator("reason")(lambda cls, v: scrub(v))


class JobDetail(JobOut):
    """A job with its state history and its results per destination."""

    events: list[Event]
    results: list[ResultOut]


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
