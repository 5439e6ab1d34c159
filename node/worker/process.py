"""The worker process itself: its initializers, memory policy, logging, helper process and warm-up.

A worker is a fresh (spawned) interpreter that the node's runner starts; what here
runs once per process prepares it, so that each job only runs its model.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from typing import Any, Sequence

from ..logs import configure_logging
from ..results.aside import ProcessAside
from ..results.equipment import load_standard_tables
from .engines import engine_for, pack_for
from .saving import set_handover
from .spec import JobSpec
from .yielding import set_yield_requests

__all__ = [
    "RESULT_HELPER", "die_with_parent", "init_helper", "init_worker", "log_to_json", "retain_freed_memory",
    "warm_up",
]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_LOGGING_READY = False


def die_with_parent(parent: int) -> None:
    """Worker process initializer: end this process when the node that started it dies.

    A kill -9 of the node gives its workers no chance to be told; without this they live
    on as orphans holding memory and GPU contexts. Linux's parent-death signal covers
    it; a watchdog thread that notices a new parent process id covers the rest.
    ``parent`` is the node's process id, passed in: a worker still starting when the
    node died must not take its new parent (init) for the node.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def _watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=_watch, name="parent-watchdog", daemon=True).start()
    log_to_json()


def retain_freed_memory() -> None:
    """Keep the memory a job frees for the next job, instead of giving it back to the kernel (glibc).

    A job's large arrays (a 40-slice head CT's input alone is 84 MB) are otherwise mapped
    fresh and unmapped after every job; on a virtual machine that returns freed memory to
    its host, touching such memory again after a few idle seconds costs about ten times
    more (measured here: windowing a 40-slice series, 0.06 s back to back, 0.45-0.67 s
    after 2-10 s idle; 0.04 s either way with this). The price: a worker's heap stays at
    its peak (a few hundred MB), which a process that only runs models can afford.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    except (OSError, AttributeError):  # not glibc: its allocator's own policy stays
        pass


def init_helper(parent: int) -> None:
    """Initializer of a worker's helper process (:data:`RESULT_HELPER`): as a worker's, without the queue."""
    retain_freed_memory()
    die_with_parent(parent)


RESULT_HELPER = ProcessAside(initializer=init_helper)
"""This worker's helper process for objects built aside (see :mod:`node.results.aside`), started at warm-up."""


def init_worker(parent: int, handover: Any = None, yield_requests: Any = None) -> None:
    """Worker process initializer: :func:`retain_freed_memory`, :func:`die_with_parent`, the
    queue saved objects go to, and the runner's requests to yield.

    ``handover`` (a ``multiprocessing`` queue the runner reads) receives
    ``(job_id, sop_uid, sop_class, path)`` for each object of a ``hand_over`` job once it
    is on disk, durably (see :func:`node.worker.saving.set_handover`). ``yield_requests``:
    the array of :class:`node.worker.yielding.YieldRequests` (``None``: jobs never yield).
    """
    set_handover(handover)
    set_yield_requests(yield_requests)
    retain_freed_memory()
    die_with_parent(parent)
    # Once the pool says stop, the worker's own exit is done (helper process ended, queues
    # flushed): skip the interpreter's teardown, whose native libraries took over 5 s
    # here, which a stopping node would otherwise wait for (or kill).
    multiprocessing.util.Finalize(None, _exit_at_once, exitpriority=-100)


def _exit_at_once() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed stream: nothing to flush
            pass
    os._exit(0)


def log_to_json() -> None:
    """In a worker process, send logs and warnings (scrubbed) to stderr as JSON lines, once.

    A worker is a fresh (spawned) interpreter: without this, a third-party warning that
    quotes a patient's name would go to stderr as plain text.
    """
    global _LOGGING_READY
    if _LOGGING_READY or multiprocessing.parent_process() is None:
        return
    configure_logging(os.environ.get("AINODE_LOG_LEVEL", "INFO"))
    _LOGGING_READY = True


def warm_up(specs: Sequence[JobSpec]) -> list[str]:
    """Load each spec's pack and engine into this worker process before the first series.

    Returns one line per model: the engine it got, or why it could not be loaded (the
    job will then fail with that reason at its ``load`` or ``engine`` stage).
    """
    lines = []
    load_standard_tables()
    if any(spec.hand_over for spec in specs):
        try:
            RESULT_HELPER.warm(load_standard_tables)
        except Exception as exc:  # objects meant for it are then built in the worker itself
            logging.getLogger(__name__).warning("helper process for results not started: %s", type(exc).__name__)
    for spec in specs:
        try:
            pack = pack_for(spec.pack, spec.weights)
            lines.append(f"{spec.model}: {engine_for(spec, pack).name}")
        except Exception as exc:
            lines.append(f"{spec.model}: not loaded ({type(exc).__name__}: {exc})")
    return lines
