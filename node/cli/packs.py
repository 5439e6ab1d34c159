"""``ainode phantom`` and ``ainode models``: the commands the model packs and their phantoms bring."""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from ..packs.registry import APPLICABILITY_COMMANDS, MODEL_COMMANDS, PHANTOM_COMMANDS, installed_commands
from .models_check import add_check_command

__all__ = ["add_models_command", "add_phantom_command"]


def add_phantom_command(sub: argparse._SubParsersAction) -> None:
    """Add ``phantom KIND`` (one per installed phantom generator) to the subcommands ``sub``."""
    phantom = sub.add_parser("phantom", help="write a synthetic series with its ground truth")
    kinds = phantom.add_subparsers(metavar="KIND")
    for kind, module in installed_commands(PHANTOM_COMMANDS):
        parser_ = kinds.add_parser(kind, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_cli_arguments(parser_)
        parser_.set_defaults(func=module.run_cli)


def add_models_command(sub: argparse._SubParsersAction) -> None:
    """Add ``models train|eval PACK``, ``models build`` and ``models export-triton`` to the subcommands ``sub``."""
    models = sub.add_parser("models", help="train and evaluate model packs")
    actions = models.add_subparsers(metavar="ACTION")
    train = actions.add_parser(
        "train", help="train a pack and export ONNX (needs the train extra)",
        description="Train a model pack and export its ONNX graph (needs the train extra).",
        epilog="Each pack has its own options: ainode models train PACK --help")
    evaluate = actions.add_parser("eval", help="evaluate a pack's weights on held-out data")
    train_packs = train.add_subparsers(metavar="PACK", title="packs")
    eval_packs = evaluate.add_subparsers(metavar="PACK")
    for pack, module in installed_commands(MODEL_COMMANDS):
        summary = getattr(module, "TRAIN_HELP", "")
        module.add_train_arguments(train_packs.add_parser(
            pack, help=summary, description=summary))
        train_packs.choices[pack].set_defaults(func=module.run_train)
        module.add_eval_arguments(eval_packs.add_parser(pack))
        eval_packs.choices[pack].add_argument(
            "--applicability", type=int, metavar="N", default=0,
            help="instead: the applicability check's out-of-domain rate on N held-out phantoms (plain and styled"
                 " each), on other packs' phantoms and on real files from pydicom-data")
        eval_packs.choices[pack].set_defaults(func=_evaluate, pack_eval=module.run_eval, pack_name=pack)
    _add_calibrate(actions)
    build = actions.add_parser("build", help="prebuild the GPU engines (TensorRT) of every configured model")
    build.add_argument("--config", type=Path, help="config.toml (default: the embedded defaults)")
    build.add_argument("--data-dir", type=Path, help="override [node] data_dir; engines go to DATA_DIR/engine-cache (default: the config's)")
    build.set_defaults(func=_models_build)
    triton = actions.add_parser("export-triton", help="write a Triton model repository for every pack")
    triton.add_argument("out", type=Path, help="folder of the model repository")
    triton.add_argument("--max-batch", type=int, default=32, help="max_batch_size of each model")
    triton.set_defaults(func=_export_triton)
    add_check_command(actions)


def _add_calibrate(actions: argparse._SubParsersAction) -> None:
    """``models calibrate NAME``: the applicability check's statistics and threshold into the weights' model.json."""
    module = importlib.import_module(APPLICABILITY_COMMANDS)
    calibrate = actions.add_parser(
        "calibrate", help="compute a pack's applicability statistics and threshold into its model.json",
        description="Describe the pack's preprocessed input on phantoms (plain and styled) and write the statistics "
                    "and the threshold (the 99th percentile of out-of-fold validation scores, as a modelled tail "
                    "with a margin for the number of phantoms) into the weights' model.json.")
    module.add_calibrate_arguments(calibrate)
    calibrate.set_defaults(func=module.run_calibrate)


def _evaluate(args: argparse.Namespace) -> int:
    if args.applicability:
        return importlib.import_module(APPLICABILITY_COMMANDS).run_eval(args, args.pack_name)
    return args.pack_eval(args)


def _models_build(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..engines import EngineOptions, available_engines, create_engine
    from ..packs.registry import load_pack

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
        if callable(getattr(pack, "create_engine", None)):  # a model of the generic pack: its own engine
            print(f"{name}: runs on its own engine ({model.pack}); nothing to build")
            continue
        kinds = gpu if model.engine == "auto" else [model.engine] if model.engine in gpu else []
        for kind in kinds:
            options = EngineOptions(cache_dir=data_dir / "engine-cache")
            create_engine(kind, pack.model_path(), options)
            print(f"{name}: {kind} engine ready in {options.cache_dir}")
    return 0


def _export_triton(args: argparse.Namespace) -> int:
    from ..engines.triton_repository import export_repository

    for path in export_repository(args.out, max_batch=args.max_batch):
        print(f"wrote {path}")
    return 0
