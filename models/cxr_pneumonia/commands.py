"""``ainode models train|eval cxr-pneumonia``.

``--data`` takes the user's labelled radiographs: a CSV (UTF-8, header) with columns
``path`` (DICOM file, relative to the CSV) and ``label`` (1 = pneumonia, 0 = none).
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from models.training.commands import (
    add_held_out, add_out, add_seed, add_styled_phantoms, add_styles, add_weights, finish_training,
)
from models.training.log import TrainLog

__all__ = ["TRAIN_HELP", "add_eval_arguments", "add_train_arguments", "load_labelled", "run_eval", "run_train"]

TRAIN_HELP = "pneumonia classifier with Grad-CAM; phantoms or your labelled radiographs (CSV)"
"""One line for ``ainode models train --help``."""


def load_labelled(csv_path: Path):
    """``(images (N, 256, 256) float16, labels (N,) bool, truth)`` from a labelled CSV."""
    import pydicom

    from .preprocess import MODEL_SIZE
    from models.radiograph import to_model

    images, labels, truth = [], [], []
    with Path(csv_path).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            ds = pydicom.dcmread(Path(csv_path).parent / row["path"].strip())
            images.append(to_model(ds, MODEL_SIZE)[0].astype(np.float16))
            labels.append(row["label"].strip() in ("1", "true", "True", "yes"))
            truth.append((None, None, ds))
    return np.stack(images), np.asarray(labels, dtype=bool), truth


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser)
    parser.add_argument("--phantoms", type=int, default=320, help="training phantoms (even seed: pneumonia)")
    parser.add_argument("--data", type=Path, help="train on your labelled radiographs instead (CSV path,label; default: phantoms)")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs")
    add_seed(parser)
    add_styled_phantoms(parser, "detector, processing and patient")
    add_held_out(parser, val=60, test=100)


def run_train(args: argparse.Namespace) -> int:
    from .train import train

    data = None
    if args.data is not None:
        images, labels, _ = load_labelled(args.data)
        data = (images, labels)
    log = TrainLog(args.out)
    meta = train(
        args.phantoms, args.out, epochs=args.epochs, seed=args.seed, val_phantoms=args.val_phantoms,
        test_phantoms=args.test_phantoms, data=data, styled_phantoms=0 if data else args.styled_phantoms, log=log,
    )
    return finish_training(log, meta, "cxr-pneumonia")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_weights(parser, 100)
    parser.add_argument("--data", type=Path, help="evaluate on your labelled radiographs instead (CSV path,label; default: phantoms)")
    add_styles(parser, "detector, processing and patient")


def run_eval(args: argparse.Namespace) -> int:
    from .pack import CXRPneumoniaPack
    from .train import TEST_SEED_BASE, evaluate

    pack = CXRPneumoniaPack(weights=args.weights)
    seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + args.phantoms))
    data = load_labelled(args.data) if args.data is not None else None
    if data is not None:
        seeds = [0, len(data[1]) - 1]
    report = evaluate(pack.model_path(), seeds, head_weights=pack.head_weights, threshold=pack.threshold, data=data,
                      styles=args.styles)
    print(json.dumps({**asdict(report), "styles": args.styles}, indent=2))
    return 0
