"""A one-line text progress bar on stderr, for the chest CT training and its data sets."""
from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """A one-line text progress bar on stderr."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = max(1, total), label, enabled and total > 0
        self.t0 = time.perf_counter()

    def update(self, done: int, extra: str = "") -> None:
        """Redraw the bar at ``done`` of the total, with ``extra`` after it."""
        if not self.enabled:
            return
        width = 24
        filled = int(width * done / self.total)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(done, 1) * (self.total - done)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                         f"{elapsed:.0f}s eta {eta:.0f}s {extra}   ")
        sys.stderr.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
