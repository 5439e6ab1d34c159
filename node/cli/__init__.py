"""The ``ainode`` command: the parser of every subcommand, and :func:`main`.

Each group of subcommands lives in its own module (``serve``, ``send``, ``packs``,
``bench``); this package assembles them in the order ``ainode --help`` lists them.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from ..packs.registry import MODEL_COMMANDS, PHANTOM_COMMANDS
from .bench import add_bench_command
from .packs import add_models_command, add_phantom_command
from .parser import HelpFormatter, Parser
from .send import add_send_commands
from .serve import add_serve_commands

__all__ = ["HelpFormatter", "MODEL_COMMANDS", "PHANTOM_COMMANDS", "Parser", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ainode`` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``ainode`` command line (every subcommand, and the options of every installed pack)."""
    parser = Parser(prog="ainode", description="AI inference node beside a PACS.")
    sub = parser.add_subparsers(metavar="COMMAND")
    add_serve_commands(sub)
    add_phantom_command(sub)
    add_send_commands(sub)
    add_models_command(sub)
    add_bench_command(sub)
    return parser
