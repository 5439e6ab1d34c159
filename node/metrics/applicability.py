"""Applicability and drift metrics: how far inputs are from each model's domain, and what came of it.

- ``ainode_applicability_score{model}``: a histogram of every scored job's score;
- ``ainode_out_of_domain_total{model,action}``: jobs whose input was outside the domain, by the
  route's ``on_out_of_domain`` (``withhold``, ``flag``, ``ignore``);
- drift, per model over its last :data:`DRIFT_WINDOW` jobs written by this process:
  ``ainode_drift_out_of_domain_ratio{model}`` and ``ainode_drift_positive_ratio{model}``
  (jobs with a positive finding, among the jobs whose findings say present or absent), and
  ``ainode_drift_window_jobs{model}``, how many jobs the ratios are over.

A protocol change shows as a rising out-of-domain ratio; a broken detector as a positive ratio
far from the usual.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DRIFT_WINDOW", "ApplicabilityMetrics", "positive_of"]

DRIFT_WINDOW = 100
"""How many of a model's latest jobs the drift gauges are over."""
_ACTIONS = ("withhold", "flag", "ignore")
_SCORE_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0, 20.0)


def positive_of(summary: Mapping[str, Any]) -> bool | None:
    """Whether a job's findings summary says something was found (``None``: it says neither)."""
    flags = [bool(v) for k, v in summary.items() if k.endswith("_present") and isinstance(v, bool)]
    if flags:
        return any(flags)
    if isinstance(summary.get("nodules"), int):
        return summary["nodules"] > 0
    return None


class ApplicabilityMetrics:
    """The applicability histogram, the out-of-domain counter and the drift gauges, in ``registry``."""

    def __init__(self, registry: CollectorRegistry, window: int = DRIFT_WINDOW) -> None:
        self.score = Histogram("ainode_applicability_score", "Applicability score of each scored job's input"
                               " (above the model's threshold: outside its domain)", ["model"],
                               buckets=_SCORE_BUCKETS, registry=registry)
        self.out_of_domain = Counter("ainode_out_of_domain", "Jobs whose input was outside the model's domain,"
                                     " by the route's on_out_of_domain", ["model", "action"], registry=registry)
        self.drift_out_of_domain = Gauge("ainode_drift_out_of_domain_ratio", "Share of the model's latest jobs"
                                         " whose input was outside its domain", ["model"], registry=registry)
        self.drift_positive = Gauge("ainode_drift_positive_ratio", "Share of the model's latest evaluated jobs"
                                    " with a positive finding", ["model"], registry=registry)
        self.drift_jobs = Gauge("ainode_drift_window_jobs", "How many of the model's latest jobs the drift"
                                " ratios are over", ["model"], registry=registry)
        self._window = window
        self._recent: dict[str, deque[tuple[bool, bool | None]]] = {}
        self._lock = threading.Lock()

    def record(self, model: str, summary: Mapping[str, Any]) -> None:
        """Count one written job of ``model`` from its summary (its ``applicability`` entry, its findings)."""
        entry = summary.get("applicability") or {}
        outside = bool(entry.get("out_of_domain"))
        if "score" in entry:
            self.score.labels(model).observe(float(entry["score"]))
        if outside:
            self.out_of_domain.labels(model, str(entry.get("action", "withhold"))).inc()
        positive = None if outside and entry.get("action") == "withhold" else positive_of(summary)
        with self._lock:
            if model not in self._recent:  # every action's count shows, at 0 until a job takes it
                for action in _ACTIONS:
                    self.out_of_domain.labels(model, action)
            recent = self._recent.setdefault(model, deque(maxlen=self._window))
            recent.append((outside, positive))
            judged = [p for _, p in recent if p is not None]
            self.drift_out_of_domain.labels(model).set(sum(o for o, _ in recent) / len(recent))
            self.drift_jobs.labels(model).set(len(recent))
            if judged:
                self.drift_positive.labels(model).set(sum(judged) / len(judged))
