"""What the run stage does with a written job's applicability: the route's action, the store, the metrics."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from ..config import Config
from ..logs import log
from ..metrics import Metrics
from ..store import JobRow, JobStore

__all__ = ["note_applicability", "on_out_of_domain"]

_logger = logging.getLogger("ainode.run")


def on_out_of_domain(config: Config, route: str) -> str:
    """The ``on_out_of_domain`` of the route called ``route`` (``withhold`` for a route no longer configured)."""
    return next((str(r.on_out_of_domain) for r in config.routes if r.name == route), "withhold")


def note_applicability(store: JobStore, metrics: Metrics, job: JobRow, summary: Mapping[str, Any]) -> None:
    """Store the job's score and count it (histogram, out-of-domain counter, drift); never raises."""
    entry = summary.get("applicability")
    try:
        metrics.applicability.record(job.model, summary)
        if entry:
            store.set_job_applicability(job.id, float(entry["score"]), float(entry["threshold"]), str(entry["action"]))
    except Exception as exc:  # a score must never stop a job
        log(_logger, logging.WARNING, "applicability not recorded", job_id=job.id, reason=type(exc).__name__)
