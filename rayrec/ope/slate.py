"""Slate estimators: one logged decision is a ranked slate of k items with a reward per position.

With r_ij the reward at position j of slate i (a click there) and per-position probabilities of
the logged slate under the behaviour (b) and the evaluation (e) policy:

========  ===============================================================================
``sips``  standard slate IPS: mean_i [prod_j e_ij / b_ij] sum_j r_ij, with the *sequential*
          probabilities (item at j given the items above it): the whole-slate propensity
          (Swaminathan et al. 2017, as OBP's ``SlateStandardIPS``)
``iips``  independent IPS: mean_i sum_j (e_ij / b_ij) r_ij with the *marginal* probabilities of
          the logged item at position j (Li et al. 2018; unbiased when rewards of positions do
          not interact; OBP's ``SlateIndependentIPS``)
``rips``  reward-interaction (cascade) IPS: mean_i sum_j [prod_{l<=j} e_il / b_il] r_ij, the
          weight of the prefix the user saw before position j (McInerney et al. 2020; OBP's
          ``SlateRewardInteractionIPS``)
========  ===============================================================================

The sequential probabilities are what ``rayrec collect`` and ``rayrec serve`` log
(``propensities``); marginals are only available where the policy allows computing them.

Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rayrec.ope.estimate import (
    Estimate,
    EstimatorConfig,
    Statistic,
    bootstrap_ci,
    effective_sample_size,
)

__all__ = ["SLATE_ESTIMATORS", "SlateLog", "estimate_slate"]

SLATE_ESTIMATORS = ("sips", "iips", "rips")


def _check_probabilities(name: str, p: np.ndarray, shape: tuple[int, ...], positive: bool) -> None:
    if p.shape != shape:
        raise ValueError(f"{name} must have shape {shape} like rewards, got {p.shape}")
    low_ok = p > 0 if positive else p >= 0
    if not np.all(np.isfinite(p) & low_ok & (p <= 1 + 1e-9)):
        allowed = "(0, 1]" if positive else "[0, 1]"
        raise ValueError(f"{name} must hold probabilities in {allowed}")


@dataclass(frozen=True)
class SlateLog:
    """Logged slates (n slates of k positions) with both policies' probabilities of them."""

    rewards: np.ndarray
    """(n, k) reward at every position of the logged slate."""
    behavior_seq: np.ndarray
    """(n, k) behaviour probability of the item at j given positions 0..j-1."""
    eval_seq: np.ndarray
    """(n, k) evaluation probability of the item at j given positions 0..j-1."""
    behavior_marginal: np.ndarray | None = None
    """(n, k) behaviour probability that position j shows the logged item (``iips`` only)."""
    eval_marginal: np.ndarray | None = None
    """(n, k) evaluation probability that position j shows the logged item (``iips`` only)."""

    def __post_init__(self) -> None:
        if self.rewards.ndim != 2 or len(self.rewards) == 0:
            raise ValueError(f"rewards must be (n, k) with n >= 1, got {self.rewards.shape}")
        shape = self.rewards.shape
        _check_probabilities("behavior_seq", self.behavior_seq, shape, positive=True)
        _check_probabilities("eval_seq", self.eval_seq, shape, positive=False)
        if (self.behavior_marginal is None) != (self.eval_marginal is None):
            raise ValueError("behavior_marginal and eval_marginal come together or not at all")
        if self.behavior_marginal is not None:
            _check_probabilities("behavior_marginal", self.behavior_marginal, shape, True)
            _check_probabilities("eval_marginal", self.eval_marginal, shape, False)

    @property
    def n(self) -> int:
        return len(self.rewards)


def estimate_slate(
    log: SlateLog,
    estimators: tuple[str, ...] = ("sips", "rips"),
    config: EstimatorConfig | None = None,
) -> dict[str, Estimate]:
    """Estimates of the evaluation policy's expected slate reward (sum over positions).

    ESS: of the whole-slate weights for ``sips``; the smallest over positions for ``iips`` and
    ``rips`` (the least trustworthy position decides).
    """
    config = config or EstimatorConfig()
    unknown = [e for e in estimators if e not in SLATE_ESTIMATORS]
    if unknown:
        raise ValueError(
            f"unknown slate estimator {unknown[0]!r}; known: {', '.join(SLATE_ESTIMATORS)}"
        )
    if "iips" in estimators and log.behavior_marginal is None:
        raise ValueError("iips needs marginal position-wise probabilities; this log has none")
    r = np.asarray(log.rewards, dtype=np.float64)
    prefix = np.cumprod(log.eval_seq / log.behavior_seq, axis=1)
    per_unit: dict[str, np.ndarray] = {
        "sips": prefix[:, -1] * r.sum(axis=1),
        "rips": (prefix * r).sum(axis=1),
    }
    ess = {
        "sips": effective_sample_size(prefix[:, -1]),
        "rips": min(effective_sample_size(prefix[:, j]) for j in range(r.shape[1])),
    }
    if log.behavior_marginal is not None:
        marginal = log.eval_marginal / log.behavior_marginal
        per_unit["iips"] = (marginal * r).sum(axis=1)
        ess["iips"] = min(effective_sample_size(marginal[:, j]) for j in range(r.shape[1]))

    def mean_of(values: np.ndarray) -> Statistic:
        return lambda c: (c @ values) / c.sum(axis=-1)

    stats = {name: mean_of(per_unit[name]) for name in estimators}
    cis = bootstrap_ci(stats, log.n, config.n_bootstrap, config.seed)
    return {
        name: Estimate(
            name=name,
            value=float(per_unit[name].mean()),
            ci95=cis[name],
            ess=ess[name],
            n=log.n,
            degenerate=ess[name] < config.min_ess_fraction * log.n,
        )
        for name in estimators
    }
