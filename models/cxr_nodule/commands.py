"""``ainode models train|eval cxr-nodule``."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from models.training.commands import add_held_out, add_out, add_seed, add_styles, add_weights, finish_training
from models.training.log import TrainLog

__all__ = ["TRAIN_HELP", "add_eval_arguments", "add_train_arguments", "run_eval", "run_train"]

TRAIN_HELP = "U-Net nodule segmentation on radiographs; phantoms with synthetic nodules or your CSV"
"""One line for ``ainode models train --help``."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser)
    parser.add_argument("--phantoms", type=int, default=800, help="training phantoms (seed %% 4 nodules each)")
    parser.add_argument("--data", type=Path, help="train on your labelled radiographs instead (CSV, see models/cxr_nodule/data.py;"
                        " default: phantoms)")
    parser.add_argument("--epochs", type=int, default=36, help="training epochs (100 steps each with the default 800 phantoms)")
    add_seed(parser)
    parser.add_argument("--nac-weight", type=float, default=0.0, help="weight of the normal/abnormal contrastive term (default 0: off; see the card)")
    parser.add_argument("--compare-without-nac", action="store_true", help="also train without the NAC term and record both FROCs")
    parser.add_argument("--nac-warmup", type=int, default=0, help="epochs trained without the NAC term before it is switched on")
    parser.add_argument("--size", type=int, default=512, choices=(256, 512), help="model input size (written to model.json; the pack follows it)")
    parser.add_argument("--crop", type=int, help="edge of the training crops in model pixels (default 96 at size 256, 128 at 512)")
    parser.add_argument("--nodule-crops", type=float, default=0.6, help="share of training crops placed around a nodule")
    parser.add_argument("--small-boost", type=float, default=4.0, help="up-weight small nodules' pixels in the loss, up to this factor (1: off)")
    parser.add_argument("--channels", default="8,16,32,48", help="U-Net widths per level")
    parser.add_argument("--cache", type=Path, help="folder caching generated phantoms between runs (default: no cache)")
    parser.add_argument("--hard-negatives", type=float, default=0.0,
                        help="share of crops centred on false positives the network makes on training images (0: off)")
    parser.add_argument("--implants", type=float, default=0.0,
                        help="share of crops that get nodules of other training radiographs embedded in their lungs (0: off)")
    parser.add_argument("--fine-phantoms", type=int, default=0,
                        help="more training phantoms made at 1024 and 2048 pixels and resampled (finer detectors)")
    parser.add_argument("--styled-phantoms", type=int, default=0,
                        help="more training phantoms made with randomised styles (dose, processing, patient; default 0)")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak of the one-cycle learning rate")
    parser.add_argument("--init", type=Path, help="model.pt to start from (fine-tuning; same --channels; default: random weights)")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads for training")
    add_held_out(parser, val=60, test=100)


def run_train(args: argparse.Namespace) -> int:
    from .train import train

    samples = None
    if args.data is not None:
        from .data import load_labelled

        samples = load_labelled(args.data, size=args.size)
    log = TrainLog(args.out)
    meta = train(
        args.phantoms if samples is None else len(samples), args.out, epochs=args.epochs, seed=args.seed,
        nac_weight=args.nac_weight, val_phantoms=args.val_phantoms, test_phantoms=args.test_phantoms,
        compare_without_nac=args.compare_without_nac, samples=samples,
        user_data=samples is not None, size=args.size, crop=args.crop, nodule_crops=args.nodule_crops,
        nac_warmup=args.nac_warmup, small_boost=args.small_boost,
        channels=tuple(int(c) for c in args.channels.split(",")), cache_dir=args.cache, threads=args.threads,
        hard_negative_crops=args.hard_negatives, implant_crops=args.implants,
        fine_phantoms=args.fine_phantoms, styled_phantoms=args.styled_phantoms, learning_rate=args.learning_rate, init=args.init, log=log,
    )
    return finish_training(log, meta, "cxr-nodule")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_weights(parser, 100)
    parser.add_argument("--data", type=Path, help="evaluate on your labelled radiographs instead (CSV; default: phantoms)")
    parser.add_argument("--cache", type=Path, help="folder caching generated phantoms between runs (default: no cache)")
    parser.add_argument("--detector-size", type=int, default=512,
                        help="phantoms made at this many pixels (1024, 2048: finer detectors, resampled like real radiographs)")
    add_styles(parser, "detector, processing and patient")
    parser.add_argument("--froc-png", type=Path, default=Path("froc-cxr-nodule.png"), help="where to draw the FROC curve")


def run_eval(args: argparse.Namespace) -> int:
    from .pack import CXRNodulePack
    from .train import TEST_SEED_BASE, evaluate, make_samples

    pack = CXRNodulePack(weights=args.weights)
    if args.data is not None:
        from .data import load_labelled

        report, _ = evaluate(pack.model_path(), [], samples=load_labelled(args.data, size=pack.input_size),
                             froc_png=args.froc_png)
    else:
        seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + args.phantoms))
        samples = make_samples(seeds, size=pack.input_size, cache_dir=args.cache, phantom_size=args.detector_size,
                               styles=args.styles)
        report, _ = evaluate(pack.model_path(), seeds, samples=samples, froc_png=args.froc_png,
                             score_threshold=pack.score_threshold, detector_size=args.detector_size,
                             styles=args.styles)
    print(json.dumps(asdict(report), indent=2))
    print(f"FROC curve written to {args.froc_png}")
    return 0
