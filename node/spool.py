"""Durable files: written to a temporary name, fsync'd, renamed, directory fsync'd."""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["Spool", "write_durable"]

_SAFE_UID = re.compile(r"^[0-9.]{1,64}$")


def write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it survives a crash once this returns."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
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
        """Path of a received instance; rejects UIDs that are not plain dotted digits."""
        if not _SAFE_UID.match(sop_instance_uid):
            raise ValueError(f"SOP Instance UID is not a valid UID: {sop_instance_uid!r}")
        return self.instances / f"{sop_instance_uid}.dcm"

    def recover(self, known: set[str]) -> list[tuple[str, str, Path]]:
        """Durable instances the job store does not hold (its last rows lost in a power cut).

        Returns ``(SOP Instance UID, SOP Class UID, path)`` for each; removes temporary
        files of writes that never finished (those were never acknowledged).
        """
        from pydicom.filereader import read_file_meta_info

        for tmp in self.instances.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        orphans = []
        for path in self.instances.glob("*.dcm"):
            uid = path.stem
            if uid in known:
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
