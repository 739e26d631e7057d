"""Calibrate the simulator to MovieLens-100k and measure how close it gets (docs/data.md).

1. **Fit**: a grid search over four simulator values (the global popular pool's share of the
   candidates, the session budget, the return bias, and how strongly a copied real user's activity
   scales their budget) for the configuration whose simulated interactions (clicks under the
   `heuristic` policy, 943 users, users with at least 20 interactions as ML-100k keeps only such
   users) are closest to the data: |Gini difference| + |top-10% share difference| + mean |log ratio|
   of the per-user quantiles + half the L1 distance of the genre shares. The winner must be what
   envs/ml100k.yaml says (the script stops with the difference otherwise).
2. **Table**: data against the simulator under several policies on item popularity, interactions
   per user, genre shares and the next-item HR@10 that SASRec (trained on the real data under the
   protocol of docs/data.md, seed 2020) reaches on the simulated sequences against the real test set.

Results go to docs/ml100k_calibration.json and between the calibration markers of docs/data.md.

    .venv/bin/python benchmarks/calibrate_ml100k.py            # fit, train SASRec, table
    .venv/bin/python benchmarks/calibrate_ml100k.py --render   # only rebuild the table
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rayrec.contracts.files import atomic_write_text, replace_marked
from rayrec.datasets import load_ml100k
from rayrec.datasets.worlds import load_world
from rayrec.evaluation.baselines import make_baseline
from rayrec.nextitem.calibration import interaction_stats, simulated_interactions
from rayrec.nextitem.protocol import build_sequences
from rayrec.nextitem.train import TrainConfig, train_model
from rayrec.sim import SimConfig
from rayrec.specs import load_yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / "envs" / "ml100k.yaml"
RESULTS = ROOT / "docs" / "ml100k_calibration.json"
DOC = ROOT / "docs" / "data.md"
GRID = {
    "popular_fraction": (0.0, 0.1, 0.2),
    "session_budget": (10.0, 20.0, 40.0),
    "return_bias": (0.3, 1.5),
    "activity_exponent": (0.5, 1.0),
}
FIT_POLICY = "heuristic"
POLICIES = ("random", "popular", "heuristic", "greedy", "longterm")
MIN_INTERACTIONS = 20  # ML-100k keeps users with at least 20 ratings
USERS = 943  # as many simulated users as the data has


def _active(inter: pd.DataFrame) -> pd.DataFrame:
    counts = inter.groupby("user_id")["item_id"].transform("size")
    return inter[counts >= MIN_INTERACTIONS]


def distance(sim: dict[str, Any], data: dict[str, Any]) -> float:
    """The fit's objective (module docstring)."""
    quant = np.mean(
        [abs(np.log(max(sim["per_user"][q], 1.0) / data["per_user"][q])) for q in data["per_user"]]
    )
    genre = sum(abs(sim["genre_share"][g] - data["genre_share"][g]) for g in data["genre_share"])
    return float(
        abs(sim["gini"] - data["gini"])
        + abs(sim["top10_share"] - data["top10_share"])
        + quant
        + 0.5 * genre
    )


def _genre_l1(sim: dict[str, Any], data: dict[str, Any]) -> float:
    return sum(abs(sim["genre_share"][g] - data["genre_share"][g]) for g in data["genre_share"])


def fit(base: dict[str, Any], data: dict[str, Any], world: Any) -> dict[str, Any]:
    rows = []
    policy = make_baseline(FIT_POLICY)
    for values in itertools.product(*GRID.values()):
        point = dict(zip(GRID, values, strict=True))
        config = SimConfig.from_dict({**base, **point})
        inter = _active(simulated_interactions(policy, config, USERS, seed=0))
        stats = interaction_stats(inter, world.genre, world.genre_names)
        rows.append({**point, "distance": distance(stats, data), "users": stats["users"]})
        print(json.dumps(rows[-1]), flush=True)
    rows.sort(key=lambda r: r["distance"])
    return {"policy": FIT_POLICY, "users": USERS, "grid": GRID, "rows": rows}


def table(base: dict[str, Any], data: dict[str, Any], world: Any, model: Any) -> dict[str, Any]:
    config = SimConfig.from_dict(base)
    out: dict[str, Any] = {}
    for name in POLICIES:
        inter = simulated_interactions(make_baseline(name), config, USERS, seed=0)
        out[name] = {
            "all": interaction_stats(inter, world.genre, world.genre_names, model),
            "active": interaction_stats(_active(inter), world.genre, world.genre_names, model),
        }
    return out


