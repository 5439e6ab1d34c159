"""Free-space watermark of the spool's file system, checked before every write."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["DiskGuard"]

_MIB = 1024 * 1024


class DiskGuard:
    """Refuses writes that would leave less than a floor of free space.

    The floor is the larger of ``min_free_mb`` MiB and ``min_free_percent`` % of the
    file system. ``os.statvfs`` is read at most every ``cache_seconds`` so that a check
    per C-STORE is cheap; the bytes admitted with :meth:`reserve` since the last read
    count as used until the next one, and every check accounts for the incoming size.

    Parameters
    ----------
    path
        Any path on the file system to watch (the spool directory).
    min_free_mb
        Absolute floor in MiB (``>= 0``).
    min_free_percent
        Relative floor in percent of the file system's size (``0`` to ``100``).
    cache_seconds
        How long one ``statvfs`` result is reused.
    """

    def __init__(
        self, path: Path | str, min_free_mb: float, min_free_percent: float, *,
        cache_seconds: float = 0.5, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_free_mb < 0:
            raise ValueError(f"min_free_mb must be >= 0, not {min_free_mb}")
        if not 0 <= min_free_percent <= 100:
            raise ValueError(f"min_free_percent must be within 0..100, not {min_free_percent}")
        if cache_seconds < 0:
            raise ValueError(f"cache_seconds must be >= 0, not {cache_seconds}")
        self.path = Path(path)
        self.min_free_mb = float(min_free_mb)
        self.min_free_percent = float(min_free_percent)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._free = 0
        self._total = 0
        self._admitted = 0

    def ok(self, incoming_bytes: int = 0) -> bool:
        """Whether ``incoming_bytes`` more would still leave the floor free."""
        with self._lock:
            return self._fits(incoming_bytes)

    def reserve(self, incoming_bytes: int) -> bool:
        """Like :meth:`ok`, and when it fits count the bytes as used until the next ``statvfs``."""
        with self._lock:
            if not self._fits(incoming_bytes):
                return False
            self._admitted += max(0, int(incoming_bytes))
            return True

    def status(self) -> dict[str, Any]:
        """``free_bytes``, ``total_bytes``, ``floor_bytes`` and ``below_watermark`` now."""
        with self._lock:
            self._refresh()
            free = self._free_now()
            floor = self._floor()
            return {
                "path": str(self.path), "free_bytes": free, "total_bytes": self._total,
                "floor_bytes": floor, "below_watermark": free < floor,
            }

    def free_bytes(self) -> int:
        """Free bytes now (as of the cached ``statvfs``, less what was admitted since)."""
        return int(self.status()["free_bytes"])

    def below_watermark(self) -> bool:
        """Whether free space is below the floor now."""
        return bool(self.status()["below_watermark"])

    def _fits(self, incoming_bytes: int) -> bool:
        self._refresh()
        return self._free_now() - max(0, int(incoming_bytes)) >= self._floor()

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._read_at < self._cache_seconds:
            return
        stats = os.statvfs(self.path)
        self._free = stats.f_bavail * stats.f_frsize
        self._total = stats.f_blocks * stats.f_frsize
        self._admitted = 0
        self._read_at = now

    def _free_now(self) -> int:
        return max(0, self._free - self._admitted)

    def _floor(self) -> int:
        return int(max(self.min_free_mb * _MIB, self._total * self.min_free_percent / 100))
