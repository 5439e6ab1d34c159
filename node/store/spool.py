"""Durable files: written to a temporary name, fsync'd, renamed, directory fsync'd."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from ..dicom.uids import is_valid_uid

__all__ = ["Spool", "TEMP_PREFIX", "TEMP_SUFFIX", "is_valid_uid", "move_durable", "write_durable"]

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"
"""A write in progress is ``.<final name>.<random>.tmp`` beside its final name."""

_FILE_MODE = 0o600  # patient data: the node's user only


def write_durable(path: Path, data: bytes | bytearray | memoryview | Iterable[bytes]) -> None:
    """Write ``data`` (bytes, or chunks of bytes written in order) to ``path`` durably.

    The bytes go to a temporary file of a unique name in the same directory, are
    fsync'd, and the file is renamed over ``path``; then the directory is fsync'd. Once
    this returns the file survives a crash. Concurrent writers of one ``path`` never
    share a temporary file: the last rename wins and every writer succeeds. If anything
    fails (a full disk), the temporary file is removed and the error is raised.
    """
    path = Path(path)
    chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, _FILE_MODE)
            for chunk in chunks:
                _write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def move_durable(source: Path, path: Path) -> None:
    """Move the file ``source`` to ``path`` (same file system) durably, instead of copying it.

    ``source`` is fsync'd, renamed over ``path``, then ``path``'s directory is fsync'd:
    once this returns the file survives a crash under its new name. Raises ``OSError``
    (``EXDEV`` when the two are on different file systems) with ``source`` left as it was.
    """
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    os.replace(source, path)
    _fsync_directory(Path(path).parent)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Spool:
    """Where received instances and written results live on disk.

    ``instances/<SOP Instance UID>.dcm`` for what the node received, and
    ``results/<job id>/<SOP Instance UID>.dcm`` for what it made.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.instances = self.root / "instances"
        self.results = self.root / "results"
        self.instances.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)

    def instance_path(self, sop_instance_uid: str) -> Path:
        """Path of a received instance; rejects anything that is not a valid UID (PS3.5 §9.1)."""
        if not is_valid_uid(sop_instance_uid):
            raise ValueError(f"SOP Instance UID is not a valid UID: {sop_instance_uid!r}")
        return self.instances / f"{sop_instance_uid}.dcm"

    def temporary_files(self) -> list[Path]:
        """Temporary files of writes in progress (or of writes that never finished)."""
        return sorted(self.instances.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))

    def recover(self, known: set[str]) -> list[tuple[str, str, Path]]:
        """Durable instances the job store does not hold (its last rows lost in a power cut).

        Returns ``(SOP Instance UID, SOP Class UID, path)`` for each; removes temporary
        files of writes that never finished (those were never acknowledged).
        """
        from pydicom.filereader import read_file_meta_info

        for tmp in self.temporary_files():
            tmp.unlink(missing_ok=True)
        orphans = []
        for path in self.instances.glob("*.dcm"):
            uid = path.stem
            if uid in known or not is_valid_uid(uid):
                continue
            try:
                sop_class = str(read_file_meta_info(path).MediaStorageSOPClassUID)
            except Exception:
                continue
            orphans.append((uid, sop_class, path))
        return orphans

    def result_dir(self, job_id: int) -> Path:
        path = self.results / str(int(job_id))
        path.mkdir(parents=True, exist_ok=True)
        return path
