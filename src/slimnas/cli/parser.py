"""The ``slimnas`` argument parser, whose usage errors are one line like every other mistake."""

from __future__ import annotations

import argparse

from slimnas.cli import demo, latency_table, pipeline, space, train


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line (``slimnas run: error: ...``, exit 2) like
    every other mistake, instead of the usage text and then the error; an option is never
    taken for an abbreviation (``--res`` is not ``--resume``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``slimnas`` command; each sets ``run``, the function to call."""
    import slimnas.cli

    parser = OneLineParser(prog="slimnas", description=slimnas.cli.__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (demo, space, train, pipeline, latency_table):  # the order of --help
        command.register(sub)
    return parser
