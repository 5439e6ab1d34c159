"""What the job store hands out: plain, frozen rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from ..states import InstanceState, ResultState, SeriesState

__all__ = ["InstanceRow", "ResultObject", "ResultRow", "SeriesRow"]


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

    @property
    def object(self) -> ResultObject:
        """The object to deliver, as its sender takes it."""
        return ResultObject(self.sop_instance_uid, self.sop_class_uid, self.path, self.model)
