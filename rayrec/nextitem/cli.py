"""``rayrec nextitem``: train a next-item model on a public dataset and print its metrics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rayrec.nextitem.names import MODELS, metric_keys

__all__ = ["DATASETS", "add_parser", "run"]

EXIT_USAGE = 2
DATASETS = ("ml-100k",)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``nextitem`` to the ``rayrec`` subcommands; the handler is ``run``."""
    p = subparsers.add_parser(
        "nextitem", help="next-item evaluation on real data (RecBole's protocol)"
    )
    p.add_argument("--dataset", choices=DATASETS, default="ml-100k", help="dataset (fetched first)")
    p.add_argument("--model", choices=MODELS, required=True, help="model to train and evaluate")
    p.add_argument("--epochs", type=_positive_int, help="most epochs (default 300, early stopping)")
    p.add_argument("--seed", type=int, default=2020, help="seed (default 2020, RecBole's)")
    p.add_argument("--json", action="store_true", help='print {"valid": {...}, "test": {...}}')
    p.add_argument("--root", type=Path, help="data cache (default $RAYREC_DATA or ~/.cache/rayrec)")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Load the dataset, train, print metrics; a missing or corrupt file is one line, exit 2."""
    from rayrec.datasets import DatasetError, load_ml100k
    from rayrec.nextitem.protocol import build_sequences
    from rayrec.nextitem.train import TrainConfig, train_and_evaluate

    try:
        data = build_sequences(load_ml100k(args.root).inter)
    except DatasetError as e:
        print(f"rayrec: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    options = {"model": args.model, "seed": args.seed}
    if args.epochs is not None:
        options["epochs"] = args.epochs
    result = train_and_evaluate(data, TrainConfig(**options))
    if args.json:
        print(json.dumps({"valid": result.valid, "test": result.test}))
        return 0
    keys = metric_keys()
    print(
        f"{args.dataset} {args.model}: best epoch {result.best_epoch} of {result.epochs_run} "
        f"({result.stopped_by}), {result.train_seconds:.1f} s"
    )
    print(f"{'split':6} " + " ".join(f"{k:>8}" for k in keys))
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        print(f"{split:6} " + " ".join(f"{metrics[k]:8.4f}" for k in keys))
    return 0
