"""kill -9 trials: SIGKILL of the node (and its workers) mid-ingest, during inference and
during delivery, then a restart; nothing acknowledged may be lost, no result duplicated."""
from __future__ import annotations

import contextlib
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.services import NodeProcess, OrthancServer, node_exit_code, node_pid
from benchmarks.faults.background import RssSampler, SlowProxy
from benchmarks.faults.common import (
    _QUIET_SECONDS,
    _SETTLED,
    SUCCESS,
    _current_job,
    _Destination,
    _fresh_series,
    _head_ct,
    _series_jobs,
    _tail,
    _wait_job,
    check_results,
    node_instance_uids,
    start_checked_node,
)
from benchmarks.faults.sending import send_datasets


def _http_port(node: NodeProcess) -> int:
    return int(node.http_url.rsplit(":", 1)[1])


@dataclass
class KillReport:
    trials: int = 0
    phases: dict[str, int] = field(default_factory=dict)         # planned phase -> trials
    killed_in_state: dict[str, int] = field(default_factory=dict)  # job state seen just before the kill
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)         # acknowledged, not in the store after restart
    duplicated: int = 0
    missing_results: int = 0
    crashes: list[str] = field(default_factory=list)      # the node exited by itself
    problems: list[str] = field(default_factory=list)
    trial_log: list[str] = field(default_factory=list)
    peak_rss: int = 0
    seconds: float = 0.0
    log_tail: str = ""


def run_kill_trials(workdir: Path, orthanc: OrthancServer, *, trials: int = 10, seed: int = 0,
                    slices: tuple[int, int] = (3, 5), delivery_delay: float = 0.02,
                    deadline_s: float = 300.0) -> KillReport:
    """``trials`` rounds of: send a head CT, SIGKILL the node (and its workers) at a seeded
    random moment of a seeded random phase, restart it, check that every acknowledged
    instance is in the store, resend what was not acknowledged, wait for the results.
    Then every series' results are compared with Orthanc (:func:`check_results`).

    Delivery goes through a :class:`SlowProxy` so that it lasts long enough to be
    interrupted. The trials stop early (reported) after ``deadline_s``.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    report = KillReport()
    base = _head_ct(seed, slices[1])
    proxy = SlowProxy(("127.0.0.1", orthanc.dicom_port), delay=delivery_delay).start()
    node = start_checked_node(Path(workdir) / "node", _Destination(proxy.port, orthanc.ae_title),
                              quiet_seconds=_QUIET_SECONDS)
    data_dir = Path(workdir) / "node" / "data"
    sent: list[tuple[str, str, int]] = []  # (series, study, slices)
    try:
        with RssSampler(lambda: node_pid(node)) as rss:
            for trial in range(trials):
                if time.monotonic() - started > deadline_s:
                    report.problems.append(f"stopped after {trial} of {trials} trials: over {deadline_s:.0f}s")
                    break
                n = rng.randint(*slices)
                phase = rng.choice(("ingest", "inference", "delivery"))
                series = _fresh_series(base, n)
                uid, study = str(series[0].SeriesInstanceUID), str(series[0].StudyInstanceUID)
                sent.append((uid, study, n))
                report.phases[phase] = report.phases.get(phase, 0) + 1
                statuses: dict[str, int | None] = {}
                state_at_kill = "?"
                if phase == "ingest":
                    kill_after = rng.randrange(0, n)
                    pause = rng.uniform(0.0, 0.03)
                    acked = threading.Event()

                    def on_status(index: int, code: int | None, _k: int = kill_after) -> None:
                        if index + 1 >= _k:
                            acked.set()

                    if kill_after == 0:
                        acked.set()
                    sender = threading.Thread(
                        target=lambda: statuses.update(send_datasets(node.dicom_port, series, on_status=on_status)))
                    sender.start()
                    acked.wait(30)
                    time.sleep(pause)
                    state_at_kill = "ingest"
                    detail = f"after {kill_after} acks + {pause * 1000:.0f} ms"
                else:
                    statuses.update(send_datasets(node.dicom_port, series))
                    sender = None
                    wanted = ("running",) if phase == "inference" else ("written",)
                    try:
                        _wait_job(node, uid, (*wanted, *_SETTLED, "written"), 60, interval=0.02)
                    except TimeoutError as exc:
                        report.problems.append(f"trial {trial}: {exc}")
                    pause = rng.uniform(0.0, 0.6 if phase == "inference" else 0.4)
                    time.sleep(pause)
                    with contextlib.suppress(Exception):
                        job = _current_job(_series_jobs(node, uid))
                        state_at_kill = job["state"] if job else "no job yet"
                    detail = f"{pause * 1000:.0f} ms after the job reached {wanted[0]}"
                code = node_exit_code(node)
                if code is not None:
                    report.crashes.append(f"trial {trial}: the node had exited by itself (status {code})")
                node.kill()
                if sender is not None:
                    sender.join(60)
                report.killed_in_state[state_at_kill] = report.killed_in_state.get(state_at_kill, 0) + 1
                acknowledged = {u for u, c in statuses.items() if c == SUCCESS}
                report.acknowledged += len(acknowledged)
                node.start(_http_port(node))
                lost = sorted(acknowledged - node_instance_uids(data_dir))
                report.lost += lost
                report.trial_log.append(f"trial {trial}: {n} slices, kill in {phase} ({detail}), job was "
                                        f"{state_at_kill}; {len(acknowledged)} acknowledged, {len(lost)} lost")
                rest = [ds for ds in series if statuses.get(str(ds.SOPInstanceUID)) != SUCCESS]
                if rest:
                    again = send_datasets(node.dicom_port, rest)
                    report.acknowledged += sum(1 for c in again.values() if c == SUCCESS)
                    if any(c != SUCCESS for c in again.values()) or len(again) != len(rest):
                        report.problems.append(f"trial {trial}: resending after the restart: {again}")
                try:
                    _wait_job(node, uid, _SETTLED, 90)
                except TimeoutError as exc:
                    report.problems.append(f"trial {trial}: {exc}")
            for uid, study, n in sent:
                try:
                    _wait_job(node, uid, _SETTLED, 60)
                    check = check_results(node, orthanc, uid, study, slices=n)
                except Exception as exc:
                    report.problems.append(f"series {uid}: {exc!r}")
                    continue
                report.duplicated += len(check.duplicated)
                report.missing_results += len(check.missing)
                report.problems += check.problems
            report.peak_rss = rss.peak
        report.trials = len(sent)
    finally:
        report.log_tail = _tail(node)
        node.stop()
        proxy.stop()
        report.seconds = time.monotonic() - started
    return report
