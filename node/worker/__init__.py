"""The worker room: jobs run in worker processes, outside the node's main process.

CPU-heavy model work never slows the association threads. What lives here:

- :mod:`.spec`: :class:`JobSpec` and :class:`JobOutcome`, the plain data that crosses
  the process boundary;
- :mod:`.job`: :func:`run_job`, one job's stages, load to write;
- :mod:`.process`: the worker process (:func:`init_worker`, :func:`die_with_parent`,
  :func:`retain_freed_memory`, :func:`warm_up`, the helper process for results);
- :mod:`.engines`: this process's packs and engines (:func:`engine_cache_key`,
  :func:`run_batched`);
- :mod:`.series`: reading a job's series from its files;
- :mod:`.reading_ahead` and :mod:`.slice_cache`: :func:`read_ahead`, a series' slices
  read and run while it arrives;
- :mod:`.saving`: result objects saved durably and handed over to the runner;
- :mod:`.yielding`: a running job gives its worker up to stat work (:class:`YieldRequests`);
- :mod:`.result_uids`: stable result series UIDs (:func:`stable_series_uid`).
"""
from __future__ import annotations

from .engines import engine_cache_key, network_module, run_batched
from .job import run_job
from .process import die_with_parent, init_helper, init_worker, retain_freed_memory, warm_up
from .reading_ahead import ReadAheadOutcome, read_ahead
from .result_uids import StableSeries, stable_result_series, stable_series_uid
from .spec import JobOutcome, JobSpec
from .yielding import YieldRequests

__all__ = [
    "JobOutcome", "JobSpec", "ReadAheadOutcome", "StableSeries", "die_with_parent", "engine_cache_key", "init_helper",
    "init_worker", "network_module", "read_ahead", "retain_freed_memory", "run_batched", "run_job",
    "stable_result_series", "stable_series_uid", "warm_up", "YieldRequests",
]
