"""``ainode bench``: the benchmarks of ``benchmarks/``, each adding a section to a Markdown file."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_bench_command"]


_Option = tuple[str, Any, str]
"""A flag, its default and its help: an ``int`` default makes an integer option, ``False`` a
switch, a string or ``None`` a string option (``--before``: a git reference)."""

_BENCHMARKS: tuple[tuple[str, str, tuple[_Option, ...]], ...] = (
    ("ingest", "C-STORE into the node vs a raw-write receiver", (
        ("--count", 300, "instances per run"),
        ("--senders", 4, "concurrent senders"),
        ("--listeners", 1, "also time the node with this many listener processes"),
        ("--repeats", 3, "series sent to each receiver (medians are reported)"),
    )),
    ("workers", "job throughput with 1 vs 2 ainode worker processes (PostgreSQL store)", (
        ("--series", 8, "head CT series queued per run"),
        ("--slices", 24, "slices per series"),
    )),
    ("engines", "latency per engine vs PyTorch eager", (
        ("--model", "head-ct-hematoma", "model pack to time"),
        ("--batch", 8, "slices per engine call"),
        ("--iterations", 20, "timed runs per engine"),
    )),
    ("e2e", "per-stage latency from storescu to results in Orthanc", (
        ("--slices", 40, "slices per series"),
        ("--series", 6, "series per pack and node; the first is cold"),
        ("--before", None, "run the 'before' node from this commit of the repository (default: this code with "
                           "deliver_as_written = false and no kept associations)"),
        ("--real-cr", False,
         "send pydicom-data's real CR (RG1_J2KR, JPEG 2000) instead of the 1024x1024 phantom radiograph"),
    )),
    ("faults", "kill -9, PACS outage, full disk, fuzzing, concurrent senders", (
        ("--fuzz", 10_000, "mutated data sets to send"),
        ("--kills", 50, "kill -9 trials"),
        ("--seed", 0, "random seed of the mutations and kills"),
    )),
    ("priority", "a stat series behind a backlog of routine ones; the walkthrough's wait", (
        ("--backlog", 12, "routine series queued before the stat one"),
        ("--slices", 16, "slices per series"),
        ("--no-walkthrough", False, "leave out the README walkthrough's timing"),
        ("--repeats", 1, "run the backlog runs (routine, stat waiting, stat preempting) in turn this many times"),
        ("--before", None, "run the node of this commit without priorities (default: this code, every job routine)"),
    )),
)
"""Each benchmark: its name, its help and its options (:data:`_Option`)."""


def add_bench_command(sub: argparse._SubParsersAction) -> None:
    """Add ``bench ingest|workers|engines|e2e|faults|priority`` to the subcommands ``sub``."""
    bench = sub.add_parser("bench", help="benchmarks; results go to benchmarks/RESULTS.md")
    benches = bench.add_subparsers(metavar="BENCHMARK")
    for name, help_text, options in _BENCHMARKS:
        parser = benches.add_parser(name, help=help_text)
        for flag, default, option_help in options:
            parser.add_argument(flag, **_option_kind(default), help=option_help)
        parser.set_defaults(func=_bench, bench=name)
        parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"),
                            help="Markdown file the results are added to")


def _option_kind(default: Any) -> dict[str, Any]:
    """The ``add_argument`` keywords that the default of an :data:`_Option` implies."""
    if default is False:
        return {"action": "store_true"}
    if isinstance(default, int):
        return {"type": int, "default": default}
    return {"default": default, "metavar": "GIT_REF"} if default is None else {"default": default}


def _bench(args: argparse.Namespace) -> int:
    from benchmarks.results import write_section

    if args.bench == "ingest":
        from benchmarks.ingest import run_ingest

        body, _ = run_ingest(count=args.count, senders=args.senders, listeners=args.listeners,
                             repeats=args.repeats)
        title = "Ingest"
    elif args.bench == "workers":
        from benchmarks.workers import run_workers

        body, _ = run_workers(series=args.series, slices=args.slices)
        title = "Workers: job throughput"
    elif args.bench == "engines":
        from benchmarks.engines import run_engines

        body, _ = run_engines(args.model, args.batch, iterations=args.iterations)
        title = f"Engines: {args.model}, batch {args.batch}"
    elif args.bench == "faults":
        from benchmarks.faults import run_faults

        body, _ = run_faults(fuzz=args.fuzz, kills=args.kills, seed=args.seed)
        title = "Faults"
    elif args.bench == "priority":
        from benchmarks.priority import run_priority

        body, _ = run_priority(backlog=args.backlog, slices=args.slices, walkthrough=not args.no_walkthrough,
                               before_ref=args.before, repeats=args.repeats)
        title = "Priority: stat behind a backlog"
    else:
        from benchmarks.e2e import run_e2e

        body, _ = run_e2e(slices=args.slices, series=args.series, before_ref=args.before, real_cr=args.real_cr)
        title = "End to end"
    write_section(args.results, title, body)
    print(body)
    return 0
