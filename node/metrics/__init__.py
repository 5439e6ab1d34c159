"""Prometheus metrics of one node, in their own registry.

Names follow the Prometheus conventions: base units (``_seconds``, ``_bytes``), ``_total``
on counters (prometheus-client adds it to a counter's name), ``_info`` for constant
labels with value 1. Labels take values from a bounded set only (states, stages, reasons,
configured model, route and destination names); never a UID or patient data.
"""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Iterable
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from .applicability import ApplicabilityMetrics
from .store import StoreCollector, StoreCounts
from ..states import FAILURE_STAGES, TIMED_STAGES, ResultState, SeriesState

__all__ = ["Metrics", "STAGES", "build_version"]

_INFERENCE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

STAGES: tuple[str, ...] = tuple(stage.value for stage in TIMED_STAGES)
"""The ``stage`` label values of ``ainode_stage_duration_seconds``, in pipeline order
(:data:`node.states.TIMED_STAGES`): ``receive`` first instance received → series complete;
``queue`` job queued → claimed by a worker; ``load`` … ``write`` the worker's steps;
``deliver`` job written → every result delivered."""


def build_version() -> str:
    """The installed ainode package's version (``0.0.0`` when run from an uninstalled tree)."""
    try:
        return version("ainode")
    except PackageNotFoundError:
        return "0.0.0"


