"""Welfare and market metrics of the marketplace game (docs/marketplace.md, "Metrics").

Ad spend is a transfer from advertisers to the platform: it enters both parties' welfare with
opposite signs and cancels in total welfare (with equal weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rayrec.contracts.keys import MarketMetrics
from rayrec.envs.marketplace.game import PeriodOutcome

__all__ = ["MarketMetrics", "episode_metrics", "gini", "period_welfare"]


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 for equality, (n - 1) / n for one holder.

    G = sum_i sum_j |x_i - x_j| / (2 n^2 mean(x)); 0 when every value is 0.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0 or x.sum() <= 0:
        return 0.0
    diff = np.abs(x[:, None] - x[None, :]).sum()
    return float(diff / (2 * x.size**2 * x.mean()))


def period_welfare(outcome: PeriodOutcome, weights: Sequence[float]) -> dict[str, float]:
    """Welfare of each role in one period and the weighted total."""
    parts = {
        "platform": float(outcome.platform_reward),
        "creator": float(outcome.creator_reward.sum()),
        "advertiser": float(outcome.advertiser_reward.sum()),
        "user": float(outcome.user_utility.sum()),
    }
    parts["total"] = float(sum(w * v for w, v in zip(weights, parts.values(), strict=True)))
    return parts


def episode_metrics(totals: dict[str, Any], weights: Sequence[float]) -> dict[str, float]:
    """Metrics of one episode from ``MarketplaceEnv.totals``."""
    welfare = [
        float(totals["platform"]),
        float(np.sum(totals["creator"])),
        float(np.sum(totals["advertiser"])),
        float(totals["user"]),
    ]
    out = dict(zip(MarketMetrics.ROLE_KEYS, welfare, strict=True))
    out[MarketMetrics.WELFARE_TOTAL] = float(
        sum(w * v for w, v in zip(weights, welfare, strict=True))
    )
    out[MarketMetrics.EXPOSURE_GINI] = gini(totals["exposure"])
    out[MarketMetrics.AD_LOAD] = totals["ads_shown"] / max(totals["slots"], 1)
    users = totals["users_per_period"] * max(totals["periods"], 1)
    out[MarketMetrics.RETENTION] = 1.0 - totals["leavers"] / max(users, 1)
    out[MarketMetrics.REVENUE] = float(totals["revenue"])
    out[MarketMetrics.CLICKS] = float(totals["clicks"])
    return out
