"""Next-item benchmark on MovieLens-100k under RecBole 1.2.1's sequential protocol.

Trains each model (one CPU thread each), keeps the results in docs/nextitem_ml100k.json and writes
the table into docs/data.md between its markers. Models can run in separate processes
(``--models sasrec``) and the table is rebuilt from every result saved so far.

    .venv/bin/python benchmarks/nextitem_ml100k.py                 # all four, one after another
    .venv/bin/python benchmarks/nextitem_ml100k.py --models gru4rec --seed 2020
    .venv/bin/python benchmarks/nextitem_ml100k.py --render        # only rebuild the table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from rayrec.contracts.files import replace_marked
from rayrec.datasets import load_ml100k
from rayrec.nextitem.names import MODELS
from rayrec.nextitem.protocol import build_sequences
from rayrec.nextitem.train import TrainConfig, train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "nextitem_ml100k.json"
DOC = ROOT / "docs" / "data.md"
STOPS = {"early-stopping": "early stop", "time-budget": "time budget", "epochs": "epoch cap"}
LABELS = {"pop": "most-popular", "gru4rec": "GRU4Rec", "sasrec": "SASRec", "sqn": "SQN (GRU4Rec)"}


def _load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _table(results: dict) -> str:
    head = (
        "| model | test HR@10 | test NDCG@10 | test MRR@10 | test HR@20 | test NDCG@20 "
        "| valid NDCG@10 | best epoch / run | training wall s | training CPU s |"
    )
    rows = [head, "|" + " --- |" * 10]
    for name in MODELS:
        if name not in results:
            continue
        r = results[name]
        t, v = r["test"], r["valid"]
        stop = STOPS.get(r["stopped_by"], r["stopped_by"])
        epochs = "-" if name == "pop" else f"{r['best_epoch']} / {r['epochs_run']} ({stop})"
        rows.append(
            f"| {LABELS[name]} | {t['hit@10']:.4f} | {t['ndcg@10']:.4f} | {t['mrr@10']:.4f} "
            f"| {t['hit@20']:.4f} | {t['ndcg@20']:.4f} | {v['ndcg@10']:.4f} | {epochs} "
            f"| {r['train_seconds']:.0f} | {r['cpu_seconds']:.0f} |"
        )
    machine = next(iter(results.values()), {}).get("machine", "")
    return "\n".join(rows) + f"\n\nSeed 2020, one torch thread per model; machine: {machine}.\n"


def _render() -> None:
    replace_marked(DOC, "nextitem-table", _table(_load()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, default all")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--time-budget", type=float, help="wall seconds per model (default: none)")
    p.add_argument("--render", action="store_true", help="only rebuild the table")
    args = p.parse_args()
    if not args.render:
        data = build_sequences(load_ml100k().inter)
        for name in args.models.split(","):
            cfg = TrainConfig(
                model=name, seed=args.seed, epochs=args.epochs, time_budget_s=args.time_budget
            )
            result = train_and_evaluate(
                data, cfg, on_epoch=lambda c, n=name: print(n, json.dumps(c), flush=True)
            )
            saved = _load()
            saved[name] = result.to_dict() | {
                "machine": f"{platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} CPUs, torch threads 1",
            }
            RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
            print(
                name, "test", json.dumps(result.test), f"{result.train_seconds:.0f} s", flush=True
            )
    _render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
