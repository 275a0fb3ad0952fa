"""The ``--set SECTION.KEY=VALUE`` option of every command that reads a TOML config."""

from __future__ import annotations

import argparse


def add_set_option(command: argparse.ArgumentParser, example: str) -> None:
    """Add the repeatable ``--set`` override to ``command``; ``example`` is shown in its help."""
    command.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override a config value, e.g. --set {example}",
    )
