"""``ainode bench priority``: what a stat priority buys behind a backlog, and the walkthrough's wait.

**Backlog.** One worker, a real Orthanc as the PACS. A head CT series is sent alone (its
completion → results time with no backlog; like the stat series, it has a hematoma, so that
both jobs write a SEG, overlays and an SR); then ``backlog`` routine head CT series from one
modality (one association from a ``sends_whole_series`` peer: they complete together at its
release and are all queued), and last a head CT from the emergency CT (calling AE ``ER_CT``, which the route's
``priority_from`` makes stat). Reported: the stat series' completion → results in Orthanc
against the no-backlog time (the ratio), and its place in the delivery order; with every job
routine (the order of arrival, as before issue 32), with priorities but ``[runner]
preempt_for_stat = false`` (the stat job waits for the routine job running), and with
preemption (the default: that job yields its worker). ``repeats`` runs all three in turn that
many times (a shared machine's load moves between runs; each row says the load average).

**Walkthrough.** The README's: Orthanc (StableAge 5) forwards a head CT to the node (quiet
period 10 s); send to Orthanc → every result in Orthanc, with Orthanc declared a
``sends_whole_series`` peer and without.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom

from benchmarks.e2e import _worktree
from benchmarks.results import markdown_table
from benchmarks.services import (HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, storescu,
                                 wait_for)
from node.states import JobState, SeriesState

__all__ = ["run_priority"]

_STAT_AE = "ER_CT"
_QUIET = 30.0  # longer than sending the backlog takes: its series complete together (at the release)
_STAT_RULE = f'priority_from = {{calling_ae = {{{_STAT_AE} = "stat"}}}}\n'
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class _Backlog:
    """One backlog run: the stat series' times and its place in the delivery order."""

    no_backlog: float  # completion → results of a series sent alone
    stat: float  # completion → results of the stat series sent after the backlog
    place: int  # 1-based place of the stat job in the order of delivery
    routine_after: int  # routine jobs of the backlog delivered after it
    backlog: int
    load: float  # the machine's 1-minute load average at the end of the run


def _series(root: Path, seed: int, slices: int) -> tuple[list[Path], str]:
    from models.phantoms.head_ct import generate_head_ct, write_phantom

    folder = root / f"s{seed}-{slices}"
    files = sorted(folder.glob("*.dcm")) if folder.is_dir() else []  # a workdir's series are reused
    if not files:
        phantom = generate_head_ct(seed=seed, slices=slices, hematoma=seed % 2 == 0)
        files = sorted(p for p in write_phantom(phantom, folder) if p.suffix == ".dcm")
    return files, str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


def _delivered(node: NodeProcess, series_uid: str) -> tuple[float, float, int]:
    """(series complete, job delivered, job id) from the node's API, waiting for the delivery."""
    def done() -> dict | None:
        jobs = [j for j in node.jobs() if j["series_uid"] == series_uid]
        if any(j["state"] == JobState.FAILED for j in jobs):
            raise RuntimeError(f"job failed: {jobs}")
        return jobs[0] if jobs and jobs[0]["state"] == JobState.DELIVERED else None

    job = wait_for(done, 600, 0.05, what="results in Orthanc")
    series = httpx.get(f"{node.http_url}/api/series/{series_uid}", timeout=10).json()
    complete = [e["at"] for e in series["events"] if e["state"] == SeriesState.COMPLETE][-1]
    events = httpx.get(f"{node.http_url}/api/jobs/{job['id']}", timeout=10).json()["events"]
    delivered = [e["at"] for e in events if e["state"] == JobState.DELIVERED][-1]
    return complete, delivered, job["id"]


def _backlog_run(root: Path, orthanc: OrthancServer, sets: dict[str, list], *, priorities: bool,
                 preempt: bool = True, source: Path | None = None) -> _Backlog:
    http_port, dicom_port = free_port(), free_port()
    route = HEAD_CT_ROUTE + (_STAT_RULE if priorities else "")
    # both senders forward whole series: the backlog's series all complete at its association's
    # release, queued together (a node before issue 32 knows no such peer: its series complete
    # together too, a quiet period after the last image of each)
    peers = "".join(f'\n[[peers]]\nae_title = "{t}"\nhost = "127.0.0.1"\nsends_whole_series = true\n'
                    for t in ("MODALITY", _STAT_AE)) if source is None else ""
    peers += "" if preempt else "\n[runner]\npreempt_for_stat = false\n"
    node = NodeProcess(root, node_config(dicom_port, http_port, orthanc, route, quiet_seconds=_QUIET, extra=peers),
                       source=source)
    node.dicom_port = dicom_port
    node.start(http_port)
    try:
        (warm_files, warm_uid), (alone_files, alone_uid) = sets["warm"], sets["alone"]
        storescu(warm_files, dicom_port, calling_ae="MODALITY")
        _delivered(node, warm_uid)  # the model loaded, the worker warm
        storescu(alone_files, dicom_port, calling_ae=_STAT_AE)
        complete, delivered, _ = _delivered(node, alone_uid)
        no_backlog = delivered - complete
        storescu([f for files, _uid in sets["routine"] for f in files], dicom_port, calling_ae="MODALITY")
        stat_files, stat_uid = sets["stat"]
        storescu(stat_files, dicom_port, calling_ae=_STAT_AE)
        stat_complete, stat_delivered, stat_job = _delivered(node, stat_uid)
        routine = [_delivered(node, uid) for _files, uid in sets["routine"]]
        order = sorted([(stat_delivered, stat_job)] + [(d, j) for _c, d, j in routine])
        place = [j for _d, j in order].index(stat_job) + 1
        return _Backlog(no_backlog, stat_delivered - stat_complete, place, len(routine) + 1 - place, len(routine),
                        os.getloadavg()[0])
    finally:
        node.stop()


