"""``ainode models train|eval head-ct-hematoma``."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from models.training.commands import add_out, add_seed, add_styled_phantoms, add_styles, add_weights, finish_training
from models.training.log import TrainLog

__all__ = ["TRAIN_HELP", "add_eval_arguments", "add_train_arguments", "run_eval", "run_train"]

TRAIN_HELP = "16x16-patch classifier for head CT hematoma; trained on phantoms"
"""One line for ``ainode models train --help``."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--phantoms", type=int, default=160, help="training phantoms (half with hematoma)")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs")
    add_seed(parser)
    add_styled_phantoms(parser, "scanner and patient")
    add_out(parser, "model.onnx and model.json")


def run_train(args: argparse.Namespace) -> int:
    from .train import train

    log = TrainLog(args.out)
    report = train(args.phantoms, args.out, epochs=args.epochs, seed=args.seed, styled_phantoms=args.styled_phantoms,
                   log=log)
    return finish_training(log, asdict(report), "head-ct-hematoma")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_weights(parser, 40, "held-out phantoms (half with hematoma)")
    add_styles(parser, "scanner and patient")


def run_eval(args: argparse.Namespace) -> int:
    from .pack import HeadCTHematomaPack
    from .train import TEST_SEED_BASE, evaluate

    pack = HeadCTHematomaPack(weights=args.weights)
    seeds = range(TEST_SEED_BASE, TEST_SEED_BASE + args.phantoms)
    report = evaluate(pack.model_path(), seeds, min_patches=pack.min_patches, styles=args.styles)
    summary = report.summary() if hasattr(report, "summary") else asdict(report)
    print(json.dumps({**summary, "styles": args.styles}, indent=2, default=str))
    return 0
