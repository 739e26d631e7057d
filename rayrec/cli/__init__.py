"""The ``rayrec`` command: train, collect, evaluate, tune, serve, submit, jobs, info.

Usage errors and bad specs print one line on stderr and exit with code 2; never a traceback.
"""

from __future__ import annotations

import sys

from rayrec.cli.commands import COMMANDS
from rayrec.cli.parser import EXIT_USAGE, build_parser
from rayrec.contracts.errors import SpecError
from rayrec.data.schema import LogError

__all__ = ["EXIT_USAGE", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler = getattr(args, "handler", None) or COMMANDS[args.command]
        return handler(args)
    except (SpecError, LogError) as e:
        print(f"rayrec: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rayrec: interrupted", file=sys.stderr)
        return 130
