"""What a worker has already read and run of a series that is still arriving.

While a series is received, the runner sends its instances, as they are filed, to a
worker (:func:`node.worker.read_ahead`); for a pack that handles each slice on its own
(``slice_wise``), the worker reads them and runs the model on them then, and keeps here
each file's images and the model's outputs per image. When the series completes, its
job takes what is here and runs the model only on the slices that are not: the
radiologist's wait after the last image no longer includes reading and inferring the
slices that came before it.

An entry is keyed by the model (every field that selects its engine and weights) and by
the file's identity on disk (path, inode, size, modification time), so a replaced file
is never taken for the one read before. The cache holds at most ``max_bytes`` of pixel
data, least recently used first out; a job takes its series' entries out.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from pydicom import Dataset

__all__ = ["CachedFile", "SliceCache", "file_identity", "outputs_by_image", "stack_outputs"]


def file_identity(path: str) -> tuple[str, int, int, int] | None:
    """``(path, inode, size, mtime_ns)`` of ``path``, or ``None`` when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class CachedFile:
    """One source file: its images (every frame, demographics repaired) and, once run, each image's
    outputs and, for a pack with an applicability check, each image's descriptor row."""

    images: list[Dataset]
    outputs: list[dict[str, np.ndarray]] | None = None
    nbytes: int = field(default=0)
    descriptors: list[np.ndarray] | None = None

    @staticmethod
    def of(images: Sequence[Dataset]) -> "CachedFile":
        """An entry for ``images`` (not yet run), sized by their pixel data."""
        nbytes = sum(len(getattr(image, "PixelData", b"") or b"") for image in images)
        return CachedFile(list(images), None, nbytes)


class SliceCache:
    """Files read ahead, by model and file identity; least recently used out past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Hashable, tuple[str, int, int, int]], CachedFile] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Pixel data held, in bytes."""
        return self._bytes

    def get(self, model: Hashable, identity: tuple[str, int, int, int] | None) -> CachedFile | None:
        """The entry of this file for this model, or ``None``."""
        if identity is None:
            return None
        entry = self._entries.get((model, identity))
        if entry is not None:
            self._entries.move_to_end((model, identity))
        return entry

    def put(self, model: Hashable, identity: tuple[str, int, int, int], entry: CachedFile) -> None:
        """Keep ``entry``; drop the least recently used entries beyond ``max_bytes``."""
        old = self._entries.pop((model, identity), None)
        if old is not None:
            self._bytes -= old.nbytes
        if entry.nbytes > self.max_bytes:
            return
        self._entries[(model, identity)] = entry
        self._bytes += entry.nbytes
        while self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.nbytes

    def take(self, model: Hashable, identity: tuple[str, int, int, int] | None) -> CachedFile | None:
        """Remove and return the entry of this file for this model (a job uses it once)."""
        if identity is None:
            return None
        entry = self._entries.pop((model, identity), None)
        if entry is not None:
            self._bytes -= entry.nbytes
        return entry


def outputs_by_image(images: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Split batched ``outputs`` (axis 0 = image) into one dict per image of ``images``."""
    count = len(images)
    for name, array in outputs.items():
        if len(array) != count:
            raise ValueError(f"output {name!r} has {len(array)} rows for {count} images")
    return [{name: np.array(array[i]) for name, array in outputs.items()} for i in range(count)]


def stack_outputs(per_image: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Stack per-image outputs back into batched arrays (axis 0 = image, in the given order)."""
    if not per_image:
        raise ValueError("no outputs to stack")
    return {name: np.stack([np.asarray(item[name]) for item in per_image]) for name in per_image[0]}
