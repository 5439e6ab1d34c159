"""The spool's retention: files of finished series are removed after ``retention_hours``.

Finished means ignored by the router, or every job delivered. Failed jobs keep their
files (an operator may replay them). ``retention_hours = 0`` keeps everything.

Result files are removed by the paths recorded on the job's result rows, so the ones a
worker wrote under its own ``data_dir`` go too, wherever a shared mount lets this
process reach them (a path it cannot reach is left to that machine's cleaning).
"""
from __future__ import annotations

import logging
import shutil
import time
from enum import StrEnum
from pathlib import Path
from typing import Callable, Iterable

from ..config import SpoolConfig
from ..logs import log
from ..store.spool import Spool
from ..store import JobStore, ResultRow
from .loop import StageLoop

__all__ = ["Janitor"]

_logger = logging.getLogger("ainode.retention")


class Janitor:
    """A thread that sweeps the spool every ``sweep_seconds``."""

    def __init__(self, config: SpoolConfig, store: JobStore, spool: Spool, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._store = store
        self._spool = spool
        self._clock = clock
        self._loop = StageLoop("janitor", self._step, config.sweep_seconds, logger=_logger, first_wait=True)

    def start(self) -> None:
        if self._config.retention_hours > 0:
            self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def wake(self, state: StrEnum | None = None) -> None:
        """Series were routed or ignored: nothing to do before their retention ends (the sweep polls)."""

    def sweep(self) -> int:
        """Remove the files of series finished longer ago than the retention; returns how many series."""
        before = self._clock() - self._config.retention_hours * 3600
        purged = self._store.purgeable_series(before)
        for series_uid in purged:
            paths, jobs = self._store.purge_series(series_uid)
            for path in paths:
                Path(path).unlink(missing_ok=True)
            for job_id in jobs:
                _remove_results(self._store.job_results(job_id))
                shutil.rmtree(self._spool.results / str(job_id), ignore_errors=True)
        if purged:
            log(_logger, logging.INFO, "spool swept", series=len(purged))
        return len(purged)

    def _step(self) -> None:
        try:
            self.sweep()
        except Exception as exc:
            log(_logger, logging.ERROR, "spool sweep failed", reason=repr(exc))


def _remove_results(rows: Iterable[ResultRow]) -> None:
    """Remove each result file (once, whatever its destinations), then its folder if that is empty."""
    folders = set()
    for path in {Path(r.path) for r in rows if r.path}:
        try:
            path.unlink(missing_ok=True)
        except OSError:  # not ours to remove (another machine's mount, its permissions)
            continue
        folders.add(path.parent)
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a newer run's files), or gone already
            pass
