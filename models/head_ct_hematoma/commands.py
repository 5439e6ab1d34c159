"""``ainode models train|eval head-ct-hematoma``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from dataclasses import asdict
from typing import Sequence

from models.training.commands import add_out, add_seed, add_styled_phantoms, add_styles, add_weights, finish_training
from models.training.log import TrainLog

from .findings import SeriesCount

__all__ = ["TRAIN_HELP", "add_eval_arguments", "add_train_arguments", "run_eval", "run_train"]

TRAIN_HELP = "16x16-patch classifier for head CT hematoma; trained on phantoms"
"""One line for ``ainode models train --help``."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--phantoms", type=int, default=160, help="training phantoms (half with hematoma)")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs")
    add_seed(parser)
    add_styled_phantoms(parser, "scanner and patient")
    add_out(parser, "model.onnx and model.json")
    parser.add_argument("--family-b-phantoms", type=int, default=0,
                        help="train on both phantom families: this many family-B phantoms (seeds 0..N-1) beside family "
                             "A's; the threshold is chosen on both families' validation phantoms and every family's "
                             "held-out figures go into model.json (the card's table)")
    parser.add_argument("--only-b", action="store_true", help="with --family-b-phantoms: family B alone (the card's B -> A)")
    parser.add_argument("--styled-seed", type=int, default=None,
                        help="with --family-b-phantoms: first seed of the styled family-A phantoms (default: after the plain)")
    parser.add_argument("--init", type=Path, default=None, help="start from these weights (a model.pt; default: from scratch)")
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    parser.add_argument("--version", default="phantom", help="version written into model.json")
    parser.add_argument("--hard-crops-from", type=Path, default=None,
                        help="with --family-b-phantoms: also train on crops centred where this model.onnx errs on the "
                             "training phantoms (models/head_ct_hematoma/hard_crops.py; default: none)")
    parser.add_argument("--small-bleeds", type=int, default=0,
                        help="with --family-b-phantoms: this many more family-A phantoms, plain and as many styled, "
                             "whose hematoma covers at most 12 patches (the first such even seeds from 240, styled "
                             "from 500,000: models/head_ct_hematoma/small_bleeds.py; default: none)")
    parser.add_argument("--hard-crops-per-phantom", default="6,4",
                        help="with --hard-crops-from: at most FP,WEAK crops per phantom around look-alike patches and "
                             "weak hematoma patches (default 6,4)")


def run_train(args: argparse.Namespace) -> int:
    from .train import train

    if args.family_b_phantoms:
        return _train_families(args)
    log = TrainLog(args.out)
    report = train(args.phantoms, args.out, epochs=args.epochs, seed=args.seed, styled_phantoms=args.styled_phantoms,
                   log=log)
    return finish_training(log, asdict(report), "head-ct-hematoma")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_weights(parser, 40, "held-out phantoms (half with hematoma)")
    add_styles(parser, "scanner and patient")
    parser.add_argument("--family", choices=("a", "a-styled", "b"), default=None,
                        help="phantom family (models/head_ct_hematoma/families.py): the card's per-family figures, "
                             "per hematoma type, seeds 1,000,000.. (80 phantoms for the card's table; default: none, the "
                             "original held-out figures of family A)")
    parser.add_argument("--first-seed", type=int, default=None,
                        help="with --family: the first held-out seed (default 1,000,000; the held-out seeds run to "
                             "1,999,999, the validation seeds start at 2,000,000)")
    parser.add_argument("--min-patches", type=int, default=None,
                        help="series threshold (default: the weights' model.json)")
    parser.add_argument("--series-count", choices=[c.value for c in SeriesCount], default=None,
                        help="what --min-patches is compared with: every candidate patch, or the largest cluster of "
                             "touching ones (default: the weights' model.json)")
    parser.add_argument("--min-probability", type=float, default=None,
                        help="a patch counts when its hematoma probability is at least this (default: the weights' "
                             "model.json; 0: the most probable class alone)")


