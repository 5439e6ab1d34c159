"""What the status page shows: queues, recent work, failures, dead letters, engines, disk.

One snapshot of the job store and of the node's health, taken per request. Free-text
reasons are scrubbed (:func:`node.redact.scrub`) as the JSON API does; no patient
attribute is read.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from ...redact import scrub
from ...states import FailureStage, InstanceState, JobState, ResultState, SeriesState
from ...store import JobRow, JobStore

__all__ = ["DeadLetter", "JobLine", "Snapshot", "snapshot"]

RECENT_JOBS = 20
IN_FLIGHT = (SeriesState.RECEIVED, SeriesState.COMPLETE)


@dataclass
class JobLine:
    """A job with its timeline: (state, seconds since the job was created, seconds in that state, detail)."""

    job: JobRow
    timeline: list[tuple[str, float, float | None, str]]


@dataclass
class DeadLetter:
    """The results of one job that used up their delivery attempts to one destination."""

    count: int
    job_id: int
    model: str
    destination: str
    attempts: int
    error: str


@dataclass
class Snapshot:
    """Everything on the status page."""

    version: str
    health: dict[str, Any]
    queues: dict[str, dict[str, int]]
    in_flight: list[dict[str, Any]]
    recent: list[JobLine]
    failures: list[JobRow]
    dead_letters: list[DeadLetter]
    engines: dict[str, str | None]
    taken_at: float = field(default_factory=time.time)


def snapshot(store: JobStore, health: Callable[[], dict[str, Any]], models: Sequence[str], version: str) -> Snapshot:
    """The node's state now."""
    queues = {
        "instances": _counts(InstanceState, store.instance_counts()),
        "series": _counts(SeriesState, store.series_counts()),
        "jobs": _counts(JobState, store.job_counts()),
        "results": _counts(ResultState, store.result_counts()),
    }
    now = time.time()
    in_flight = [{"series": s.series_uid, "state": s.state, "instances": s.instance_count,
                  "open_for": now - s.first_received, "quiet": now - s.last_received}
                 for state in IN_FLIGHT for s in store.series_in_state(state)]
    recent_jobs = store.list_jobs(None, RECENT_JOBS)
    recent = [JobLine(_clean(job), timeline(store.job_events(job.id), job.created_at)) for job in recent_jobs]
    failed = [_clean(job) for job in store.list_jobs(JobState.FAILED, 50)]
    dead = [letter for job in failed if job.stage == FailureStage.DELIVER for letter in _dead_letters(store, job)]
    return Snapshot(version, health(), queues, in_flight, recent, failed, dead,
                    engines(models, store.list_jobs(None, 500)))


def timeline(events: Sequence[dict[str, Any]], created_at: float) -> list[tuple[str, float, float | None, str]]:
    """Each state change: its state, when (seconds after ``created_at``), how long it lasted, and its detail."""
    rows = []
    for i, event in enumerate(events):
        until = events[i + 1]["at"] - event["at"] if i + 1 < len(events) else None
        rows.append((str(event["state"]), event["at"] - created_at, until, scrub(event.get("detail")) or ""))
    return rows


def engines(models: Sequence[str], jobs: Sequence[JobRow]) -> dict[str, str | None]:
    """The engine each model last ran on (``None``: not known yet, no job of it has run)."""
    found: dict[str, str | None] = dict.fromkeys(models)
    for job in jobs:  # newest first
        if job.engine and not found.get(job.model):
            found[job.model] = job.engine
    return found


def _dead_letters(store: JobStore, job: JobRow) -> list[DeadLetter]:
    by_destination: dict[str, list[Any]] = {}
    for result in store.job_results(job.id):
        if result.state == ResultState.DEAD:
            by_destination.setdefault(result.destination, []).append(result)
    return [DeadLetter(len(rows), job.id, job.model, destination, max(r.attempts for r in rows),
                       scrub(rows[-1].last_error) or "") for destination, rows in by_destination.items()]


def _counts(states: Any, counts: dict[str, int]) -> dict[str, int]:
    """Every state of the enum, zero where none is in it."""
    return {str(state): int(counts.get(str(state), 0)) for state in states}


def _clean(job: JobRow) -> JobRow:
    return replace(job, reason=scrub(job.reason))