class Metrics:
    """Every metric the node exposes on ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._add_ingest_metrics(self.registry)
        self._add_series_metrics(self.registry)
        self._add_job_metrics(self.registry)
        self._add_delivery_metrics(self.registry)
        self._add_latency_metrics(self.registry)
        self.applicability = ApplicabilityMetrics(self.registry)
        self.build_info = Info("ainode_build", "The node's version and Python (value 1)", registry=self.registry)
        self.build_info.info({"version": build_version(), "python": platform.python_version()})

    def _add_ingest_metrics(self, r: CollectorRegistry) -> None:
        """What ingest received, set aside or refused, and the guards it answers by (associations, disk)."""
        self.instances_received = Counter(
            "ainode_instances_received", "Instances received (C-STORE or STOW-RS) by outcome (stored, duplicate, replaced,"
            " error)",
            ["outcome"], registry=r,
        )
        self.instances_late = Counter(
            "ainode_instances_late", "Instances that arrived after their series was complete", registry=r
        )
        self.instances_quarantined = Counter(
            "ainode_instances_quarantined", "Stored instances set aside because their header cannot be used, by error",
            ["reason"], registry=r,
        )
        self.instances_rejected = Counter(
            "ainode_instances_rejected",
            "C-STORE requests refused before storing, by reason (unreadable, uid_mismatch, invalid_uid,"
            " too_large, disk_full, out_of_resources)",
            ["reason"], registry=r,
        )
        self.instances_duplicate = Counter(
            "ainode_instances_duplicate",
            "Instances received again under a SOP Instance UID already held, by what was done (identical,"
            " kept_first, replaced, replaced_quarantined)",
            ["action"], registry=r,
        )
        self.contexts_rejected = Counter(
            "ainode_presentation_contexts_rejected",
            "Presentation contexts refused at association, by reason (transfer_syntax: none of its syntaxes"
            " can be decoded here; abstract_syntax: not a storage class the node takes)",
            ["reason"], registry=r,
        )
        self.associations_rejected = Counter(
            "ainode_associations_rejected",
            "A-ASSOCIATE-RQ answered A-ASSOCIATE-RJ, by reason (calling_ae_title, called_ae_title,"
            " association_limit)",
            ["reason"], registry=r,
        )
        self.associations_open = Gauge(
            "ainode_associations_open", "DICOM associations admitted and still running", registry=r,
        )
        self.received_bytes = Counter(
            "ainode_received_bytes", "Bytes of the datasets accepted (stored, duplicate or replaced), as received",
            registry=r,
        )
        self.disk_free_bytes = Gauge(
            "ainode_disk_free_bytes", "Free bytes on the spool's file system (as the disk guard sees it)",
            registry=r,
        )
        self.disk_below_watermark = Gauge(
            "ainode_disk_below_watermark", "1 while the spool's free space is below the disk guard's floor",
            registry=r,
        )

    def _add_series_metrics(self, r: CollectorRegistry) -> None:
        """What the assembler and the router did with complete series."""
        self.series_reopened = Counter(
            "ainode_series_reopened", "Series assembled again because an image arrived after their jobs ran",
            registry=r,
        )
        self.series_completed = Counter(
            "ainode_series_completed", "Series the assembler declared complete", registry=r
        )
        self.series_routed = Counter(
            "ainode_series_routed", "Completed series by routing outcome (routed, ignored)", ["outcome"], registry=r
        )
        self.study_route_decisions = Counter(
            "ainode_study_route_decisions", "Study-level routes decided, by route and decision (fired, incomplete)",
            ["route", "decision"], registry=r
        )

    def _add_job_metrics(self, r: CollectorRegistry) -> None:
        """How jobs ran: failures, read-ahead, preemptions, engine and whole-job times, the engine of each model."""
        self.job_failures = Counter(
            "ainode_job_failures", "Failed jobs by model and stage", ["model", "stage"], registry=r
        )
        self.slices_read_ahead = Counter(
            "ainode_slices_read_ahead", "Slices a worker read and ran while their series was still arriving",
            ["model"], registry=r
        )
        self.preemptions = Counter(
            "ainode_preemptions", "Running jobs that yielded their worker to a stat job (queued again), by route",
            ["route"], registry=r
        )
        self.inference_seconds = Histogram(
            "ainode_inference_seconds", "Engine time per series", ["model", "engine"],
            buckets=_INFERENCE_BUCKETS, registry=r,
        )
        self.pipeline_seconds = Histogram(
            "ainode_pipeline_seconds", "Whole job time per series (load to written)", ["model"],
            buckets=_INFERENCE_BUCKETS, registry=r,
        )
        self.engine_info = Gauge(
            "ainode_engine_info", "The engine each model runs on (value 1)", ["model", "engine"], registry=r
        )

    def _add_delivery_metrics(self, r: CollectorRegistry) -> None:
        """What the outbox sent."""
        self.egress_results = Counter(
            "ainode_egress_results", "Result objects sent, by destination and outcome (delivered, retry, dead)",
            ["destination", "outcome"], registry=r,
        )
        self.result_reviews = Counter(
            "ainode_result_reviews", "Radiologists' verdicts on jobs' results, by model and verdict (accepted, rejected)",
            ["model", "verdict"], registry=r,
        )
        self.retractions = Counter(
            "ainode_retractions",
            "Retraction items (IOCM rejection notes; an Orthanc deletes the instances instead) tried, by destination"
            " and outcome (retracted, error); marked results left in place, by why (kept: retract_superseded = false;"
            " unbuildable: their files are gone)",
            ["destination", "outcome"], registry=r,
        )

    def _add_latency_metrics(self, r: CollectorRegistry) -> None:
        """Time per pipeline stage, and from first instance to last result delivered."""
        self.stage_duration_seconds = Histogram(
            "ainode_stage_duration_seconds",
            "Time spent per pipeline stage (receive, queue, load, engine, preprocess, inference, postprocess,"
            " write, delivery) by model; receive of a series no route takes has model=\"none\";"
            " queue also by the job's priority (stat, urgent, routine; empty for the other stages)",
            ["stage", "model", "priority"], buckets=_STAGE_BUCKETS, registry=r,
        )
        self.series_latency_seconds = Histogram(
            "ainode_series_latency_seconds",
            "From a series' first instance received to the last result of its job delivered, by model",
            ["model"], buckets=_STAGE_BUCKETS, registry=r,
        )

    def declare(self, models: Iterable[str], destinations: Iterable[str]) -> None:
        """Create every bounded label set at 0 before its first event.

        A series that appears with its first increment already in it is invisible to
        ``rate()`` and ``increase()``; declared at 0, the first series processed counts.
        """
        models, destinations = list(dict.fromkeys(models)), list(dict.fromkeys(destinations))
        for outcome in ("stored", "duplicate", "replaced", "error"):
            self.instances_received.labels(outcome)
        for state in (SeriesState.ROUTED, SeriesState.IGNORED):
            self.series_routed.labels(state.value)
        self.stage_duration_seconds.labels("receive", "none", "")
        for model in models:
            self.series_latency_seconds.labels(model)
            self.pipeline_seconds.labels(model)
            self.slices_read_ahead.labels(model)
            for stage in STAGES:
                self.stage_duration_seconds.labels(stage, model, "routine" if stage == "queue" else "")
            for failure in FAILURE_STAGES:
                self.job_failures.labels(model, failure.value)
        for destination in destinations:
            for outcome in (ResultState.DELIVERED.value, "retry", ResultState.DEAD.value):
                self.egress_results.labels(destination, outcome)
            for outcome in (ResultState.RETRACTED.value, "error"):
                self.retractions.labels(destination, outcome)
        for model in models:
            for verdict in ("accepted", "rejected"):  # node.store.reviews.Verdict
                self.result_reviews.labels(model, verdict)

    def observe_stage(self, stage: str, model: str, seconds: float, priority: str = "") -> None:
        """One ``ainode_stage_duration_seconds`` observation (``stage`` one of :data:`STAGES`).

        ``priority`` (``stat``, ``urgent``, ``routine``: bounded) labels the ``queue`` stage
        only; the other stages keep an empty one, which Prometheus treats as no label.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        label = str(priority or "routine") if stage == "queue" else ""
        self.stage_duration_seconds.labels(stage, model, label).observe(max(0.0, seconds))

    def watch_store(self, store: StoreCounts) -> None:
        """Expose the queue depths (``ainode_{instances,series,jobs,results}{state}``,
        ``ainode_dead_letters``), read from ``store`` at each scrape."""
        self.registry.register(StoreCollector(store))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
