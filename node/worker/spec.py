"""What crosses the process boundary: the job a worker is given and what came of it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..states import FailureStage
from ..store.rows import ResultObject

__all__ = ["JobOutcome", "JobSpec"]


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
    on_out_of_domain: str = "withhold"
    """The route's ``on_out_of_domain``: ``withhold``, ``flag`` or ``ignore`` (see :mod:`node.worker.out_of_domain`)."""
    may_park: bool = False
    """Asked to yield while writing a stream, the job may park in its process (one worker: its next run is there)."""
    sent_before: tuple[ResultObject, ...] = ()
    """Objects an interrupted run of the job sent, or is sending (``results_sent``): this run's
    objects in their places take their UIDs (:class:`node.worker.result_uids.SentBefore`)."""


@dataclass(frozen=True)
class JobOutcome:
    """What came of a job: result files, the stage and reason of the failure, or that it yielded."""

    job_id: int
    ok: bool
    stage: FailureStage | None = None
    reason: str | None = None
    engine: str | None = None
    results: tuple[ResultObject, ...] = ()
    inference_seconds: float = 0.0
    total_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    yielded: bool = False
    """The job gave its worker up to stat work (not ``ok``, not a failure)."""
    parked: bool = False
    """It yielded while writing: objects of it are out, the rest waits in the worker process for its next run."""