def run_eval(args: argparse.Namespace) -> int:
    from .pack import HeadCTHematomaPack
    from .train import TEST_SEED_BASE, VAL_SEED_BASE, evaluate

    pack = HeadCTHematomaPack(weights=args.weights)
    if args.family is not None:
        from .cross_family import evaluate_family

        min_patches = args.min_patches if args.min_patches is not None else pack.min_patches
        first = TEST_SEED_BASE if args.first_seed is None else args.first_seed
        if not (TEST_SEED_BASE <= first and first + args.phantoms <= VAL_SEED_BASE):
            raise SystemExit(f"--first-seed must keep the seeds in {TEST_SEED_BASE}..{VAL_SEED_BASE - 1}")
        result = evaluate_family(pack.model_path(), args.family, min_patches, range(first, first + args.phantoms),
                                 min_probability=_min_probability(args, pack), series_count=_series_count(args, pack))
        print(json.dumps(result, indent=2, default=str))
        return 0
    seeds = range(TEST_SEED_BASE, TEST_SEED_BASE + args.phantoms)
    min_patches = args.min_patches if args.min_patches is not None else pack.min_patches
    report = evaluate(pack.model_path(), seeds, min_patches=min_patches, styles=args.styles,
                      min_probability=_min_probability(args, pack), series_count=_series_count(args, pack))
    summary = report.summary() if hasattr(report, "summary") else asdict(report)
    print(json.dumps({**summary, "styles": args.styles}, indent=2, default=str))
    return 0


def _series_count(args: argparse.Namespace, pack: object) -> SeriesCount:
    """``--series-count``, or the weights' ``series_count``."""
    given = getattr(args, "series_count", None)
    return SeriesCount(given) if given is not None else SeriesCount(getattr(pack, "series_count", SeriesCount.TOTAL))


def _per_phantom(text: str) -> tuple[int, int]:
    """``--hard-crops-per-phantom`` ``FP,WEAK`` as two integers."""
    values = [int(v) for v in str(text).split(",")]
    if len(values) != 2 or min(values) < 0:
        raise SystemExit(f"--hard-crops-per-phantom takes FP,WEAK (two whole numbers), got {text!r}")
    return values[0], values[1]


def _min_probability(args: argparse.Namespace, pack: object) -> float:
    """``--min-probability``, or the weights' ``min_probability``."""
    given = getattr(args, "min_probability", None)
    return float(given) if given is not None else float(getattr(pack, "min_probability", 0.0))


def _train_families(args: argparse.Namespace) -> int:
    """``--family-b-phantoms N``: train on family B (and A unless ``--only-b``), calibrate on both."""
    from .cross_family import train_and_calibrate
    from .pack import HeadCTHematomaPack

    plan = {"b": range(0, args.family_b_phantoms)}
    if not args.only_b:
        styled = args.styled_seed if args.styled_seed is not None else args.seed + args.phantoms
        plan = {"a": range(args.seed, args.seed + args.phantoms),
                "a-styled": range(styled, styled + args.styled_phantoms), **plan}
        plan = _with_small_bleeds(plan, args.small_bleeds)
    log = TrainLog(args.out)
    meta = train_and_calibrate(
        args.out, plan, epochs=args.epochs, init=args.init, learning_rate=args.learning_rate,
        val_families=("b",) if args.only_b else ("a", "a-styled", "b"), version=args.version,
        previous_json=HeadCTHematomaPack().model_path().with_suffix(".json"), log=log,
        hard_crops_from=args.hard_crops_from, hard_crops_per_phantom=_per_phantom(args.hard_crops_per_phantom),
    )
    return finish_training(log, {"min_patches": meta["min_patches"], "trained_on": meta["trained_on"],
                                 "metrics": meta["metrics"]}, "head-ct-hematoma")


def _with_small_bleeds(plan: dict[str, range], count: int) -> dict[str, Sequence[int]]:
    """``plan`` with ``count`` small-bleed phantoms more in family A and in styled A."""
    if count <= 0:
        return dict(plan)
    from .families import generate
    from .small_bleeds import small_bleed_seeds

    return {family: [*seeds, *small_bleed_seeds(family, count, generate)] if family in ("a", "a-styled") else seeds
            for family, seeds in plan.items()}
