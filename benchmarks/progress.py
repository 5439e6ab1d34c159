"""Progress bars for benchmarks: a tqdm bar on a terminal, nothing in logs or CI."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

__all__ = ["progress"]

T = TypeVar("T")


def progress(steps: Iterable[T], what: str, total: int | None = None) -> Iterable[T]:
    """``steps``, with a progress bar named ``what`` on stderr when it is a terminal."""
    return tqdm(steps, desc=what, total=total, leave=False, disable=not sys.stderr.isatty())
