"""What ``ainode models train`` writes: a JSON-lines step log and a full report in OUT, a summary on screen.

A pack's ``train()`` reports progress through a ``log(message)`` callback. :class:`TrainLog`
is that callback: each message becomes one JSON line in ``OUT/train-log.jsonl`` (seconds
since start, the message), so a long run leaves a complete record without flooding the
terminal, where the progress bars (tqdm) already show where it is. At the end,
:meth:`TrainLog.finish` writes the whole report to ``OUT/train-report.json`` and returns a
summary of a few lines: the report's numbers, and where the files are.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

__all__ = ["LOG_NAME", "REPORT_NAME", "TrainLog", "summary_lines"]

LOG_NAME = "train-log.jsonl"
REPORT_NAME = "train-report.json"
_MAX_LINES = 16


class TrainLog:
    """A ``log(message)`` callback appending JSON lines to ``out_dir/train-log.jsonl``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / LOG_NAME
        self.path.write_text("", encoding="utf-8")
        self._started = time.monotonic()
        self.lines = 0

    def __call__(self, message: str) -> None:
        record = {"seconds": round(time.monotonic() - self._started, 3), "message": str(message)}
        with self.path.open("a", encoding="utf-8") as fp:
            fp.write(json.dumps(record) + "\n")
        self.lines += 1

    def finish(self, report: Mapping[str, Any], title: str) -> str:
        """Write ``report`` to ``out_dir/train-report.json``; the summary to print."""
        report_path = self.out_dir / REPORT_NAME
        report_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        lines = [f"{title}: done in {time.monotonic() - self._started:.0f} s"]
        lines += [f"  {line}" for line in summary_lines(report)]
        lines.append(f"  step log ({self.lines} lines): {self.path}")
        lines.append(f"  full report: {report_path}")
        return "\n".join(lines)


def summary_lines(report: Mapping[str, Any], limit: int = _MAX_LINES) -> list[str]:
    """``key: value`` for the report's numbers and short strings (nested keys joined by ``.``), at most ``limit``."""
    lines: list[str] = []

    def visit(value: Any, key: str, depth: int) -> None:
        if isinstance(value, Mapping) and depth < 3:
            for k, v in value.items():
                visit(v, f"{key}.{k}" if key else str(k), depth + 1)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, float):
            lines.append(f"{key}: {value:.4g}")
        elif isinstance(value, int) or (isinstance(value, str) and len(value) <= 80 and "\n" not in value):
            lines.append(f"{key}: {value}")

    visit(report, "", 0)
    return lines[:limit] + ([f"… {len(lines) - limit} more in the full report"] if len(lines) > limit else [])
