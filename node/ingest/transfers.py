"""Transfers: one association, or one STOW-RS request, and the series it brought.

A series can be declared complete when the transfer that brought it ends normally
(an A-RELEASE, the end of a STOW-RS request), if its route says so
(``complete_on_release``): a single radiograph then need not wait a quiet period.
A series that another open transfer is still bringing is not released by the end of
the first: two modalities (or two parallel associations of one sender) may split a
series, and it is released only when the last of them ends.
"""
from __future__ import annotations

import threading
from collections import Counter

__all__ = ["Transfer", "Transfers"]


class Transfer:
    """One association or STOW-RS request: the Series Instance UIDs it brought so far."""

    __slots__ = ("series", "closed")

    def __init__(self) -> None:
        self.series: set[str] = set()
        self.closed = False


class Transfers:
    """The open transfers and the series each carries; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._carrying: Counter[str] = Counter()  # series UID → open transfers that brought some of it

    def open(self) -> Transfer:
        """A new transfer."""
        return Transfer()

    def carried(self, transfer: Transfer, series_uid: str) -> None:
        """``transfer`` brought an instance of ``series_uid``."""
        with self._lock:
            if transfer.closed or series_uid in transfer.series:
                return
            transfer.series.add(series_uid)
            self._carrying[series_uid] += 1

    def close(self, transfer: Transfer, *, released: bool) -> list[str]:
        """End ``transfer``; returns the series it released (none when ``released`` is False:
        an abort or a lost connection ends nothing), those no other open transfer carries.

        Closing a transfer twice returns nothing the second time.
        """
        with self._lock:
            if transfer.closed:
                return []
            transfer.closed = True
            done: list[str] = []
            for uid in sorted(transfer.series):
                self._carrying[uid] -= 1
                if self._carrying[uid] <= 0:
                    del self._carrying[uid]
                    done.append(uid)
            return done if released else []
