"""``rayrec data fetch obd``: fetch, check and cache a public dataset.

``add_parser`` registers the command on the ``rayrec`` parser; ``run`` executes it and returns the
exit code (2 with one line on stderr when the fetch fails).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rayrec.datasets.obd import DataError, fetch_obd, verify_obd

__all__ = ["DATASETS", "add_parser", "run"]

DATASETS = ("obd",)
EXIT_USAGE = 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``data`` to the ``rayrec`` subcommands."""
    p = subparsers.add_parser("data", help="fetch or check public datasets (cache: $RAYREC_DATA)")
    p.add_argument("action", choices=("fetch", "verify"))
    p.add_argument("dataset", choices=DATASETS, help="obd: the Open Bandit Dataset sample")
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``rayrec data``; returns the exit code."""
    try:
        folder = fetch_obd() if args.action == "fetch" else verify_obd()
    except DataError as e:
        sys.stderr.write(f"rayrec: error: {e}\n")
        return EXIT_USAGE
    sys.stdout.write(f"obd: {folder} (sha256 checked)\n")
    return 0
