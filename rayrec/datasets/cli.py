"""``rayrec data fetch NAME``: download a public dataset into the cache (``$RAYREC_DATA``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rayrec.datasets.registry import FETCHERS, DatasetError, data_root, fetch

__all__ = ["add_parser", "run"]

EXIT_USAGE = 2


def add_parser(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``data`` to the ``rayrec`` subcommands (``fetch``'s handler is ``run``); returns the
    ``data`` actions, to which higher layers add theirs (``from-served``)."""
    parser = subparsers.add_parser(
        "data", help="fetch public datasets (ML-100k); convert served logs for --data"
    )
    actions = parser.add_subparsers(dest="data_action", required=True)
    f = actions.add_parser("fetch", help="download a dataset and check its checksums")
    f.add_argument("name", choices=sorted(FETCHERS), help="dataset")
    f.add_argument(
        "--root", type=Path, help="cache folder (default $RAYREC_DATA or ~/.cache/rayrec)"
    )
    f.add_argument("--force", action="store_true", help="fetch again even if the cache is valid")
    f.set_defaults(handler=run)
    return actions


def run(args: argparse.Namespace) -> int:
    """Fetch ``args.name``; one line on stderr and exit code 2 on failure."""
    try:
        folder = fetch(args.name, args.root or data_root(), force=args.force)
    except DatasetError as e:
        print(f"rayrec: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.name}: {folder}")
    return 0
