"""Prometheus metrics of one node, in their own registry."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .states import JobState

__all__ = ["Metrics"]

_INFERENCE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class _JobStateCollector(Collector):
    """Jobs by state, read from the job store at scrape time."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("ainode_jobs", "Jobs in the job store by state", labels=["state"])
        counts = dict(self._counts())
        for state in JobState:
            counts.setdefault(state.value, 0)
        for state, n in sorted(counts.items()):
            family.add_metric([state], n)
        yield family


class Metrics:
    """Every metric the node exposes on ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.instances_received = Counter(
            "ainode_instances_received", "C-STORE requests by outcome (stored, duplicate, error)",
            ["outcome"], registry=r,
        )
        self.instances_late = Counter(
            "ainode_instances_late", "Instances that arrived after their series was complete", registry=r
        )
        self.instances_quarantined = Counter(
            "ainode_instances_quarantined", "Stored instances set aside because their header cannot be used, by error",
            ["reason"], registry=r,
        )
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
        self.job_failures = Counter(
            "ainode_job_failures", "Failed jobs by model and stage", ["model", "stage"], registry=r
        )
        self.inference_seconds = Histogram(
            "ainode_inference_seconds", "Engine time per series", ["model", "engine"],
            buckets=_INFERENCE_BUCKETS, registry=r,
        )
        self.pipeline_seconds = Histogram(
            "ainode_pipeline_seconds", "Whole job time per series (load to written)", ["model"],
            buckets=_INFERENCE_BUCKETS, registry=r,
        )
        self.egress_results = Counter(
            "ainode_egress_results", "Result objects sent, by destination and outcome (delivered, retry, dead)",
            ["destination", "outcome"], registry=r,
        )
        self.engine_info = Gauge(
            "ainode_engine_info", "The engine each model runs on (value 1)", ["model", "engine"], registry=r
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
        self.disk_free_bytes = Gauge(
            "ainode_disk_free_bytes", "Free bytes on the spool's file system (as the disk guard sees it)",
            registry=r,
        )
        self.disk_below_watermark = Gauge(
            "ainode_disk_below_watermark", "1 while the spool's free space is below the disk guard's floor",
            registry=r,
        )
        self.associations_rejected = Counter(
            "ainode_associations_rejected",
            "A-ASSOCIATE-RQ answered A-ASSOCIATE-RJ, by reason (calling_ae_title, called_ae_title,"
            " association_limit)",
            ["reason"], registry=r,
        )

    def watch_job_states(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Expose ``ainode_jobs{state=...}`` from the job store."""
        self.registry.register(_JobStateCollector(counts))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
