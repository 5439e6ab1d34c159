"""One lock per key (a SOP Instance UID), so that each instance has one writer at a time."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """One lock per key (a SOP Instance UID), held only while someone needs it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lock for the ``with`` block; the lock is dropped when nobody waits for it."""
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[key]
