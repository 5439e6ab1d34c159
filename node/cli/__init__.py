"""The ``ainode`` command."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .config import Config

__all__ = ["HelpFormatter", "MODEL_COMMANDS", "PHANTOM_COMMANDS", "Parser", "build_parser", "main"]

PHANTOM_COMMANDS: dict[str, str] = {
    "head-ct": "models.phantoms.head_ct",
    "chest-ct": "models.phantoms.chest_ct",
    "cxr": "models.phantoms.cxr",
    "brain-mr": "models.phantoms.brain_mr",
}
"""``ainode phantom KIND`` → module with ``add_cli_arguments(parser)`` and ``run_cli(args) -> int``."""

MODEL_COMMANDS: dict[str, str] = {
    "head-ct-hematoma": "models.head_ct_hematoma.commands",
    "chest-ct-landmarks": "models.chest_ct_landmarks.commands",
    "cxr-nodule": "models.cxr_nodule.commands",
    "cxr-pneumonia": "models.cxr_pneumonia.commands",
    "brain-mr": "models.brain_mr.commands",
}
"""``ainode models train|eval PACK`` → module with ``add_train_arguments``, ``run_train``,
``add_eval_arguments`` and ``run_eval``. Modules import heavy libraries (torch) inside
the ``run_*`` functions only."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the help already names it.

    An option whose default is ``None`` (not set) says in its own help what happens
    without it ("(default: the config's)"); ``tests/test_cli_help.py`` holds every option to this.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default" in text.lower():
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser (and, through ``add_subparsers``, every subcommand's) using :class:`HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ainode`` console command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``ainode`` command line (every subcommand, and the options of every installed pack)."""
    return _parser()


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ainode", description="AI inference node beside a PACS.")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the node")
    serve.add_argument("--config", type=Path, help="config.toml (default: the embedded defaults)")
    serve.add_argument("--dicom-port", type=int, help="override [node] dicom_port (default: the config's)")
    serve.add_argument("--http-port", type=int, help="override [node] http_port (default: the config's)")
    serve.add_argument("--data-dir", type=Path, help="override [node] data_dir (default: the config's)")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run jobs only, from a job store and spool shared with ingest nodes")
    worker.add_argument("--config", type=Path, required=True, help="config.toml with [store] url (PostgreSQL)")
    worker.add_argument("--deliver", action="store_true", help="also deliver results to the destinations")
    worker.add_argument("--data-dir", type=Path, help="override [node] data_dir: results, engine cache (default: the config's)")
    worker.add_argument("--metrics-port", type=int,
                        help="serve GET /metrics on this port of [node] http_host (default: [runner] metrics_port; 0: none)")
    worker.set_defaults(func=_worker)

    check = sub.add_parser("check-config", help="validate a config file and print it")
    check.add_argument("config", type=Path, help="the config.toml to check")
    check.set_defaults(func=_check_config)

    phantom = sub.add_parser("phantom", help="write a synthetic series with its ground truth")
    kinds = phantom.add_subparsers(metavar="KIND")
    for kind, module in _installed(PHANTOM_COMMANDS):
        parser_ = kinds.add_parser(kind, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_cli_arguments(parser_)
        parser_.set_defaults(func=module.run_cli)

    send = sub.add_parser("send", help="send DICOM files with C-STORE")
    send.add_argument("paths", type=Path, nargs="+", help="files or folders")
    send.add_argument("--host", default="127.0.0.1", help="the receiver's host")
    send.add_argument("--port", type=int, default=11112, help="the receiver's DICOM port")
    send.add_argument("--aet", default="AINODE", help="called AE title")
    send.add_argument("--calling-aet", default="AINODE-SCU", help="our (calling) AE title")
    send.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)")
    send.add_argument("--tls", action="store_true", help="send over DICOM TLS, verifying the receiver (default: plain TCP)")
    send.add_argument("--ca", type=Path, help="with --tls: CA certificates to verify the receiver against (default: the system's)")
    send.add_argument("--cert", type=Path, help="with --tls: our client certificate (PEM; default: none)")
    send.add_argument("--key", type=Path, help="with --tls: the client certificate's private key (default: in --cert)")
    send.set_defaults(func=_send)

    process = sub.add_parser("process", help="have the running node retrieve a study from a source and process it")
    process.add_argument("study_uid", help="Study Instance UID")
    process.add_argument("--source", required=True, help="a [[sources]] name of the node's configuration")
    process.add_argument("--route", action="append", dest="routes", metavar="ROUTE",
                         help="run only this route (repeat for several; default: every matching route)")
    process.add_argument("--node", default="http://127.0.0.1:8080", help="the node's HTTP address")
    process.add_argument("--token-file", type=Path, help="file holding the API's bearer token (default: none, or --config's)")
    process.add_argument("--config", type=Path, help="take the token file from this config's [http] token_file (default: none)")
    process.add_argument("--ca", type=Path, help="CA certificates to verify an https:// node against (default: the system's)")
    process.set_defaults(func=_process)

    models = sub.add_parser("models", help="train and evaluate model packs")
    actions = models.add_subparsers(metavar="ACTION")
    train = actions.add_parser(
        "train", help="train a pack and export ONNX (needs the train extra)",
        description="Train a model pack and export its ONNX graph (needs the train extra).",
        epilog="Each pack has its own options: ainode models train PACK --help")
    evaluate = actions.add_parser("eval", help="evaluate a pack's weights on held-out data")
    train_packs = train.add_subparsers(metavar="PACK", title="packs")
    eval_packs = evaluate.add_subparsers(metavar="PACK")
    for pack, module in _installed(MODEL_COMMANDS):
        summary = getattr(module, "TRAIN_HELP", "")
        module.add_train_arguments(train_packs.add_parser(
            pack, help=summary, description=summary))
        train_packs.choices[pack].set_defaults(func=module.run_train)
        module.add_eval_arguments(eval_packs.add_parser(pack))
        eval_packs.choices[pack].set_defaults(func=module.run_eval)
    build = actions.add_parser("build", help="prebuild the GPU engines (TensorRT) of every configured model")
    build.add_argument("--config", type=Path, help="config.toml (default: the embedded defaults)")
    build.add_argument("--data-dir", type=Path, help="override [node] data_dir; engines go to DATA_DIR/engine-cache (default: the config's)")
    build.set_defaults(func=_models_build)
    triton = actions.add_parser("export-triton", help="write a Triton model repository for every pack")
    triton.add_argument("out", type=Path, help="folder of the model repository")
    triton.add_argument("--max-batch", type=int, default=32, help="max_batch_size of each model")
    triton.set_defaults(func=_export_triton)

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
    for p in (ingest, workers, engines, e2e, faults):
        p.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"), help="Markdown file the results are added to")
    return parser


