"""The fixed sets of words the configuration takes, as string enums.

Each member is a ``str`` equal to its value, so code that compares a configured value with
a plain string (``destination.type == "dimse"``) keeps working. Each class's docstring
says what every value means, under the value as the configuration spells it.
"""
from __future__ import annotations

from enum import StrEnum

__all__ = ["DestinationType", "EngineName", "LogLevel", "OnDuplicate", "OnLate", "OnOutOfDomain", "Priority", "RouteLevel"]


class LogLevel(StrEnum):
    """``[node] log_level`` (given in any case, kept upper case)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class DestinationType(StrEnum):
    """The protocol of a ``[[destinations]]`` or ``[[sources]]`` entry.

    dimse
        C-STORE to ``host``, ``port``, ``ae_title`` (C-GET from a source).
    dicomweb
        STOW-RS (WADO-RS from a source) at ``url``, the DICOMweb root.
    orthanc
        Orthanc's REST API at ``url``.
    """

    DIMSE = "dimse"
    DICOMWEB = "dicomweb"
    ORTHANC = "orthanc"


class EngineName(StrEnum):
    """``[models.NAME] engine``: the inference backend, or ``auto`` (the fastest present).

    auto
        The fastest engine present on the machine.
    tensorrt
        Native TensorRT: a serialized engine built from the ONNX graph (GPU).
    onnxruntime-trt
        ONNX Runtime with its TensorRT execution provider (GPU).
    onnxruntime-cuda
        ONNX Runtime with its CUDA execution provider (GPU).
    onnxruntime-cpu
        ONNX Runtime on the CPU: the embedded default.
    torch
        PyTorch, the reference.
    triton
        A remote Triton Inference Server at ``triton_url``.
    """

    AUTO = "auto"
    TENSORRT = "tensorrt"
    ONNXRUNTIME_TRT = "onnxruntime-trt"
    ONNXRUNTIME_CUDA = "onnxruntime-cuda"
    ONNXRUNTIME_CPU = "onnxruntime-cpu"
    TORCH = "torch"
    TRITON = "triton"


class OnLate(StrEnum):
    """``[[routes]] on_late``: what an image arriving after the series' job ran does.

    rerun
        Run the job again on the whole series, into the same result series.
    ignore
        Leave the job and its results as they are.
    """

    RERUN = "rerun"
    IGNORE = "ignore"


class RouteLevel(StrEnum):
    """``[[routes]] level``: one job per matching series, or per study.

    series
        One job per matching series.
    study
        One job per study, once a series matches each of ``requires``.
    """

    SERIES = "series"
    STUDY = "study"


class OnDuplicate(StrEnum):
    """``[ingest] on_duplicate``: what a copy of a held instance with different content does.

    keep-first
        The first copy stays; the new one is dropped.
    replace
        The new copy replaces the first (the series is processed again).
    """

    KEEP_FIRST = "keep-first"
    REPLACE = "replace"


class OnOutOfDomain(StrEnum):
    """``[[routes]] on_out_of_domain``: what a job does whose input scores outside its model's domain.

    withhold
        No findings reach the destinations: only a report saying the image was not evaluated, and why.
    flag
        The results are sent, and every report and overlay says the input is outside the domain.
    ignore
        The results are sent as if the input were in the domain (the score is still recorded).
    """

    WITHHOLD = "withhold"
    FLAG = "flag"
    IGNORE = "ignore"


class Priority(StrEnum):
    """``[[routes]] priority``: which jobs every worker claims first, and whose results go out first.

    stat
        A result that matters within minutes (a stroke or trauma head CT).
    urgent
        Before routine work, after stat.
    routine
        The default.
    """

    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"

    @property
    def rank(self) -> int:
        """0 for stat, 1 for urgent, 2 for routine: lower is claimed first."""
        return list(Priority).index(self)

    @classmethod
    def highest(cls, *priorities: "Priority") -> "Priority":
        """The most pressing of ``priorities`` (routine when none)."""
        return min(priorities, key=lambda p: p.rank, default=cls.ROUTINE)
