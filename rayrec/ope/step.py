"""Step-level (contextual-bandit) estimators: one logged decision is one row.

With w_i = pi_e(a_i | x_i) / pi_b(a_i | x_i), the behaviour propensity p_i = pi_b(a_i | x_i), a
cross-fitted reward model q (``rayrec.ope.reward_model``) and q_pi(x) = sum_a pi_e(a | x) q(x, a):

=============  ==========================================================================
``ipw``        mean_i w_i r_i                                     (Horvitz & Thompson 1952)
``snipw``      sum_i w_i r_i / sum_i w_i                          (Swaminathan & Joachims 2015)
``dm``         mean_i q_pi(x_i)                                   (direct method)
``dr``         mean_i [q_pi(x_i) + w_i (r_i - q(x_i, a_i))]       (Dudik et al. 2011)
``sndr``       mean_i q_pi(x_i) + sum_i w_i (r_i - q(x_i,a_i)) / sum_i w_i   (as OBP's SNDR)
``switch-dr``  mean_i [q_pi(x_i) + w_i 1[w_i <= tau] (r_i - q(x_i, a_i))]    (Wang et al. 2017;
               the DR form OBP implements: rows with weights above tau keep only the model term)
=============  ==========================================================================

At slot level (the Open Bandit Dataset) a row is one (impression, position) pair, the position is
part of the context and pi_e(. | x_i) is the evaluation policy's distribution at that position.

Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rayrec.ope.estimate import Estimate, EstimatorConfig, Statistic, make_estimates
from rayrec.ope.reward_model import cross_fit_rewards

__all__ = [
    "MODEL_ESTIMATORS",
    "STEP_ESTIMATORS",
    "StepLog",
    "SupportError",
    "estimate_step",
]

STEP_ESTIMATORS = ("ipw", "snipw", "dm", "dr", "sndr", "switch-dr")
MODEL_ESTIMATORS = ("dm", "dr", "sndr", "switch-dr")
"""The step estimators that need the reward model."""


class SupportError(ValueError):
    """The evaluation policy puts mass on actions the behaviour policy never takes."""


@dataclass(frozen=True)
class StepLog:
    """Logged decisions and the evaluation policy's distribution on them (n rows, A actions)."""

    reward: np.ndarray
    """(n,) logged reward."""
    pscore: np.ndarray
    """(n,) behaviour probability of the logged action, in (0, 1]."""
    action: np.ndarray
    """(n,) logged action, an index in [0, A)."""
    eval_dist: np.ndarray
    """(n, A) evaluation policy's action distribution in every logged context."""
    context: np.ndarray
    """(n, dc) context features for the reward model."""
    action_features: np.ndarray
    """(A, da) action features shared by every row, or (n, A, da) per row."""

    def __post_init__(self) -> None:
        n = len(self.reward)
        if n == 0:
            raise ValueError("the log has no rows")
        for name in ("pscore", "action", "context"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, reward has {n}")
        if self.eval_dist.ndim != 2 or len(self.eval_dist) != n:
            raise ValueError(f"eval_dist must be (n={n}, A), got shape {self.eval_dist.shape}")
        num_actions = self.eval_dist.shape[1]
        p = self.pscore
        if not np.all(np.isfinite(p)) or np.any(p <= 0) or np.any(p > 1 + 1e-9):
            bad = int(np.flatnonzero(~(np.isfinite(p) & (p > 0) & (p <= 1 + 1e-9)))[0])
            raise ValueError(
                f"pscore must be a probability in (0, 1] on every row; row {bad} has {p[bad]!r}"
            )
        if np.any(self.action < 0) or np.any(self.action >= num_actions):
            raise ValueError(f"action must be in [0, {num_actions}) (the columns of eval_dist)")
        if np.any(self.eval_dist < 0) or not np.allclose(self.eval_dist.sum(axis=1), 1, atol=1e-6):
            raise ValueError("every row of eval_dist must be a probability distribution")
        # A deterministic logged row (p = 1) gives every other action behaviour probability 0:
        # mass of pi_e there is invisible to every importance-weighted estimator.
        unseen = 1.0 - self.eval_dist[np.arange(n), self.action]
        blind = (p >= 1 - 1e-12) & (unseen > 1e-9)
        if blind.any():
            raise SupportError(
                f"{int(blind.sum())} of {n} rows were logged deterministically (propensity 1) "
                "but the evaluation policy wants other actions there (behaviour propensity 0)"
            )

    @property
    def n(self) -> int:
        return len(self.reward)

    @property
    def weights(self) -> np.ndarray:
        """(n,) importance weights pi_e(a_i | x_i) / p_i."""
        return self.eval_dist[np.arange(self.n), self.action] / self.pscore


def _step_statistics(
    log: StepLog, q: np.ndarray | None, tau: float
) -> tuple[dict[str, Statistic], dict[str, np.ndarray | None]]:
    w = log.weights
    r = np.asarray(log.reward, dtype=np.float64)
    wr = w * r
    stats: dict[str, Statistic] = {
        "ipw": lambda c: (c @ wr) / c.sum(),
        "snipw": lambda c: (c @ wr) / (c @ w) if c @ w > 0 else float("nan"),
    }
    weights: dict[str, np.ndarray | None] = {"ipw": w, "snipw": w}
    if q is not None:
        q_logged = q[np.arange(log.n), log.action]
        q_pi = np.einsum("na,na->n", log.eval_dist, q)
        residual = w * (r - q_logged)
        dr = q_pi + residual
        switch = w <= tau
        switch_dr = q_pi + np.where(switch, residual, 0.0)
        stats["dm"] = lambda c: (c @ q_pi) / c.sum()
        stats["dr"] = lambda c: (c @ dr) / c.sum()
        stats["sndr"] = lambda c: (
            (c @ q_pi) / c.sum() + ((c @ residual) / (c @ w) if c @ w > 0 else 0.0)
        )
        stats["switch-dr"] = lambda c: (c @ switch_dr) / c.sum()
        weights.update({"dm": None, "dr": w, "sndr": w, "switch-dr": np.where(switch, w, 0.0)})
    return stats, weights


def estimate_step(
    log: StepLog,
    estimators: tuple[str, ...] = STEP_ESTIMATORS,
    config: EstimatorConfig | None = None,
    rewards_model: np.ndarray | None = None,
) -> dict[str, Estimate]:
    """Estimates of the evaluation policy's mean reward per decision.

    Args:
        log: the logged rows and the evaluation policy's distributions.
        estimators: keys of :data:`STEP_ESTIMATORS`, in the order wanted.
        config: bootstrap, cross-fitting and threshold settings.
        rewards_model: (n, A) reward predictions to use instead of the cross-fitted ridge model.
    """
    config = config or EstimatorConfig()
    unknown = [e for e in estimators if e not in STEP_ESTIMATORS]
    if unknown:
        raise ValueError(
            f"unknown step estimator {unknown[0]!r}; known: {', '.join(STEP_ESTIMATORS)}"
        )
    q = rewards_model
    if q is None and any(e in MODEL_ESTIMATORS for e in estimators):
        q = cross_fit_rewards(
            log.context,
            log.action_features,
            log.action,
            log.reward,
            n_folds=config.n_folds,
            ridge=config.ridge,
            seed=config.seed,
        )
    stats, weights = _step_statistics(log, q, config.switch_tau)
    wanted = {name: stats[name] for name in estimators}
    return make_estimates(wanted, weights, log.n, config)