def _installed(registry: dict[str, str]) -> list[tuple[str, ModuleType]]:
    """The registry's command modules that exist in this installation.

    A module that is absent is left out; one that exists but fails to import raises.
    """
    found = []
    for name, module_name in registry.items():
        try:
            found.append((name, importlib.import_module(module_name)))
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
    return found


def _load_config(path: Path | None) -> Config | None:
    """The configuration at ``path`` (embedded defaults: ``None``), or ``None`` after saying why not."""
    from .config import ConfigError, load_config

    try:
        return load_config(path)
    except (ConfigError, OSError) as exc:
        print(f"ainode: configuration error: {exc}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    import os
    import ssl

    from .http.auth import AuthError
    from .logs import configure_logging
    from .service import Node
    from .ports import PortInUse, check_ports

    config = _load_config(args.config)
    if config is None:
        return 2
    config = Node.with_overrides(
        config, dicom_port=args.dicom_port, http_port=args.http_port,
        data_dir=args.data_dir.resolve() if args.data_dir else None,
    )
    try:
        check_ports(config.node)
    except PortInUse as exc:
        print(exc, file=sys.stderr)
        return 3
    configure_logging(config.node.log_level)
    os.umask(0o077)  # everything the node writes (job store, spool, results) is its user's only
    try:
        node = Node(config)
    except (AuthError, ssl.SSLError) as exc:
        print(f"ainode: configuration error: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:  # the shared job store ([store] url) cannot be reached
        print(f"ainode: {exc}", file=sys.stderr)
        return 1
    node.serve_forever()
    return 0


def _worker(args: argparse.Namespace) -> int:
    import os
    from dataclasses import replace

    from .logs import configure_logging
    from .service import Node

    config = _load_config(args.config)
    if config is None:
        return 2
    if config.store.url is None:
        print("ainode worker: [store] url is not set: a worker shares a PostgreSQL job store with the ingest nodes",
              file=sys.stderr)
        return 2
    config = Node.with_overrides(config, data_dir=args.data_dir.resolve() if args.data_dir else None)
    if args.metrics_port is not None:
        config = replace(config, runner=replace(config.runner, metrics_port=args.metrics_port))
    configure_logging(config.node.log_level)
    os.umask(0o077)
    try:
        node = Node(config, worker=True, deliver=args.deliver)
    except ConnectionError as exc:
        print(f"ainode worker: {exc}", file=sys.stderr)
        return 1
    node.serve_forever()
    return 0


def _models_build(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engines import EngineOptions, available_engines, create_engine
    from .packs.registry import load_pack

    config = load_config(args.config)
    data_dir = args.data_dir.resolve() if args.data_dir else config.node.data_dir
    present = available_engines()
    gpu = [e for e in ("tensorrt", "onnxruntime-trt") if e in present]
    if not gpu:
        print("no GPU engine here (tensorrt / onnxruntime-trt): nothing to build")
        return 0
    names = {route.model for route in config.routes}
    for name in sorted(names):
        model = config.model(name)
        pack = load_pack(model.pack, model.weights)
        kinds = gpu if model.engine == "auto" else [model.engine] if model.engine in gpu else []
        for kind in kinds:
            options = EngineOptions(cache_dir=data_dir / "engine-cache")
            create_engine(kind, pack.model_path(), options)
            print(f"{name}: {kind} engine ready in {options.cache_dir}")
    return 0


def _export_triton(args: argparse.Namespace) -> int:
    from .engines.triton_repository import export_repository

    for path in export_repository(args.out, max_batch=args.max_batch):
        print(f"wrote {path}")
    return 0


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
    else:
        from benchmarks.e2e import run_e2e

        body, _ = run_e2e(slices=args.slices, series=args.series, before_ref=args.before, real_cr=args.real_cr)
        title = "End to end"
    write_section(args.results, title, body)
    print(body)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    if config is None:
        return 2
    print(config)
    return 0


def _process(args: argparse.Namespace) -> int:
    import ssl

    import httpx

    token_file = args.token_file
    if token_file is None and args.config is not None:
        from .config import ConfigError, load_config

        try:
            token_file = load_config(args.config).http.token_file
        except (ConfigError, OSError) as exc:
            print(f"ainode process: configuration error: {exc}", file=sys.stderr)
            return 2
    headers = {}
    if token_file is not None:
        try:
            headers["Authorization"] = f"Bearer {Path(token_file).read_text(encoding='utf-8').strip()}"
        except OSError as exc:
            print(f"ainode process: the token file cannot be read ({type(exc).__name__})", file=sys.stderr)
            return 2
    try:
        verify = True if args.ca is None else ssl.create_default_context(cafile=str(args.ca))
    except (OSError, ssl.SSLError) as exc:
        print(f"ainode process: the CA file cannot be used ({type(exc).__name__})", file=sys.stderr)
        return 2
    try:
        answer = httpx.post(f"{args.node.rstrip('/')}/api/studies/{args.study_uid}/process",
                            json={"source": args.source, "routes": args.routes}, headers=headers, timeout=600,
                            verify=verify)
    except httpx.HTTPError as exc:
        print(f"ainode process: the node at {args.node} cannot be reached ({type(exc).__name__})", file=sys.stderr)
        return 1
    body = answer.json()
    if answer.status_code != 200:
        print(f"ainode process: {body.get('detail', body)}", file=sys.stderr)
        return 1
    print(f"study {body['study_uid']} from {body['source']}: {body['stored']} instances stored,"
          f" {body['duplicate']} already held, {body['refused']} refused; jobs run again: {body['rerun_jobs'] or 'none'}")
    return 0


def _send(args: argparse.Namespace) -> int:
    import ssl

    from .dicom.send import dicom_files, send_paths
    from .dicom.tls import client_context

    files = dicom_files(args.paths)
    if not files:
        print("ainode send: no DICOM files found", file=sys.stderr)
        return 1
    if not args.tls and (args.ca or args.cert or args.key):
        print("ainode send: --ca, --cert and --key go with --tls", file=sys.stderr)
        return 2
    try:
        tls = client_context(args.ca, args.cert, args.key) if args.tls else None
    except (OSError, ssl.SSLError) as exc:
        print(f"ainode send: the TLS files cannot be used ({type(exc).__name__}: {exc.strerror or exc})",
              file=sys.stderr)
        return 2
    report = send_paths(files, args.host, args.port, args.aet, args.calling_aet,
                        progress=False if args.no_progress else None, tls=tls)
    print(f"sent {report.sent} of {len(files)}")
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
