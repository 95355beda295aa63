"""The ``rmt`` command line: ``rmt <command> ...``; each failure is one ``rmt: error: ...`` line, non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from rmt.commands import COMMAND_MODULES
from rmt.core.errors import RmtError, ServerStartError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line naming ``--help``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``rmt: error: <message> (see <prog> --help)`` and exit 2."""
        self.exit(2, f"rmt: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command of :data:`rmt.commands.COMMAND_MODULES`."""
    parser = OneLineParser(prog="rmt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rmt`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RmtError as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        print(f"rmt: error: {lines[0]}", file=sys.stderr)
        if isinstance(exc, ServerStartError) and exc.log_tail:
            print("rmt: last lines of the tritonserver log:", file=sys.stderr)
            for line in exc.log_tail.splitlines()[-20:]:
                print(f"  | {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
