"""The node's stderr is JSON lines only, also when a process it started leaves something to
clean up: multiprocessing's resource tracker (a process of its own) frees a semaphore that a
killed worker left and would print plain text about it at exit (a full suite on a loaded
machine: tests/test_phi_streams.py found those lines after the node stopped)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

_LEAK = textwrap.dedent("""
    import multiprocessing, os, sys
    if sys.argv[1] == "configured":
        from node.logs import configure_logging
        configure_logging()
    lock = multiprocessing.get_context("spawn").Lock()  # registered with the resource tracker
    os._exit(0)  # as a killed process: never released
""")


def _stderr(how: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _LEAK, how], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    return [line for line in done.stderr.splitlines() if line.strip()]


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def test_a_semaphore_left_at_exit_prints_nothing_outside_the_json_log():
    assert [line for line in _stderr("configured") if not _is_json(line)] == []


def test_without_the_node_logging_the_tracker_does_print():
    """The case above is real: the same process without the node's logging prints the tracker's text."""
    assert any("resource_tracker" in line for line in _stderr("plain"))