def _row(label: str, s: dict[str, Any], data: dict[str, Any]) -> str:
    q = s["per_user"]
    nxt = s.get("next_item", {})
    return (
        f"| {label} | {s['interactions']:,} | {s['users']} | {s['gini']:.3f} "
        f"| {s['top10_share']:.3f} | {q['q10']:.0f} / {q['q50']:.0f} / {q['q90']:.0f} "
        f"| {_genre_l1(s, data):.3f} | {nxt.get('hit@10', float('nan')):.4f} "
        f"| {nxt.get('ndcg@10', float('nan')):.4f} |"
    )


def render(results: dict[str, Any]) -> str:
    data, sims = results["data"], results["simulated"]
    lines = [
        "| interactions of | interactions | users | Gini (items) | top-10% items' share "
        "| per user q10 / q50 / q90 | genre L1 to data | SASRec HR@10 | SASRec NDCG@10 |",
        "|" + " --- |" * 9,
        _row("**ML-100k** (ratings; HR@10 on the test set)", data, data),
    ]
    for name in POLICIES:
        lines.append(_row(f"simulator, `{name}`", sims[name]["all"], data))
        lines.append(
            _row(
                f"simulator, `{name}`, users with >= {MIN_INTERACTIONS}", sims[name]["active"], data
            )
        )
    genres = list(data["genre_share"])[:8]
    lines += [
        "",
        "Genre shares of interactions (the eight largest in the data):",
        "",
        "| interactions of | " + " | ".join(genres) + " |",
        "|" + " --- |" * (len(genres) + 1),
        "| ML-100k | " + " | ".join(f"{data['genre_share'][g]:.3f}" for g in genres) + " |",
    ]
    for name in POLICIES:
        share = sims[name]["all"]["genre_share"]
        lines.append(f"| `{name}` | " + " | ".join(f"{share[g]:.3f}" for g in genres) + " |")
    best = results["fit"]["rows"][:5]
    keys = list(results["fit"]["grid"])
    lines += [
        "",
        f"The fit's five best of {len(results['fit']['rows'])} grid points (`{FIT_POLICY}`, "
        f"{USERS} users, users with >= {MIN_INTERACTIONS} interactions; lower is closer):",
        "",
        "| " + " | ".join(keys) + " | distance |",
        "|" + " --- |" * (len(keys) + 1),
    ]
    for r in best:
        lines.append("| " + " | ".join(f"{r[k]:g}" for k in keys) + f" | {r['distance']:.3f} |")
    lines += ["", f"SASRec seed 2020 ({results['sasrec']}); machine: {results['machine']}."]
    return "\n".join(lines) + "\n"


def _write_doc(results: dict[str, Any]) -> None:
    replace_marked(DOC, "calibration-table", render(results))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--render", action="store_true", help="only rebuild the table")
    p.add_argument("--sasrec-budget", type=float, help="SASRec training seconds (default: none)")
    args = p.parse_args()
    if args.render:
        _write_doc(json.loads(RESULTS.read_text()))
        return 0
    base = load_yaml(ENV)["config"]
    config = SimConfig.from_dict(base)
    world = load_world(config.catalog, config.embed_dim, config.num_topics)
    raw = load_ml100k().inter
    data_stats = interaction_stats(raw, world.genre, world.genre_names)
    fitted = fit(base, data_stats, world)
    winner = {k: fitted["rows"][0][k] for k in GRID}
    differs = {k: (base.get(k), v) for k, v in winner.items() if base.get(k) != v}
    if differs:
        sys.exit(f"{ENV} differs from the fit's winner (yaml, winner): {differs}")
    start = time.process_time()
    model, result = train_model(
        build_sequences(raw), TrainConfig(model="sasrec", time_budget_s=args.sasrec_budget)
    )
    data_stats["next_item"] = {
        "examples": 943,
        "hit@10": result.test["hit@10"],
        "ndcg@10": result.test["ndcg@10"],
    }
    results = {
        "data": data_stats,
        "simulated": table(base, data_stats, world, model),
        "fit": fitted,
        "sasrec": f"best epoch {result.best_epoch} of {result.epochs_run}, "
        f"{time.process_time() - start:.0f} CPU s",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    atomic_write_text(RESULTS, json.dumps(results, indent=1) + "\n")
    _write_doc(results)
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
