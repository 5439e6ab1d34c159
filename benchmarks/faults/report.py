"""``ainode bench faults``: every scenario at benchmark counts, the "Faults" table of
``benchmarks/RESULTS.md``, and the reports as text."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from benchmarks.results import markdown_table
from benchmarks.services import OrthancServer
from benchmarks.faults.disk import DiskFullReport, run_disk_full
from benchmarks.faults.fuzzing import FuzzReport, run_fuzz
from benchmarks.faults.kill import KillReport, run_kill_trials
from benchmarks.faults.outage import OutageReport, run_pacs_outage
from benchmarks.faults.senders import ConcurrencyReport, run_concurrent_senders


def _mib(value: int) -> str:
    return f"{value / 2**20:.0f}" if value else "–"


def run_faults(fuzz: int = 10_000, kills: int = 50, seed: int = 0, workdir: Path | None = None,
               idle_connections: int = 200, pdus: int | None = None) -> tuple[str, dict[str, Any]]:
    """Every scenario at benchmark counts; returns the markdown body and the reports."""
    tmp = Path(workdir or tempfile.mkdtemp(prefix="ainode-bench-faults-"))
    reports: dict[str, Any] = {}
    rows: list[list[object]] = []
    orthanc = OrthancServer(tmp / "orthanc").start()

    def scenario(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        print(f"[faults] {name} ...", file=sys.stderr, flush=True)
        try:
            result = fn()
        except Exception as exc:  # a scenario that cannot run is a row that says why
            result = exc
        reports[name] = result
        print(f"[faults] {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        return result

    try:
        kill = scenario("kill -9", lambda: run_kill_trials(tmp / "kill", orthanc, trials=kills, seed=seed,
                                                           deadline_s=max(600.0, kills * 20.0)))
        up = scenario("PACS down, then up", lambda: run_pacs_outage(tmp / "outage-up", seed=seed))
        dead = scenario("PACS down past max_attempts", lambda: run_pacs_outage(tmp / "outage-dead", dead_letter=True,
                                                                               seed=seed))
        disk = scenario("disk full", lambda: run_disk_full(tmp / "disk", orthanc, seed=seed))
        fuzzed = scenario("fuzz", lambda: run_fuzz(tmp / "fuzz", orthanc, cases=fuzz,
                                                   pdus=pdus if pdus is not None else max(100, fuzz // 5), seed=seed,
                                                   idle_connections=idle_connections, settle_timeout=600))
        many = scenario("8 senders x 8 series", lambda: run_concurrent_senders(tmp / "senders", orthanc, seed=seed))
    finally:
        orthanc.stop()

    def row(name: str, result: Any, trials: object, acked: object, lost: object, dup: object, crashes: object,
            hangs: object, notes: str) -> None:
        if isinstance(result, Exception):
            rows.append([name, trials, "–", "–", "–", "–", "–", "–", f"did not run: {result}"[:200]])
            return
        rows.append([name, trials, acked, lost, dup, crashes, hangs, _mib(result.peak_rss),
                     (notes + (f"; problems: {len(result.problems)} (first: {result.problems[0][:120]})"
                               if result.problems else "")).strip("; ")])

    if isinstance(kill, KillReport):
        row("kill -9 (ingest / inference / delivery)", kill, kill.trials, kill.acknowledged, len(kill.lost),
            kill.duplicated, len(kill.crashes), "–",
            f"planned {kill.phases}; job state at the kill {kill.killed_in_state}; "
            f"{kill.missing_results} results missing")
    else:
        row("kill -9", kill, kills, 0, 0, 0, 0, 0, "")
    for name, result in (("PACS down, then up", up), ("PACS down past max_attempts", dead)):
        if isinstance(result, OutageReport):
            row(name, result, 1, result.acknowledged, "–", result.duplicated, "–", "–",
                f"{result.attempts_while_down} attempts while down; dead-lettered {result.dead_lettered}; "
                f"requeued {result.requeued}; delivered: {result.delivered}")
        else:
            row(name, result, 1, 0, 0, 0, 0, 0, "")
    if isinstance(disk, DiskFullReport):
        row("disk full (48 MB tmpfs)", disk, disk.sent, disk.acknowledged, len(disk.lost), "–",
            0 if disk.alive_after else 1, len(disk.probe_failures),
            f"statuses {disk.statuses}; first 0xA700 at instance {disk.refused_at} with "
            f"{disk.free_mb_at_refusal if disk.free_mb_at_refusal is None else round(disk.free_mb_at_refusal, 1)} MB "
            f"free; .tmp left {len(disk.tmp_leftovers)}; integrity {disk.integrity or '?'}; "
            f"ENOSPC log lines {disk.enospc_log_lines}; delivered after freeing: {disk.delivered_after}")
    else:
        row("disk full", disk, 1, 0, 0, 0, 0, 0, "")
    if isinstance(fuzzed, FuzzReport):
        row(f"fuzz ({idle_connections} idle connections held)", fuzzed,
            f"{fuzzed.dataset_cases} data sets + {fuzzed.series_cases} series + {fuzzed.pdus} PDUs",
            fuzzed.statuses.get("0x0000", 0), "–", "–", len(fuzzed.crashes), len(fuzzed.probe_failures),
            f"statuses {fuzzed.statuses}; no reply {len(fuzzed.no_reply)}; jobs {fuzzed.jobs}; failed without "
            f"stage/reason {len(fuzzed.failed_without_reason)}; unsettled {len(fuzzed.unsettled)}; idle closed by "
            f"node {fuzzed.idle_closed_by_node}; good series delivered: {fuzzed.good_series_delivered}")
    else:
        row("fuzz", fuzzed, fuzz, 0, 0, 0, 0, 0, "")
    if isinstance(many, ConcurrencyReport):
        row("8 senders x 8 series (storescu)", many, many.series, many.instances - 0, "–", many.duplicated,
            "–", "–", f"{many.delivered} of {many.series} delivered; sent in {many.send_seconds:.1f} s; "
            f"{many.missing_results} results missing; sender errors {len(many.sender_errors)}")
    else:
        row("8 senders x 8 series", many, 64, 0, 0, 0, 0, 0, "")
    headers = ["scenario", "trials", "instances acknowledged", "lost", "duplicated results", "crashes",
               "hangs (echo/healthz failures)", "peak RSS (MiB)", "notes"]
    body = (
        f"Seed {seed}. Real Orthanc 1.10 and dcmtk on loopback; route `head-ct-hematoma` on small head CT phantoms. "
        "'lost': acknowledged instances missing from the node's store after a restart; 'duplicated results': result "
        "objects in Orthanc beyond those the job recorded as delivered; 'crashes': the node process exited by "
        "itself; 'hangs': C-ECHO (dcmtk `echoscu`) or `GET /healthz` unanswered during the run (probed every 2 s); "
        "peak RSS: node process + worker processes, sampled from /proc. Fuzz cases are mutations of the project's "
        "phantoms and of real files from `pydicom-data` (truncated, wrong VRs, absurd lengths, pixel-size "
        "mismatches, missing Rows/Columns, broken series) plus garbage PDUs on raw sockets.\n\n"
        + markdown_table(headers, rows)
    )
    return body, reports


def reports_json(reports: dict[str, Any]) -> str:
    """The reports as JSON (exceptions as their text)."""
    return json.dumps({k: (asdict(v) if hasattr(v, "__dataclass_fields__") else repr(v)) for k, v in reports.items()},
                      indent=2, default=str)


def report_text(report: Any, limit: int = 25) -> str:
    """A report as indented JSON, long lists cut to ``limit`` items (for assertion messages)."""
    def cut(value: Any) -> Any:
        if isinstance(value, list) and len(value) > limit:
            return [cut(v) for v in value[:limit]] + [f"... {len(value) - limit} more"]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(v) for v in value]
        return value

    data = asdict(report) if hasattr(report, "__dataclass_fields__") else {"error": repr(report)}
    return json.dumps(cut(data), indent=2, default=str)
