"""What the job store hands out: plain, frozen rows."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, NamedTuple

from ..config.choices import Priority
from ..states import InstanceState, JobState, OutboxKind, ResultState, SeriesState, Stage

__all__ = ["InstanceRow", "JobRow", "ResultObject", "ResultRow", "SeriesRow"]


@dataclass(frozen=True)
class InstanceRow:
    """A received instance."""

    sop_instance_uid: str
    sop_class_uid: str
    path: str
    received_at: float
    series_uid: str | None
    state: InstanceState = InstanceState.RECEIVED


@dataclass(frozen=True)
class SeriesRow:
    """A series and what the assembler needs to decide it is complete.

    ``unindexed`` counts instances already acknowledged for this series whose header the
    indexer has not read yet; ``last_received`` is the newest acknowledged instance.
    """

    series_uid: str
    study_uid: str
    state: SeriesState
    attrs: dict[str, Any]
    instance_count: int
    first_received: float
    last_received: float
    generation: int = 0
    unindexed: int = 0


@dataclass(frozen=True)
class JobRow:
    """One model run on one series: a row of ``jobs``.

    ``stage`` and ``reason`` say where and why a failed job failed; ``timings`` holds the
    seconds of each step of its last run; ``lease_owner``/``lease_until`` the worker that
    holds it while it runs.
    """

    id: int
    series_uid: str
    route: str
    model: str
    destinations: tuple[str, ...]
    state: JobState
    created_at: float
    updated_at: float
    generation: int = 0
    stage: Stage | None = None
    reason: str | None = None
    engine: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    runs: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    applicability_score: float | None = None
    """How far the job's input was from its model's domain (``None``: not scored; see :mod:`node.packs.applicability`)."""
    applicability_threshold: float | None = None
    """The model's threshold: a higher score is outside the domain."""
    out_of_domain_action: str | None = None
    """What the route did with an input outside the domain (``withhold``, ``flag``, ``ignore``); ``none`` inside."""
    priority: Priority = Priority.ROUTINE
    """``stat``, ``urgent`` or ``routine`` (issue 32): the claim and delivery order."""
    sender: str = ""
    """The calling AE title that sent the job's series (round robin of the claim)."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "JobRow":
        """The row as the store reads it (JSON columns decoded, states as enums)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in dict(record).items() if k in known}
        values["destinations"] = tuple(json.loads(values["destinations"]))
        values["timings"] = json.loads(values["timings"]) if values.get("timings") else {}
        values["state"] = JobState(values["state"])
        values["stage"] = Stage(values["stage"]) if values.get("stage") else None
        values["priority"] = Priority(values.get("priority") or Priority.ROUTINE)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The row as the HTTP API shows it."""
        return asdict(self)


class ResultObject(NamedTuple):
    """One result object, from the worker that wrote it to the sender that delivers it.

    Attributes
    ----------
    sop_instance_uid, sop_class_uid
        Of the object in the file.
    path
        The DICOM file as written by the result writer (Part 10, with its file meta).
    model
        The model (route ``model``) whose job made it; a destination may tag the study
        with it (Orthanc labels).
    """

    sop_instance_uid: str
    sop_class_uid: str
    path: str
    model: str = ""


@dataclass(frozen=True)
class ResultRow:
    """One result object for one destination, with its delivery state."""

    id: int
    job_id: int
    sop_instance_uid: str
    sop_class_uid: str
    path: str
    destination: str
    state: ResultState
    attempts: int
    next_attempt_at: float
    last_error: str | None
    model: str = ""
    kind: OutboxKind = OutboxKind.DELIVER
    """A delivery, or a retraction (its object is an IOCM rejection note)."""

    @property
    def object(self) -> ResultObject:
        """The object to deliver, as its sender takes it."""
        return ResultObject(self.sop_instance_uid, self.sop_class_uid, self.path, self.model)
