"""Build a result object aside: in a helper process of the worker, while the worker builds the others.

A pack's write stage is single-threaded Python (highdicom): the TID 1500 report of a
40-slice head CT costs about as much as its SEG and every overlay together. Given to a
helper process, it is built on the second core while the worker draws and saves the
overlays, and the job's last object is ready sooner.

A pack asks through ``ResultContext.aside.submit(fn, *args, **kwargs)`` and later takes
``.result()``. ``fn`` and its arguments cross a process boundary: a module-level function
and plain data; source images as :func:`~node.results.references.headers_only` copies, referenced result
objects as :func:`~node.results.references.evidence_reference` stubs. :class:`InlineAside` (the default, and what tests
get) runs ``fn`` at once in the caller; :class:`ProcessAside` (the worker's, when it hands
objects over one by one) runs it in one helper process that lives as long as the worker,
and runs it inline when that process has died.

``submit_encoded`` is ``submit`` for an object the caller will only save: the helper
process also encodes it and hands back an :class:`EncodedObject` (its file bytes) instead
of the dataset. A TID 1500 report of a 40-slice head CT is 67 KB as a file but 640 KB
pickled, and pickling it across and encoding it in the caller cost the caller ~0.25 s.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import time
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Callable, Protocol, Sequence, TypeVar

from pydicom import Dataset, dcmread

__all__ = ["Aside", "AsideResult", "EncodedObject", "InlineAside", "ProcessAside", "encoded"]

T = TypeVar("T")

_CLOSE_SECONDS = 5.0
"""How long an idle helper process gets to end before it is killed."""


class AsideResult(Protocol[T]):
    """What :meth:`Aside.submit` returns: the object, once it is built."""

    def result(self) -> T:
        """The built object (waits for it); raises what building it raised."""
        ...


@dataclass(frozen=True)
class EncodedObject:
    """A result object as the bytes of its file (Part 10), with what the node needs to file it."""

    data: bytes
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    series_number: str
    """Series Number as the dataset's string, its series UID when it has none (what
    :class:`node.worker.StableSeries` derives the stable series UID from)."""

    @staticmethod
    def of(ds: Dataset) -> "EncodedObject":
        """Encode ``ds`` as a file, as the worker saves objects."""
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return EncodedObject(buffer.getvalue(), str(ds.SOPInstanceUID), str(ds.SOPClassUID),
                             str(ds.SeriesInstanceUID), str(ds.get("SeriesNumber", ds.SeriesInstanceUID)))

    def dataset(self) -> Dataset:
        """The object decoded again."""
        return dcmread(BytesIO(self.data))


def encoded(fn: Callable[..., Dataset], *args: Any, **kwargs: Any) -> EncodedObject:
    """``fn(*args, **kwargs)`` encoded (module level: it runs in the helper process)."""
    return EncodedObject.of(fn(*args, **kwargs))


class Aside(Protocol):
    """Where a pack's result object is built while the pack builds the others."""

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> AsideResult[T]:
        """Start ``fn(*args, **kwargs)``; its result comes from ``.result()``."""
        ...

    def submit_encoded(self, fn: Callable[..., Dataset], *args: Any,
                       **kwargs: Any) -> AsideResult[Dataset | EncodedObject]:
        """As :meth:`submit`, for a dataset the caller will only save: it may come back encoded."""
        ...


class _Done:
    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        try:
            self._value = fn(*args, **kwargs)
        except Exception as exc:  # raised again by result(), as a Future would
            self._error = exc

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class InlineAside:
    """Builds at once, in the caller (no helper process)."""

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> AsideResult[T]:
        return _Done(fn, args, kwargs)

    def submit_encoded(self, fn: Callable[..., Dataset], *args: Any,
                       **kwargs: Any) -> AsideResult[Dataset | EncodedObject]:
        """Built here, so the dataset itself: encoding it would only cost time."""
        return _Done(fn, args, kwargs)


class _Pending:
    """A build in the helper process; inline in the caller if the helper died."""

    def __init__(self, owner: "ProcessAside", future: Future[Any], fn: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._owner, self._future = owner, future
        self._fn, self._args, self._kwargs = fn, args, kwargs

    def result(self) -> Any:
        try:
            return self._future.result()
        except BrokenExecutor:
            self._owner.reset()
            return self._fn(*self._args, **self._kwargs)


class ProcessAside:
    """One helper process (spawned on first use, ended with its parent) that builds objects aside."""

    def __init__(self, initializer: Callable[[int], None] | None = None) -> None:
        self._initializer = initializer
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> AsideResult[T]:
        try:
            future = self._executor().submit(fn, *args, **kwargs)
        except (BrokenExecutor, RuntimeError):
            self.reset()
            return _Done(fn, args, kwargs)
        return _Pending(self, future, fn, args, kwargs)

    def submit_encoded(self, fn: Callable[..., Dataset], *args: Any,
                       **kwargs: Any) -> AsideResult[Dataset | EncodedObject]:
        """Built and encoded in the helper process (in the caller, when the helper died)."""
        return self.submit(encoded, fn, *args, **kwargs)

    def warm(self, prepare: Callable[[], Any]) -> None:
        """Start the helper process now and run ``prepare`` in it (before the first job)."""
        self.submit(prepare).result()

    def reset(self) -> None:
        """Forget a broken helper process; the next :meth:`submit` starts a new one."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def close(self, timeout: float = _CLOSE_SECONDS) -> None:
        """End the helper process: wait up to ``timeout`` seconds for it, then kill it."""
        if self._pool is not None:
            _end_pool(self._pool, timeout)
        self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            initializer, initargs = (self._initializer, (os.getpid(),)) if self._initializer else (None, ())
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=initializer, initargs=initargs,
            )
            # Why (issue 35): a worker is itself a multiprocessing child. When it ends,
            # multiprocessing runs its finalizers (priority 10 closes every queue's feeder
            # thread, this pool's call queue too) and then joins its non-daemon children,
            # all *before* concurrent.futures' exit hook would send this pool's process
            # its "stop" word, which the closed queue could no longer carry anyway. The
            # helper waited on its pipe forever, the worker for the helper, the node for
            # the worker. This finalizer runs first (priority 100): the word still goes out.
            multiprocessing.util.Finalize(self, _end_pool, args=(self._pool, _CLOSE_SECONDS), exitpriority=100)
        return self._pool


def _end_pool(pool: ProcessPoolExecutor, timeout: float) -> None:
    """Shut ``pool`` down without waiting on its work; its processes end within ``timeout`` or are killed."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)
