"""The options and the end of ``ainode models train|eval PACK`` that every pack's commands share.

Each helper adds one option (or one fixed pair) with the same flag, type, default and help
wherever it is used, so a pack's ``add_train_arguments`` / ``add_eval_arguments`` lists only
what is its own, in the order ``--help`` shows it.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from models.training.log import TrainLog

__all__ = [
    "add_held_out", "add_out", "add_seed", "add_styled_phantoms", "add_styles", "add_weights", "finish_training",
]


def add_out(parser: argparse.ArgumentParser, files: str = "model.onnx, model.pt and model.json") -> None:
    """``--out``: the (required) folder the training writes ``files`` into."""
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {files}")


def add_seed(parser: argparse.ArgumentParser) -> None:
    """``--seed``: the first training seed (default 0)."""
    parser.add_argument("--seed", type=int, default=0, help="first training seed")


def add_styled_phantoms(parser: argparse.ArgumentParser, styles: str) -> None:
    """``--styled-phantoms``: more training phantoms with randomised ``styles`` styles (default 0)."""
    parser.add_argument("--styled-phantoms", type=int, default=0,
                        help=f"more training phantoms with randomised {styles} styles (default 0)")


def add_held_out(parser: argparse.ArgumentParser, *, val: int, test: int) -> None:
    """``--val-phantoms`` and ``--test-phantoms``: the validation and held-out phantoms of a training run."""
    parser.add_argument("--val-phantoms", type=int, default=val, help="validation phantoms")
    parser.add_argument("--test-phantoms", type=int, default=test, help="held-out phantoms evaluated after training")


def add_weights(parser: argparse.ArgumentParser, phantoms: int, what: str = "held-out phantoms") -> None:
    """``--weights`` (default: the demo weights) and ``--phantoms``, the held-out phantoms evaluated."""
    parser.add_argument("--weights", type=Path, help="model.onnx (default: the demo weights)")
    parser.add_argument("--phantoms", type=int, default=phantoms, help=what)


def add_styles(parser: argparse.ArgumentParser, styles: str) -> None:
    """``--styles``: evaluate on phantoms with randomised ``styles`` styles instead of plain ones."""
    parser.add_argument("--styles", action="store_true",
                        help=f"phantoms with randomised {styles} styles (default: plain)")


def finish_training(log: TrainLog, report: Mapping[str, Any], title: str) -> int:
    """Write ``report`` beside the step log, print the summary; the command's exit status (0)."""
    print(log.finish(report, title))
    return 0
