"""``ainode models train|eval brain-mr``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.training.commands import (
    add_out, add_seed, add_styled_phantoms, add_styles, add_weights, finish_training,
)
from models.training.log import TrainLog

__all__ = ["TRAIN_HELP", "add_eval_arguments", "add_train_arguments", "run_eval", "run_train"]

TRAIN_HELP = "2D U-Net (or FRRN skips) for brain MR structures and tumour; phantoms or your DICOM + labels"
"""One line for ``ainode models train --help``."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser)
    parser.add_argument("--data", type=Path, help="your own cases (DICOM + labels.nii[.gz] or DICOM SEG); "
                        "default: phantoms")
    parser.add_argument("--phantoms", type=int, default=40, help="training phantoms (without --data)")
    add_styled_phantoms(parser, "scanner and patient")
    add_seed(parser)
    parser.add_argument("--contrast", choices=("T1", "T2"), default="T1", help="phantom contrast")
    parser.add_argument("--variant", choices=("unet", "frru"), default="frru", help="skip connections")
    parser.add_argument("--weighting", choices=("frequency", "probability", "distance"), default="probability",
                        help="loss weighting")
    parser.add_argument("--label-every", type=int, default=1,
                        help="keep only every k-th slice's labels (the others are masked out of the loss)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per training step")
    parser.add_argument("--context", type=int, default=0,
                        help="2.5D input: neighbouring slices on either side fed as extra channels (0: 2D)")
    parser.add_argument("--tumor-boundary-weight", type=float, default=0.0,
                        help="extra cross-entropy weight W on the tumour boundary: x (1 + W exp(-d^2/2)), d in pixels")
    parser.add_argument("--tumor-slice-fraction", type=float, default=0.0,
                        help="draw this fraction of the training samples from slices with a tumour")
    parser.add_argument("--test-phantoms", type=int, default=8, help="held-out phantoms evaluated after training")
    parser.add_argument("--compare", action="store_true",
                        help="instead: train both skip variants x three weightings and the every-4th-slice "
                             "run on phantoms, write OUT/comparison.json")


def run_train(args: argparse.Namespace) -> int:
    from .train import FitOptions, compare, train

    log = TrainLog(args.out)
    if args.compare:
        summary = compare(args.out, phantoms=args.phantoms, test_phantoms=args.test_phantoms, steps=args.steps,
                          seed=args.seed, contrast=args.contrast, log=log)
        return finish_training(log, summary, "brain-mr comparison")
    cases = None
    if args.data:
        from .data import load_cases

        cases = load_cases(args.data)
        log(f"loaded {len(cases)} cases from {args.data}")
    fit = FitOptions(variant=args.variant, weighting=args.weighting, steps=args.steps, batch_size=args.batch_size,
                     context=args.context, tumor_boundary_weight=args.tumor_boundary_weight,
                     tumor_slice_fraction=args.tumor_slice_fraction)
    meta = train(args.out, cases=cases, phantoms=args.phantoms, seed=args.seed, contrast=args.contrast,
                 label_every=args.label_every, fit=fit,
                 test_phantoms=0 if cases else args.test_phantoms, styled_phantoms=0 if cases else args.styled_phantoms,
                 log=log)
    return finish_training(log, meta, "brain-mr")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_weights(parser, 8, "held-out phantoms (seeds from 1,000,000)")
    parser.add_argument("--contrast", choices=("T1", "T2"), default="T1", help="phantom contrast")
    parser.add_argument("--data", type=Path, help="evaluate on your own labelled cases instead (default: phantoms)")
    add_styles(parser, "scanner and patient")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON only")


def run_eval(args: argparse.Namespace) -> int:
    from .pack import BrainMRPack
    from .train import TEST_SEED_BASE, evaluate, format_report

    pack = BrainMRPack(weights=args.weights)
    cases = None
    if args.data:
        from .data import load_cases

        cases = load_cases(args.data)
    seeds = range(TEST_SEED_BASE, TEST_SEED_BASE + args.phantoms) if cases is None else []
    report = evaluate(pack.model_path(), seeds, contrast=args.contrast, min_tumor_ml=pack.min_tumor_ml,
                      cases=cases, styles=args.styles)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        where = (f"held-out{' styled' if args.styles else ''} phantoms, seeds {seeds[0]}-{seeds[-1]}"
                 if cases is None else f"{len(cases)} cases")
        print(f"brain-mr {pack.algorithm.version} ({pack.model_path()}) on {where}")
        print(format_report(report))
    return 0
