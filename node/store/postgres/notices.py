"""Wake-ups across processes: PostgreSQL ``LISTEN``/``NOTIFY`` on the shared store.

A transaction that queues work (``route_series``: jobs; ``job_written`` /
``result_written``: results) sends ``NOTIFY ainode_<topic>``; PostgreSQL delivers it at
commit, once per transaction, to every connection listening. A :class:`NoticeWatch`
holds one such connection and calls the wake function of the topic, so an outbox on an
ingest node delivers what a worker on another machine wrote within milliseconds instead
of at its next poll (the polls stay, as a safety net for a lost connection).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Mapping

import psycopg

from ...logs import log

__all__ = ["CHANNEL_PREFIX", "NoticeWatch"]

CHANNEL_PREFIX = "ainode_"
"""Channels are ``ainode_<topic>``: ``ainode_jobs``, ``ainode_results``."""

_logger = logging.getLogger("ainode.store")
_RECONNECT_SECONDS = 2.0


class NoticeWatch:
    """A thread listening on the store's channels; ``wakes`` maps a topic to what it calls."""

    def __init__(self, url: str, wakes: Mapping[str, Callable[[], None]]) -> None:
        self._url = url
        self._wakes = dict(wakes)
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-notices", daemon=True)

    def start(self) -> "NoticeWatch":
        self._thread.start()
        return self

    def wait_listening(self, timeout: float) -> bool:
        """Whether the watch listens (its connection is open), waiting up to ``timeout`` seconds."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                self._listening.clear()
                log(_logger, logging.WARNING, "store notices lost; listening again", reason=type(exc).__name__)
                self._stop.wait(_RECONNECT_SECONDS)

    def _listen(self) -> None:
        with psycopg.connect(self._url, autocommit=True, application_name="ainode-notices") as conn:
            for topic in self._wakes:
                conn.execute(f"LISTEN {CHANNEL_PREFIX}{topic}")
            self._listening.set()
            for wake in self._wakes.values():  # what was notified while not listening
                wake()
            while not self._stop.is_set():
                for notice in conn.notifies(timeout=0.5):
                    wake = self._wakes.get(notice.channel.removeprefix(CHANNEL_PREFIX))
                    if wake is not None:
                        wake()
