"""How real is a calibrated simulator? Data against simulation on the statistics of docs/data.md.

The simulator's users click; ML-100k's users rate. Both are read as interactions: one per click in a
simulated lifetime (in order), one per rating. Simulated interactions depend on the policy that
chooses what users see, so every statistic is reported per behaviour policy. Statistics:

- item popularity: the Gini coefficient of interactions per item (over the whole catalog, items
  never interacted with count as 0) and the share of interactions that go to the top 10% of items;
- interactions per user: quantiles;
- genre shares: the share of interactions per genre (a movie's rarest genre);
- next-item HR@10 of a trained model on the simulated sequences, under the same leave-one-out
  protocol as on the real test set (each user's last interaction predicted from up to 50 before it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from rayrec.evaluation.baselines import Policy
from rayrec.evaluation.simulate import lifetimes
from rayrec.nextitem.protocol import build_sequences
from rayrec.nextitem.train import evaluate_model
from rayrec.sim import SessionSimulator, SimConfig, StepResult

__all__ = [
    "QUANTILES",
    "gini",
    "interaction_stats",
    "simulated_interactions",
    "top_share",
]

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (0: all equal; (n - 1) / n: one holds all)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    if x.ndim != 1 or len(x) == 0 or (x < 0).any():
        raise ValueError("counts must be a non-empty 1-D array of non-negative numbers")
    total = x.sum()
    if total == 0:
        return 0.0
    n = len(x)
    # G = sum_i (2i - n - 1) x_(i) / (n sum x), i = 1..n over the sorted values.
    return float(((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * total))


def top_share(counts: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the total held by the ``fraction`` largest counts (at least one)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction ({fraction}) must be in (0, 1]")
    x = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    total = x.sum()
    top = max(1, round(fraction * len(x)))
    return float(x[:top].sum() / total) if total else 0.0


def simulated_interactions(
    policy: Policy, config: SimConfig, users: int, seed: int = 0
) -> pd.DataFrame:
    """Clicks of ``users`` simulated lifetimes under ``policy``, as the dataset's interaction table:
    ``user_id`` (the simulator's), ``item_id`` (catalog index + 1, the dataset's movie id in a
    calibrated world) and ``timestamp`` (the step count, increasing within a user)."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    clock = [0]

    def record(sim: SessionSimulator, r: StepResult, active: np.ndarray) -> None:
        clock[0] += 1
        rows = np.flatnonzero(r.clicked & active)
        parts.append((sim.user_id[rows].copy(), r.item[rows] + 1, np.full(rows.size, clock[0])))

    lifetimes(policy, config, users, seed, on_step=record)
    user, item, time = (np.concatenate(column) for column in zip(*parts, strict=True))
    return pd.DataFrame({"user_id": user, "item_id": item, "timestamp": time})


def interaction_stats(
    inter: pd.DataFrame,
    genre: np.ndarray,
    genre_names: tuple[str, ...],
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """The statistics of the module docstring for an interaction table over the catalog whose
    items have genres ``genre`` ((N,), item id ``j + 1`` has ``genre[j]``); ``model`` (optional, a
    trained next-item model over the same item ids) adds ``hit@10``/``ndcg@10`` on its last items."""
    n = len(genre)
    item = inter["item_id"].to_numpy()
    if len(item) == 0 or item.min() < 1 or item.max() > n:
        raise ValueError(f"item_id must be in 1..{n} and the table non-empty")
    per_item = np.bincount(item - 1, minlength=n)
    per_user = inter.groupby("user_id").size().to_numpy()
    shares = np.bincount(genre[item - 1], minlength=len(genre_names)) / len(item)
    out: dict[str, Any] = {
        "interactions": len(item),
        "users": len(per_user),
        "gini": gini(per_item),
        "top10_share": top_share(per_item, 0.1),
        "items_never": float((per_item == 0).mean()),
        "per_user": {f"q{round(100 * q)}": float(np.quantile(per_user, q)) for q in QUANTILES},
        "per_user_mean": float(per_user.mean()),
        "genre_share": {name: float(shares[k]) for k, name in enumerate(genre_names)},
    }
    if model is not None:
        test = build_sequences(inter, item_ids=np.arange(1, n + 1)).test
        metrics = evaluate_model(model, test)
        out["next_item"] = {
            "examples": len(test),
            "hit@10": metrics["hit@10"],
            "ndcg@10": metrics["ndcg@10"],
        }
    return out
