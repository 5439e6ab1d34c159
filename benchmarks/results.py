"""``benchmarks/RESULTS.md``: one section per benchmark, replaced by each new run."""
from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path
from typing import Sequence

__all__ = ["machine_description", "markdown_table", "write_section"]

_HEADER = "# Benchmark results\n\nWritten by `ainode bench ...`; each section is replaced by its next run.\n"


def machine_description() -> str:
    """CPU model, cores, memory, OS and Python of this machine (and the GPU when there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    from node.engines.tensorrt_native import tensorrt_available

    gpu = ", CUDA GPU present" if tensorrt_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{memory}{gpu}; {platform.system()} {platform.release()}; Python {platform.python_version()}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or add) the section ``## name`` of ``path`` with ``body``, stamped with date and machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else _HEADER
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = f"## {name}\n\nRun {stamp} on: {machine_description()}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
