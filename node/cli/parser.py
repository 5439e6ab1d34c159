"""The argument parser every ``ainode`` command uses: defaults shown in each option's help."""
from __future__ import annotations

import argparse
from typing import Any

__all__ = ["HelpFormatter", "Parser"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the help already names it.

    An option whose default is ``None`` (not set) says in its own help what happens
    without it ("(default: the config's)"); ``tests/test_cli_help.py`` holds every option to this.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default" in text.lower():
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser (and, through ``add_subparsers``, every subcommand's) using :class:`HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
