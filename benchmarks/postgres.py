"""A real PostgreSQL server for tests and benchmarks: Debian's package, on a free loopback port in a temp dir.

``initdb`` refuses to run as root, so under root the server runs as the ``postgres``
user the package creates, in a folder that user owns. Authentication is ``trust`` on
127.0.0.1 only: this server is for tests, never for patient data.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.services import free_port, wait_for

__all__ = ["PostgresServer", "postgres_bin_dir"]


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's ``bin`` folder; a clear error when none is installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL is not installed: `apt-get install -y postgresql` (see .ci/run); "
                       "the PostgreSQL store tests and the scale-out test need its initdb and postgres")


class PostgresServer:
    """``initdb`` + ``postgres`` in a temporary folder; :meth:`create_database` gives each user its own database."""

    def __init__(self, *, durable: bool = False) -> None:
        self.bin = postgres_bin_dir()
        self.port = free_port()
        self.durable = durable
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            self._user = {"user": entry.pw_uid, "group": entry.pw_gid}
        self.root = Path(tempfile.mkdtemp(prefix="ainode-pg-", dir=os.environ.get("TMPDIR") or "/tmp"))  # not a node's spool
        if self._user:
            os.chown(self.root, self._user["user"], self._user["group"])
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._databases = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> "PostgresServer":
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "--encoding=UTF8", "--no-sync"], check=True, capture_output=True, **self._user)
        settings = ["-c", "listen_addresses=127.0.0.1", "-p", str(self.port), "-c", f"unix_socket_directories={self.root}",
                    "-c", "max_connections=200"]
        if not self.durable:  # a test's database is thrown away: no need to survive a power cut
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen([str(self.bin / "postgres"), "-D", str(self.data), *settings],
                                      stdout=log, stderr=log, start_new_session=True, **self._user)
        wait_for(self._ready, 30, interval=0.1, what=f"PostgreSQL on port {self.port} (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        import psycopg

        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"postgres exited: {self.log_path.read_text(errors='replace')[-2000:]}")
        with psycopg.connect(self.admin_url, connect_timeout=2):
            return True

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = name or f"ainode_{self._databases}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()


