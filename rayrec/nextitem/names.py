"""Names shared by the next-item trainer and its CLI: models, metric keys (no torch import)."""

from __future__ import annotations

__all__ = ["KS", "METRIC_NAMES", "MODELS", "VALID_METRIC", "metric_keys"]

MODELS = ("pop", "gru4rec", "sasrec", "sqn")
"""Model names the trainer and ``rayrec nextitem --model`` accept."""
KS = (10, 20)
"""The cut-offs reported (the issue's HR/NDCG/MRR@10/20)."""
METRIC_NAMES = ("hit", "ndcg", "mrr")
"""Metric key prefixes: keys read ``hit@10``, ``ndcg@10``, ``mrr@10``, ..."""
VALID_METRIC = "ndcg@10"
"""Model selection and early stopping watch this validation metric."""


def metric_keys(ks: tuple[int, ...] = KS) -> list[str]:
    """``["hit@10", "ndcg@10", "mrr@10", "hit@20", ...]``."""
    return [f"{name}@{k}" for k in ks for name in METRIC_NAMES]