def _walkthrough_run(root: Path, slices: int, *, whole_series: bool) -> float:
    """Send → every result in Orthanc, through the demo's forwarding (StableAge 5, quiet period 10 s)."""
    dicom_port, http_port = free_port(), free_port()
    orthanc = OrthancServer(root / "orthanc", node_port=dicom_port, extra_config={
        "LuaScripts": [str(REPO / "orthanc" / "autoforward.lua")], "StableAge": 5}).start()
    peer = (f'\n[[peers]]\nae_title = "{orthanc.ae_title}"\nhost = "127.0.0.1"\nsends_whole_series = true\n'
            if whole_series else "")
    node = NodeProcess(root / "node", node_config(dicom_port, http_port, orthanc, HEAD_CT_ROUTE,
                                                  quiet_seconds=10.0, extra=peer))
    node.dicom_port = dicom_port
    node.start(http_port)
    try:
        files, series_uid = _series(root, 3, slices)
        study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        wait_for(lambda: "models loaded" in node.log_text(), 120, what="the node's models")
        storescu(files, orthanc.dicom_port, called_ae=orthanc.ae_title, calling_ae="AINODE-SCU")
        sent = time.time()
        wait_for(lambda: any(j["state"] == JobState.DELIVERED for j in node.jobs()), 300, 0.05,
                 what="the node's results")
        results = wait_for(lambda: orthanc.results_by_class(study_uid, series_uid), 60, 0.1, what="results in Orthanc")
        assert results
        return time.time() - sent
    finally:
        node.stop()
        orthanc.stop()


def run_priority(backlog: int = 12, slices: int = 16, walkthrough: bool = True, before_ref: str | None = None,
                 workdir: Path | None = None, repeats: int = 1) -> tuple[str, dict[str, float]]:
    """Run the benchmark; returns (Markdown section body, numbers).

    ``before_ref``: the run without priorities uses the node of this commit (the order of
    arrival before issue 32); without it, this code with every job routine (round robin by sender).
    ``repeats``: the three runs, in turn, this many times; the numbers are medians.
    """
    root = Path(workdir or tempfile.mkdtemp(prefix="ainode-bench-priority-"))
    sets = {"warm": _series(root, 900, slices), "alone": _series(root, 904, slices),
            "stat": _series(root, 902, slices), "routine": [_series(root, 1000 + i, slices) for i in range(backlog)]}
    orthanc = OrthancServer(root / "pacs").start()
    before = f"before issue 32 (`{before_ref}`), arrival order" if before_ref else "every job routine (round robin)"
    kinds = {"off": (before, False, True), "wait": ("stat from ER_CT, `preempt_for_stat = false`", True, False),
             "on": ("stat from ER_CT, preemption (the default)", True, True)}
    runs: list[tuple[str, _Backlog]] = []
    source = _worktree(before_ref, root / "before-tree") if before_ref else None
    try:
        for turn in range(repeats):
            for key, (name, on, preempt) in kinds.items():
                print(f"priority: backlog of {backlog}, {name} ({turn + 1} of {repeats})", file=sys.stderr)
                runs.append((key, _backlog_run(root / f"{key}-{turn}", orthanc, sets, priorities=on, preempt=preempt,
                                               source=None if on else source)))
    finally:
        orthanc.stop()
        if source is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(source)], check=False)
    rows = [[kinds[k][0], f"{r.no_backlog:.2f}", f"{r.stat:.2f}", f"{r.stat / r.no_backlog:.2f}x",
             f"{r.place} of {r.backlog + 1}", r.routine_after, f"{r.load:.1f}"] for k, r in runs]
    body = ("One worker (ONNX Runtime, CPU), a real Orthanc as the PACS; "
            f"head CT phantoms of {slices} slices, quiet period {_QUIET:.0f} s. A series is sent alone, then a backlog of "
            f"{backlog} routine series (one association, from a `sends_whole_series` peer: they complete together "
            f"at its release and are all queued) and, last, one from `{_STAT_AE}` (stat through `priority_from`). "
            "Times are "
            "series completion → its job's results all delivered to Orthanc (s); load: the 1-minute load average "
            "at the end of the run.\n\n"
            + markdown_table(["run", "no backlog", "stat behind the backlog", "ratio", "place in delivery",
                              "routine delivered after it", "load"], rows))
    numbers: dict[str, float] = {}
    for key in kinds:
        mine = [r for k, r in runs if k == key]
        numbers.update({f"{key}_{f}": statistics.median(float(getattr(r, f)) for r in mine)
                        for f in ("no_backlog", "stat", "place", "routine_after")})
        numbers[f"{key}_ratio"] = statistics.median(r.stat / r.no_backlog for r in mine)
    if repeats > 1:
        body += "\n\nMedian ratios over the " + f"{repeats} turns: " + ", ".join(
            f"{kinds[k][0]} {numbers[f'{k}_ratio']:.2f}x" for k in kinds) + "."
    if walkthrough:
        print("priority: the README walkthrough, without and with sends_whole_series", file=sys.stderr)
        before = _walkthrough_run(root / "walk-before", 24, whole_series=False)
        after = _walkthrough_run(root / "walk-after", 24, whole_series=True)
        numbers.update(walkthrough_before=before, walkthrough_after=after)
        body += ("\n\nThe README walkthrough (a 24-slice head CT sent to Orthanc, which forwards it when stable, "
                 "StableAge 5 s; the node's quiet period 10 s), send → every result in Orthanc: "
                 f"{before:.1f} s with Orthanc an ordinary sender, {after:.1f} s with it declared "
                 "`[[peers]] sends_whole_series = true`.")
    return body, numbers
