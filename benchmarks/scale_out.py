"""Several processes on one shared job store, on one machine: what the scale-out test and bench start.

An ingest-only node is ``ainode serve`` with ``[runner] enabled = false``; a worker is
``ainode worker``. Every process has its own ``data_dir`` (its spool, its results) and
records absolute paths in the shared PostgreSQL store, so each reads the others' files
where a shared mount puts them at the same path on every machine.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from benchmarks.services import wait_for

__all__ = ["WorkerProcess", "audit_records", "shared_store_toml"]


def shared_store_toml(url: str, *, runner_enabled: bool, lease_seconds: float = 60.0, workers: int = 1) -> str:
    """The ``[runner]`` and ``[store]`` tables of a process sharing the PostgreSQL store at ``url``."""
    return f"""
[runner]
enabled = {str(runner_enabled).lower()}
workers = {workers}
lease_seconds = {lease_seconds}

[store]
url = "{url}"
"""


class WorkerProcess:
    """``ainode worker`` as a child process (its own session, so its pool dies with it), log to a file."""

    def __init__(self, workdir: Path, config_text: str, *, deliver: bool = True) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "config.toml"
        self.config_path.write_text(config_text)
        self.log_path = self.workdir / "worker.log"
        self.deliver = deliver
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @property
    def pid(self) -> int:
        """The worker's process id (also after it was killed: lease owners name it)."""
        assert self._pid is not None, "not started"
        return self._pid

    def start(self, timeout: float = 60.0) -> "WorkerProcess":
        log = open(self.log_path, "ab")
        command = [sys.executable, "-m", "node.cli", "worker", "--config", str(self.config_path)]
        self._proc = subprocess.Popen(command + (["--deliver"] if self.deliver else []), stdout=log, stderr=log,
                                      env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
        self._pid = self._proc.pid
        wait_for(self._started, timeout, what=f"worker (log: {self.log_path})")
        return self

    def _started(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"worker exited {self._proc.returncode}: {self.log_text()[-2000:]}")
        return "worker started" in self.log_text()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the worker and its pool (SIGSTOP pauses, SIGKILL is a crash)."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signum)
            if signum == signal.SIGKILL:
                self._proc.wait()
                self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGCONT)
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
            self._proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


def audit_records(log_text: str, event: str) -> Iterator[dict[str, Any]]:
    """The JSON audit records ``event`` of a process log (other lines are skipped)."""
    for line in log_text.splitlines():
        if '"audit"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("audit") == event:
            yield record
