"""``ainode models train|eval cxr-nodule``."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from models.train_log import TrainLog

__all__ = ["TRAIN_HELP", "add_eval_arguments", "add_train_arguments", "run_eval", "run_train"]

TRAIN_HELP = "U-Net nodule segmentation on radiographs; phantoms with synthetic nodules or your CSV"
"""One line for ``ainode models train --help``."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for model.onnx, model.pt and model.json")
    parser.add_argument("--phantoms", type=int, default=280, help="training phantoms (seed %% 4 nodules each)")
    parser.add_argument("--data", type=Path, help="train on your labelled radiographs instead (CSV, see models/cxr_nodule/data.py;"
                        " default: phantoms)")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs")
    parser.add_argument("--seed", type=int, default=0, help="first training seed")
    parser.add_argument("--nac-weight", type=float, default=0.0, help="weight of the normal/abnormal contrastive term (default 0: off; see the card)")
    parser.add_argument("--compare-without-nac", action="store_true", help="also train without the NAC term and record both FROCs")
    parser.add_argument("--val-phantoms", type=int, default=60, help="validation phantoms")
    parser.add_argument("--test-phantoms", type=int, default=100, help="held-out phantoms evaluated after training")


def run_train(args: argparse.Namespace) -> int:
    from .train import train

    samples = None
    if args.data is not None:
        from .data import load_labelled

        samples = load_labelled(args.data)
    log = TrainLog(args.out)
    meta = train(
        args.phantoms if samples is None else len(samples), args.out, epochs=args.epochs, seed=args.seed,
        nac_weight=args.nac_weight, val_phantoms=args.val_phantoms, test_phantoms=args.test_phantoms,
        compare_without_nac=args.compare_without_nac, samples=samples,
        user_data=samples is not None, log=log,
    )
    print(log.finish(meta, "cxr-nodule"))
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, help="model.onnx (default: the demo weights)")
    parser.add_argument("--phantoms", type=int, default=100, help="held-out phantoms")
    parser.add_argument("--data", type=Path, help="evaluate on your labelled radiographs instead (CSV; default: phantoms)")
    parser.add_argument("--froc-png", type=Path, default=Path("froc-cxr-nodule.png"), help="where to draw the FROC curve")


def run_eval(args: argparse.Namespace) -> int:
    from .pack import CXRNodulePack
    from .train import TEST_SEED_BASE, evaluate

    pack = CXRNodulePack(weights=args.weights)
    if args.data is not None:
        from .data import load_labelled

        report, _ = evaluate(pack.model_path(), [], samples=load_labelled(args.data), froc_png=args.froc_png)
    else:
        seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + args.phantoms))
        report, _ = evaluate(pack.model_path(), seeds, froc_png=args.froc_png)
    print(json.dumps(asdict(report), indent=2))
    print(f"FROC curve written to {args.froc_png}")
    return 0
