"""``ainode models train|eval chest-ct-landmarks``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.training.commands import add_seed, add_weights, finish_training
from models.training.log import TrainLog

__all__ = [
    "TRAIN_HELP", "add_eval_arguments", "add_train_arguments", "format_cross_family", "format_report",
    "run_eval", "run_train", "trained_family",
]

TRAIN_HELP = "three slice classifiers for lung apex, carina and diaphragm; phantoms or your labelled CT"
"""One line for ``ainode models train --help``."""

_ARCHS = ("small", "efficientnet_b4", "densenet169", "resnet50", "inception_v3")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ainode models train chest-ct-landmarks``."""
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for model.onnx, model.pt, model.json, checkpoint.pt and card.md")
    parser.add_argument("--phantoms", type=int, default=0, help="training phantoms (seeds --seed ...)")
    add_seed(parser)
    parser.add_argument("--dicom", type=Path, help="folder of labelled DICOM series (default: phantoms only)")
    parser.add_argument("--labels", type=Path,
                        help="CSV: series_instance_uid,apex,carina,diaphragm (SOP Instance UID or Instance Number);"
                             " needed with --dicom (default: none)")
    parser.add_argument("--arch", choices=_ARCHS, default="small",
                        help="classifier architecture (timm ones need torch==2.14.1 torchvision==0.29.1 timm)")
    parser.add_argument("--pretrained", type=Path, help="state dict to start each classifier from (default: random initialisation)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch (each trains all three classifiers)")
    parser.add_argument("--batch-size", type=int, default=32, help="slices per batch")
    parser.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    parser.add_argument("--fp-weight", type=float, default=2.0, help="loss weight of negatives (penalises false positives)")
    parser.add_argument("--slice-thickness", type=float, default=4.0, help="phantom slice thickness (mm)")
    parser.add_argument("--test-phantoms", type=int, default=50, help="held-out phantoms evaluated after training")
    parser.add_argument("--cache", type=Path, help="folder caching preprocessed phantoms between runs (default: no cache)")
    parser.add_argument("--family", choices=("a", "b"), default="a",
                        help="phantom family to train on: a = models.phantoms.chest_ct, b = models.phantoms.chest_ct_b")
    parser.add_argument("--family-b-phantoms", type=int, default=0,
                        help="with --family a: also train on this many family-B phantoms (seeds 0..N-1)")
    parser.add_argument("--styles", type=float, default=0.0,
                        help="share of the training phantoms drawn with randomised styles (family a; default 0)")
    parser.add_argument("--augment", choices=("basic", "style", "texture"), default="basic",
                        help="augmentation: basic, style (also blur/sharpen, gamma, correlated noise, zoom 0.6-1.2)"
                             " or texture (style's blur/sharpen, gamma and noise with zoom 0.85-1.15)")
    parser.add_argument("--crop", choices=("body", "lungs"), default="body",
                        help="preprocessing crop: body (default) or lungs (the air inside the body; stored in"
                             " model.json so the node crops alike)")
    parser.add_argument("--views", default="",
                        help="views that differ from the architecture's defaults, e.g. carina=airway"
                             " (full, downsample, centre, airway; default: none)")
    parser.add_argument("--carina-window", default="",
                        help="LO,HI: pick the carina only between LO and HI of the way from the apex pick (0)"
                             " down to the diaphragm pick (1), e.g. 0.15,0.65 (default: anywhere)")
    parser.add_argument("--diaphragm-pick", choices=("argmax", "lowest"), default="argmax",
                        help="diaphragm slice: the highest score (default) or the most inferior slice scoring"
                             " at least 0.5 (stored in model.json)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--repeats", default="1,2,1",
                        help="batches per step for apex,carina,diaphragm (default 1,2,1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    parser.add_argument("--version", help="model version (default: a timestamp)")


def run_train(args: argparse.Namespace) -> int:
    """Train, export, evaluate and write the card."""
    from .findings import LANDMARKS
    from .train import train

    log = TrainLog(args.out)
    try:
        counts = [int(v) for v in str(args.repeats).split(",")]
        if len(counts) != len(LANDMARKS):
            raise ValueError(f"--repeats needs {len(LANDMARKS)} comma-separated integers")
        pairs = [item.split("=", 1) for item in str(args.views).split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("--views takes LANDMARK=VIEW pairs separated by commas, e.g. carina=airway")
        views = {name.strip(): view.strip() for name, view in pairs}
        window = [float(v) for v in str(args.carina_window).split(",")] if args.carina_window else None
        report = train(
            args.out, phantoms=args.phantoms, seed=args.seed, dicom_dir=args.dicom, labels=args.labels,
            arch=args.arch, pretrained=args.pretrained, epochs=args.epochs, steps_per_epoch=args.steps,
            batch_size=args.batch_size, learning_rate=args.lr, fp_weight=args.fp_weight,
            repeats=dict(zip(LANDMARKS, counts)),
            slice_thickness=args.slice_thickness, test_phantoms=args.test_phantoms, cache_dir=args.cache,
            family=args.family, family_b_phantoms=args.family_b_phantoms, styles=args.styles, augment=args.augment, crop=args.crop, views=views,
            carina_window=window, diaphragm_pick=args.diaphragm_pick,
            resume=args.resume,
            threads=args.threads, version=args.version, log=log,
        )
    except (RuntimeError, ValueError) as exc:
        print(f"ainode models train chest-ct-landmarks: {exc}", file=sys.stderr)
        return 2
    return finish_training(log, {
        "model": str(report.model_path),
        "series": report.series,
        "training_seconds": round(report.training_seconds, 1),
        "test": report.test.summary() if report.test else None,
    }, "chest-ct-landmarks")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ainode models eval chest-ct-landmarks``."""
    add_weights(parser, 50, "held-out phantoms (seeds from 1,000,000)")
    parser.add_argument("--first-seed", type=int, default=None, help="first held-out seed (default 1,000,000)")
    parser.add_argument("--slice-thickness", type=float, default=None,
                        help="phantom slice thickness (mm; default 4, or the airway style's 5 with --airway-style)")
    parser.add_argument("--family", choices=("a", "b", "both"), default="both",
                        help="phantom family: a, b, or both (the cross-family table; default)")
    parser.add_argument("--airway-style", action="store_true",
                        help="phantoms on the airway style axis (both families): airway wall thickness, bronchus"
                             " angles, 5 mm slices with their partial volume, respiratory motion (default: off)")
    parser.add_argument("--cache", type=Path, help="folder caching preprocessed phantoms between runs (default: no cache)")
    parser.add_argument("--dicom", type=Path, help="evaluate labelled DICOM series instead of phantoms (default: phantoms)")
    parser.add_argument("--labels", type=Path, help="label CSV for --dicom (default: none)")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON only")


def run_eval(args: argparse.Namespace) -> int:
    """Report per landmark the 1-Up-Down precision and the pick-offset histogram.

    On phantoms of both families (the default) it prints one table per family, marked with
    the family the weights were trained on, then a cross-family summary.
    """
    from .pack import ChestCTLandmarksPack
    from .train import FAMILIES, TEST_SEED_BASE, dicom_dataset, evaluate, phantom_dataset

    pack = ChestCTLandmarksPack(weights=args.weights)
    if (args.dicom is None) != (args.labels is None):
        print("ainode models eval chest-ct-landmarks: --dicom and --labels go together", file=sys.stderr)
        return 2
    if args.dicom is not None:
        data = dicom_dataset(args.dicom, args.labels, crop=pack.crop, airway=pack.airway)
        report = evaluate(pack.model_path(), data, source=str(args.dicom), carina_window=pack.carina_window,
                          diaphragm_pick=pack.diaphragm_pick)
        if args.json:
            print(json.dumps(report.summary(), indent=2))
        else:
            print(format_report(report))
        return 0
    first = TEST_SEED_BASE if args.first_seed is None else args.first_seed
    if first < TEST_SEED_BASE:
        print(f"held-out seeds start at {TEST_SEED_BASE}; lower seeds are training seeds", file=sys.stderr)
        return 2
    seeds = range(first, first + args.phantoms)
    families = FAMILIES if args.family == "both" else (args.family,)
    trained = trained_family(pack.model_path())
    reports = {}
    thickness = args.slice_thickness if args.slice_thickness is not None else (None if args.airway_style else 4.0)
    style = ", airway style" if args.airway_style else ""
    for fam in families:
        data = phantom_dataset(seeds, slice_thickness=thickness, cache_dir=args.cache,
                               log=None if args.json else print, family=fam, crop=pack.crop, airway=pack.airway,
                               airway_style=args.airway_style)
        reports[fam] = evaluate(pack.model_path(), data, source=f"held-out phantoms, family {fam}{style}",
                                seed_range=[seeds[0], seeds[-1]], carina_window=pack.carina_window,
                                diaphragm_pick=pack.diaphragm_pick)
    if args.json:
        if len(families) == 1:
            print(json.dumps(reports[families[0]].summary(), indent=2))
        else:
            print(json.dumps({"trained_on_family": trained, "families": {f: r.summary() for f, r in reports.items()}},
                             indent=2))
        return 0
    for fam, report in reports.items():
        kind = "same family" if fam in trained.split("+") else "other family"
        print(f"family {fam} ({kind}; weights trained on family {trained})")
        print(format_report(report))
        print()
    if len(reports) > 1:
        print(format_cross_family(reports, trained))
    return 0


def trained_family(model_path: Path) -> str:
    """The phantom family the weights were trained on (``model.json``; ``a`` when not recorded)."""
    meta_path = Path(model_path).with_name("model.json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "a"
    return str((meta.get("trained_on") or {}).get("family", "a"))


def format_report(report) -> str:
    """One evaluation as a text table: 1-Up-Down, exact and the offset histogram per landmark."""
    from .metrics import HISTOGRAM_BINS

    seeds = f", seeds {report.seed_range[0]:,}..{report.seed_range[-1]:,}" if report.seed_range else ""
    lines = [f"{report.n_series} series ({report.source}{seeds}) in {report.seconds}s",
             f"{'landmark':<10} {'1-Up-Down':>9} {'exact':>6}  " + " ".join(f"{b:>4}" for b in HISTOGRAM_BINS)]
    for name, m in report.per_landmark.items():
        h = m["histogram"]
        lines.append(f"{name:<10} {m['one_up_down_precision']:>9.3f} {m['exact']:>6.3f}  "
                     + " ".join(f"{h[b]:>4}" for b in HISTOGRAM_BINS))
    return "\n".join(lines)


def format_cross_family(reports, trained: str) -> str:
    """The cross-family table: 1-Up-Down per landmark (rows) and family (columns)."""
    from .findings import LANDMARKS

    fams = list(reports)
    head = f"{'1-Up-Down':<10} " + " ".join(
        f"{('family ' + f + (' (trained)' if f == trained else ' (other)')):>20}" for f in fams)
    lines = ["cross-family table", head]
    for name in LANDMARKS:
        lines.append(f"{name:<10} " + " ".join(
            f"{reports[f].per_landmark[name]['one_up_down_precision']:>20.3f}" for f in fams))
    return "\n".join(lines)
