"""The ``ainode`` command."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ainode`` console command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ainode", description="AI inference node beside a PACS.")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the node")
    serve.add_argument("--config", type=Path, help="config.toml (default: the embedded defaults)")
    serve.add_argument("--dicom-port", type=int, help="override [node] dicom_port")
    serve.add_argument("--http-port", type=int, help="override [node] http_port")
    serve.add_argument("--data-dir", type=Path, help="override [node] data_dir")
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a config file and print it")
    check.add_argument("config", type=Path)
    check.set_defaults(func=_check_config)

    phantom = sub.add_parser("phantom", help="write a synthetic series with its ground truth")
    kinds = phantom.add_subparsers(metavar="KIND")
    head = kinds.add_parser("head-ct", help="a head CT, optionally with hematoma")
    head.add_argument("--out", type=Path, required=True)
    head.add_argument("--seed", type=int, default=0)
    head.add_argument("--slices", type=int, default=24)
    head.add_argument("--hematoma", action=argparse.BooleanOptionalAction, default=True)
    head.add_argument("--patient-name", default="Phantom^Head")
    head.add_argument("--patient-id", default=None)
    head.set_defaults(func=_phantom_head_ct)

    send = sub.add_parser("send", help="send DICOM files with C-STORE")
    send.add_argument("paths", type=Path, nargs="+", help="files or folders")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=11112)
    send.add_argument("--aet", default="AINODE", help="called AE title")
    send.add_argument("--calling-aet", default="AINODE-SCU")
    send.set_defaults(func=_send)

    models = sub.add_parser("models", help="train and evaluate model packs")
    msub = models.add_subparsers(metavar="ACTION")
    train = msub.add_parser("train", help="train a pack on phantoms and export ONNX")
    train.add_argument("pack", choices=["head-ct-hematoma"])
    train.add_argument("--phantoms", type=int, default=60, help="number of training phantoms")
    train.add_argument("--epochs", type=int, default=6)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True)
    train.set_defaults(func=_train)
    evaluate = msub.add_parser("eval", help="evaluate a pack's weights on held-out phantoms")
    evaluate.add_argument("pack", choices=["head-ct-hematoma"])
    evaluate.add_argument("--weights", type=Path, help="model.onnx (default: the demo weights)")
    evaluate.add_argument("--phantoms", type=int, default=40)
    evaluate.set_defaults(func=_eval)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .logs import configure_logging
    from .service import Node

    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"ainode: configuration error: {exc}", file=sys.stderr)
        return 2
    config = Node.with_overrides(
        config, dicom_port=args.dicom_port, http_port=args.http_port,
        data_dir=args.data_dir.resolve() if args.data_dir else None,
    )
    configure_logging(config.node.log_level)
    Node(config).serve_forever()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"ainode: configuration error: {exc}", file=sys.stderr)
        return 2
    print(config)
    return 0


def _phantom_head_ct(args: argparse.Namespace) -> int:
    from models.phantoms.head_ct import generate_head_ct, write_phantom

    phantom = generate_head_ct(
        seed=args.seed, slices=args.slices, hematoma=args.hematoma,
        patient_name=args.patient_name, patient_id=args.patient_id,
    )
    files = write_phantom(phantom, args.out)
    print(f"wrote {len(files)} files to {args.out} (hematoma: {phantom.has_hematoma})")
    return 0


def _send(args: argparse.Namespace) -> int:
    from .send import dicom_files, send_paths

    files = dicom_files(args.paths)
    if not files:
        print("ainode send: no DICOM files found", file=sys.stderr)
        return 1
    report = send_paths(files, args.host, args.port, args.aet, args.calling_aet)
    print(f"sent {report.sent} of {len(files)}")
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1


def _train(args: argparse.Namespace) -> int:
    from models.head_ct_hematoma.train import train

    report = train(args.phantoms, args.out, epochs=args.epochs, seed=args.seed)
    print(json.dumps(_as_dict(report), indent=2, default=str))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from models.head_ct_hematoma.pack import HeadCTHematomaPack
    from models.head_ct_hematoma.train import HELD_OUT_SEED_START, evaluate

    pack = HeadCTHematomaPack(weights=args.weights)
    seeds = range(HELD_OUT_SEED_START, HELD_OUT_SEED_START + args.phantoms)
    report = evaluate(pack.model_path(), seeds, min_patches=pack.min_patches)
    print(json.dumps(_as_dict(report), indent=2, default=str))
    return 0


def _as_dict(report: object) -> object:
    from dataclasses import asdict, is_dataclass

    return asdict(report) if is_dataclass(report) and not isinstance(report, type) else report


if __name__ == "__main__":
    raise SystemExit(main())
