"""``ainode serve`` on a port another process holds: one clear line, a non-zero exit, no traceback."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.services import free_port

README = Path(__file__).resolve().parents[1] / "README.md"


def _serve(tmp_path: Path, dicom_port: int, http_port: int) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(f'[node]\ndicom_host = "127.0.0.1"\ndicom_port = {dicom_port}\nhttp_port = {http_port}\n'
                      f'data_dir = "data"\n')
    return subprocess.run([sys.executable, "-m", "node.cli", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", ["DICOM", "HTTP"])
def test_a_taken_port_stops_serve_with_one_line(tmp_path: Path, kind: str):
    holder = socket.create_server(("127.0.0.1", 0))  # another process's listener, as far as the node knows
    try:
        taken = holder.getsockname()[1]
        dicom, http = (taken, free_port()) if kind == "DICOM" else (free_port(), taken)
        done = _serve(tmp_path, dicom, http)
    finally:
        holder.close()
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    key = "dicom_port" if kind == "DICOM" else "http_port"
    assert lines[0].startswith(f"ainode: {kind} port {taken} on 127.0.0.1 is in use (")
    assert f"set [node] {key}" in lines[0]
    assert not (tmp_path / "data").exists(), "nothing started, nothing written"


def test_the_readme_quotes_the_message_as_printed():
    text = README.read_text(encoding="utf-8")
    quoted = re.findall(r"^\s*(ainode: (?:DICOM|HTTP) port \d+ on \S+ is in use .*)$", text, re.M)
    assert {line.split(" port ")[0] for line in quoted} == {"ainode: DICOM", "ainode: HTTP"}, quoted
    from node.ports import port_in_use_message

    for line in quoted:
        kind, port, host = re.match(r"ainode: (\w+) port (\d+) on (\S+) is in use", line).groups()
        assert line == port_in_use_message(kind, host, int(port))
