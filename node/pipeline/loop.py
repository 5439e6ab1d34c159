"""The one thread loop every stage runs in: do a step, then wait to be woken or for the poll interval."""
from __future__ import annotations

import logging
import threading
from enum import StrEnum
from typing import Callable

from ..logs import log

__all__ = ["LoopStage", "StageLoop"]


class StageLoop:
    """A daemon thread that calls ``step`` whenever it is woken, and at least every ``poll_seconds``.

    ``step`` returns how long to wait before the next call (``None``: ``poll_seconds``;
    ``0``: at once, more work is waiting). A wake-up that comes while ``step`` runs is not
    lost: the loop clears its flag before the step, so the next wait returns at once. An
    exception in ``step`` is logged as ``"<name> error"`` and the loop goes on: one failure
    never stops a stage. ``first_wait`` delays the first step (a stage with nothing to do at
    start).
    """

    def __init__(self, name: str, step: Callable[[], float | None], poll_seconds: float, *,
                 logger: logging.Logger, first_wait: bool = False, on_exit: Callable[[], None] | None = None) -> None:
        self.name = name
        self._step = step
        self._poll_seconds = poll_seconds
        self._logger = logger
        self._first_wait = first_wait
        self._on_exit = on_exit
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def wake(self) -> None:
        """Run the step again as soon as the current one ends."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current step; wait up to ``timeout`` seconds for it."""
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called."""
        return self._thread.ident is not None

    def is_alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        wait: float | None = self._poll_seconds if self._first_wait else 0.0
        try:
            while not self._stop.is_set():
                if wait:
                    self._wake.wait(timeout=wait)
                if self._stop.is_set():
                    break
                self._wake.clear()
                try:
                    after = self._step()
                except Exception as exc:
                    log(self._logger, logging.ERROR, f"{self.name} error", reason=repr(exc))
                    after = None
                wait = self._poll_seconds if after is None else after
        finally:
            if self._on_exit is not None:
                self._on_exit()


class LoopStage:
    """A stage that one :class:`StageLoop` runs (``self._loop``): starting, stopping and
    waking the stage is starting, stopping and waking its loop."""

    _loop: StageLoop

    def start(self) -> None:
        """Start the stage's thread."""
        self._loop.start()

    def stop(self) -> None:
        """Stop after the current step."""
        self._loop.stop()

    def wake(self, state: StrEnum | None = None) -> None:
        """Work reached a state this stage consumes: run the step again at once."""
        self._loop.wake()

