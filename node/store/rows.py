"""What the job store hands out: plain, frozen rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..states import InstanceState, ResultState, SeriesState

__all__ = ["InstanceRow", "ResultRow", "SeriesRow"]


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
class ResultRow:
    """One result object for one destination."""

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
