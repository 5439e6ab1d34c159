"""Yielding a worker to stat work: a running job gives its worker up at a safe point when asked.

The runner (:class:`node.pipeline.preempt.Preemption`) puts the id of a job it wants back in
a small array shared with every worker process (:class:`YieldRequests`). The job looks at
its safe points -- before each of its steps up to ``write``, and between inference batches
(:func:`check_yield`) -- and, once asked, stops with :class:`Yielded`. Nothing of it has been
written or handed over then, so the runner queues it again as it was. Once ``write`` has
begun, a job never starts again: its objects may already be on their way to the PACS, and
a second run would give them new SOP Instance UIDs (a duplicate in every viewer). A job
that may park (``JobSpec.may_park``: one worker) stops after the object it has just handed
over and keeps the rest of its stream in the process (:mod:`node.worker.saving`); its next
run goes on from there.
"""
from __future__ import annotations

from typing import Any

__all__ = ["YieldRequests", "Yielded", "asked_to_yield", "check_yield", "set_yield_requests"]

_REQUESTS: Any = None
"""This worker's view of the runner's :class:`YieldRequests` (``None``: nobody asks, never yield)."""


class Yielded(Exception):
    """The job gave its worker up at a safe point because the runner asked: not a failure.

    ``parked``: it had begun writing; the rest of it waits in this process (see
    :mod:`node.worker.saving`) for its next run here.
    """

    def __init__(self, job_id: int, parked: bool = False) -> None:
        super().__init__(job_id)
        self.parked = parked


class YieldRequests:
    """The runner's side: the jobs asked to yield, in an array every worker process reads.

    ``context``: the ``multiprocessing`` context of the pool; ``slots``: how many jobs may be
    asked at once (one per worker is enough). :attr:`shared` goes to each worker at its start.
    """

    def __init__(self, context: Any, slots: int) -> None:
        self.shared = context.Array("q", max(1, slots))

    def ask(self, job_id: int) -> bool:
        """Ask ``job_id`` to yield; False when every slot is taken."""
        with self.shared.get_lock():
            for i, held in enumerate(self.shared):
                if held in (0, job_id):
                    self.shared[i] = job_id
                    return True
        return False

    def forget(self, job_id: int) -> None:
        """Withdraw the request to ``job_id`` (it yielded, or ended first)."""
        with self.shared.get_lock():
            for i, held in enumerate(self.shared):
                if held == job_id:
                    self.shared[i] = 0


def set_yield_requests(shared: Any) -> None:
    """Worker process: read the runner's requests from ``shared`` (:attr:`YieldRequests.shared`)."""
    global _REQUESTS
    _REQUESTS = shared


def asked_to_yield(job_id: int) -> bool:
    """Whether the runner asked job ``job_id`` to yield."""
    return _REQUESTS is not None and bool(job_id) and job_id in _REQUESTS[:]


def check_yield(job_id: int) -> None:
    """A safe point of job ``job_id``: raise :class:`Yielded` if the runner asked it to yield."""
    if asked_to_yield(job_id):
        raise Yielded(job_id)
