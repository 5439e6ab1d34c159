"""Every option of every ``ainode`` subcommand has help text, and its help shows its default.

The parser is walked (every subcommand, every installed pack and phantom kind), and each
subcommand's ``--help`` is rendered as a user would see it.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from typing import Iterator

from node.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("ainode",)) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction))]


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_every_argument_has_help_and_every_option_shows_its_default():
    problems = []
    commands = list(_commands(build_parser()))
    assert len(commands) > 20, "the walk found the subcommands, the packs and the phantom kinds"
    for path, parser in commands:
        rendered = re.sub(r"\s+", "", parser.format_help())  # wrapping may break a default at a hyphen
        for action in _arguments(parser):
            name = "/".join(action.option_strings) or action.dest
            where = f"{' '.join(path)} {name}"
            if not action.help or action.help == argparse.SUPPRESS:
                problems.append(f"{where}: no help text")
                continue
            if not action.option_strings or action.required:
                continue  # a positional argument or a required option has no default to show
            shown = parser._get_formatter()._get_help_string(action) or ""  # what --help prints for it
            if "default" not in shown.lower():
                problems.append(f"{where}: its help does not show the default ({action.help!r})")
            elif action.default is not None and "%(default)" in shown:
                if f"(default:{action.default})".replace(" ", "") not in rendered:
                    problems.append(f"{where}: default {action.default!r} not in the rendered help")
    assert not problems, "\n".join(problems)


def test_rendered_help_of_a_subcommand_shows_defaults():
    done = subprocess.run([sys.executable, "-m", "node.cli", "send", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    text = _flat(done.stdout)
    assert "the receiver's DICOM port (default: 11112)" in text
    assert "called AE title (default: AINODE)" in text
    assert "(default: shown on a terminal)" in text and "(default: False)" not in text

    done = subprocess.run([sys.executable, "-m", "node.cli", "phantom", "head-ct", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = _flat(done.stdout)
    assert "axial slices (default: 24)" in text
    assert text.count("draw a hematoma (default: True)") == 1, "the default is shown once"
