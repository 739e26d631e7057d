"""Full-ranking next-item metrics: HR@k, NDCG@k and MRR@k with one relevant item per example.

With a single relevant item at 0-based rank r: HR@k = [r < k], NDCG@k = [r < k] / log2(r + 2) (the
ideal DCG is 1), MRR@k = [r < k] / (r + 1); each averaged over examples, as RecBole computes them.
Equal scores rank by item index (the lower index first), so ties never flatter a model.
"""

from __future__ import annotations

import numpy as np
import torch

from rayrec.nextitem.names import KS

__all__ = ["metrics_from_ranks", "ranks_from_scores"]


def ranks_from_scores(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all items.

    ``scores``: (B, N) over item indices 0..N-1; ``target``: (B,) indices. The rank counts the items
    scored higher, plus the items scored equally with a lower index.
    """
    if scores.ndim != 2 or target.shape != scores.shape[:1]:
        raise ValueError(f"scores {tuple(scores.shape)} must be (B, N) and target (B,)")
    own = scores.gather(1, target.unsqueeze(1))
    higher = (scores > own).sum(dim=1)
    index = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0)
    tied_before = ((scores == own) & (index < target.unsqueeze(1))).sum(dim=1)
    return higher + tied_before


def metrics_from_ranks(
    ranks: np.ndarray | torch.Tensor, ks: tuple[int, ...] = KS
) -> dict[str, float]:
    """Mean HR/NDCG/MRR@k over examples from 0-based ranks; keys as ``metric_keys(ks)``."""
    r = np.asarray(ranks.cpu() if isinstance(ranks, torch.Tensor) else ranks, dtype=np.float64)
    if r.ndim != 1 or len(r) == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {r.shape}")
    out: dict[str, float] = {}
    for k in ks:
        inside = r < k
        out[f"hit@{k}"] = float(inside.mean())
        out[f"ndcg@{k}"] = float(np.where(inside, 1.0 / np.log2(r + 2.0), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(inside, 1.0 / (r + 1.0), 0.0).mean())
    return out
