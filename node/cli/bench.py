"""``ainode bench``: the benchmarks of ``benchmarks/``, each adding a section to a Markdown file."""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_bench_command"]


def add_bench_command(sub: argparse._SubParsersAction) -> None:
    """Add ``bench ingest|workers|engines|e2e|faults|priority`` to the subcommands ``sub``."""
    bench = sub.add_parser("bench", help="benchmarks; results go to benchmarks/RESULTS.md")
    benches = bench.add_subparsers(metavar="BENCHMARK")
    ingest = benches.add_parser("ingest", help="C-STORE into the node vs a raw-write receiver")
    ingest.add_argument("--count", type=int, default=300, help="instances per run")
    ingest.add_argument("--senders", type=int, default=4, help="concurrent senders")
    ingest.add_argument("--listeners", type=int, default=1, help="also time the node with this many listener processes")
    ingest.add_argument("--repeats", type=int, default=3, help="series sent to each receiver (medians are reported)")
    ingest.set_defaults(func=_bench, bench="ingest")
    workers = benches.add_parser("workers", help="job throughput with 1 vs 2 ainode worker processes (PostgreSQL store)")
    workers.add_argument("--series", type=int, default=8, help="head CT series queued per run")
    workers.add_argument("--slices", type=int, default=24, help="slices per series")
    workers.set_defaults(func=_bench, bench="workers")
    engines = benches.add_parser("engines", help="latency per engine vs PyTorch eager")
    engines.add_argument("--model", default="head-ct-hematoma", help="model pack to time")
    engines.add_argument("--batch", type=int, default=8, help="slices per engine call")
    engines.add_argument("--iterations", type=int, default=20, help="timed runs per engine")
    engines.set_defaults(func=_bench, bench="engines")
    e2e = benches.add_parser("e2e", help="per-stage latency from storescu to results in Orthanc")
    e2e.add_argument("--slices", type=int, default=40, help="slices per series")
    e2e.add_argument("--series", type=int, default=6, help="series per pack and node; the first is cold")
    e2e.add_argument("--before", metavar="GIT_REF", default=None,
                     help="run the 'before' node from this commit of the repository (default: this code with "
                          "deliver_as_written = false and no kept associations)")
    e2e.add_argument("--real-cr", action="store_true",
                     help="send pydicom-data's real CR (RG1_J2KR, JPEG 2000) instead of the 1024x1024 phantom radiograph")
    e2e.set_defaults(func=_bench, bench="e2e")
    faults = benches.add_parser("faults", help="kill -9, PACS outage, full disk, fuzzing, concurrent senders")
    faults.add_argument("--fuzz", type=int, default=10_000, help="mutated data sets to send")
    faults.add_argument("--kills", type=int, default=50, help="kill -9 trials")
    faults.add_argument("--seed", type=int, default=0, help="random seed of the mutations and kills")
    faults.set_defaults(func=_bench, bench="faults")
    priority = benches.add_parser("priority", help="a stat series behind a backlog of routine ones; the walkthrough's wait")
    priority.add_argument("--backlog", type=int, default=12, help="routine series queued before the stat one")
    priority.add_argument("--slices", type=int, default=16, help="slices per series")
    priority.add_argument("--no-walkthrough", action="store_true", help="leave out the README walkthrough's timing")
    priority.add_argument("--repeats", type=int, default=1,
                          help="run the backlog runs (routine, stat waiting, stat preempting) in turn this many times")
    priority.add_argument("--before", metavar="GIT_REF", default=None,
                          help="run the node of this commit without priorities (default: this code, every job routine)")
    priority.set_defaults(func=_bench, bench="priority")
    for p in (ingest, workers, engines, e2e, faults, priority):
        p.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"), help="Markdown file the results are added to")


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
