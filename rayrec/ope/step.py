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

Intervals: with ``EstimatorConfig.refit`` (the default) the reward model of the four model
estimators is refitted on every bootstrap replicate (``rayrec.ope.reward_model``), so their
intervals hold the model's own uncertainty; the point estimates use the model of the whole log.

At slot level (the Open Bandit Dataset) a row is one (impression, position) pair, the position is
part of the context and pi_e(. | x_i) is the evaluation policy's distribution at that position.

Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rayrec.ope.estimate import (
    Estimate,
    EstimatorConfig,
    Statistic,
    linear_sums,
    make_estimates,
)
from rayrec.ope.reward_model import CrossFitRidge

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


def _ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den where den > 0, ``fill`` elsewhere (no warnings)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), fill)


def _step_statistics(
    log: StepLog, q: np.ndarray | None, tau: float
) -> tuple[dict[str, Statistic], dict[str, np.ndarray | None], Statistic]:
    """The estimators as statistics of the counts, the weights of their ESS, and the linear sums
    they share: [n, w r, w, q_pi, w (r - q), switched w (r - q), switched w r] of a resample."""
    w = log.weights
    r = np.asarray(log.reward, dtype=np.float64)
    wr = w * r
    columns = [np.ones(log.n), wr, w]
    weights: dict[str, np.ndarray | None] = {"ipw": w, "snipw": w}
    switch = w <= tau
    if q is not None:
        q_logged = q[np.arange(log.n), log.action]
        q_pi = np.einsum("na,na->n", log.eval_dist, q)
        residual = w * (r - q_logged)
        columns += [q_pi, residual, np.where(switch, residual, 0.0), np.where(switch, wr, 0.0)]
        weights.update({"dm": None, "dr": w, "sndr": w, "switch-dr": np.where(switch, w, 0.0)})
    sums = linear_sums(*columns)

    def column(j: int) -> Statistic:
        return lambda c: sums(c)[..., j]

    size, wr_sum, w_sum, q_pi_sum, residual_sum, switched_sum = (column(j) for j in range(6))
    stats: dict[str, Statistic] = {
        "ipw": lambda c: wr_sum(c) / size(c),
        "snipw": lambda c: _ratio(wr_sum(c), w_sum(c), float("nan")),
    }
    if q is not None:
        stats["dm"] = lambda c: q_pi_sum(c) / size(c)
        stats["dr"] = lambda c: (q_pi_sum(c) + residual_sum(c)) / size(c)
        stats["sndr"] = lambda c: q_pi_sum(c) / size(c) + _ratio(residual_sum(c), w_sum(c), 0.0)
        stats["switch-dr"] = lambda c: (q_pi_sum(c) + switched_sum(c)) / size(c)
    return stats, weights, sums


def _refitted_statistics(
    log: StepLog, model: CrossFitRidge, estimators: tuple[str, ...], tau: float, sums: Statistic
) -> dict[str, Statistic]:
    """The model estimators with the reward model refitted on every resample.

    With S0 = sum_i c_i q_pi(x_i) and S_u = sum_i c_i u_i q(x_i, a_i) from the refitted model,
    each estimator is its formula above with the counts' sums (u = w for DR and SNDR, u = w 1[w <=
    tau] for Switch-DR). ``sums`` are the log's linear sums of :func:`_step_statistics`.
    """
    w = log.weights
    switch = np.where(w <= tau, w, 0.0)
    model_sums = model.replicate_sums(log.eval_dist, np.stack([w, switch], axis=1))

    def log_sums(c: np.ndarray) -> np.ndarray:
        return sums(c)[..., [0, 1, 2, 6]]  # n, w r, w, switched w r

    def dm(c: np.ndarray) -> np.ndarray:
        return model_sums(c)[:, 0] / log_sums(c)[..., 0]

    def dr(c: np.ndarray) -> np.ndarray:
        s, t = model_sums(c), log_sums(c)
        return (s[:, 0] + t[..., 1] - s[:, 1]) / t[..., 0]

    def sndr(c: np.ndarray) -> np.ndarray:
        s, t = model_sums(c), log_sums(c)
        return s[:, 0] / t[..., 0] + _ratio(t[..., 1] - s[:, 1], t[..., 2], 0.0)

    def switch_dr(c: np.ndarray) -> np.ndarray:
        s, t = model_sums(c), log_sums(c)
        return (s[:, 0] + t[..., 3] - s[:, 2]) / t[..., 0]

    found = {"dm": dm, "dr": dr, "sndr": sndr, "switch-dr": switch_dr}
    return {name: found[name] for name in estimators if name in found}


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
        rewards_model: (n, A) reward predictions to use instead of the cross-fitted ridge model
            (fixed: not refitted per bootstrap replicate).
    """
    config = config or EstimatorConfig()
    unknown = [e for e in estimators if e not in STEP_ESTIMATORS]
    if unknown:
        raise ValueError(
            f"unknown step estimator {unknown[0]!r}; known: {', '.join(STEP_ESTIMATORS)}"
        )
    q, model = rewards_model, None
    if q is None and any(e in MODEL_ESTIMATORS for e in estimators):
        model = CrossFitRidge(
            log.context,
            log.action_features,
            log.action,
            log.reward,
            n_folds=config.n_folds,
            ridge=config.ridge,
            seed=config.seed,
        )
        q = model.q
    stats, weights, sums = _step_statistics(log, q, config.switch_tau)
    wanted = {name: stats[name] for name in estimators}
    refitted = None
    if model is not None and config.refit:
        refitted = _refitted_statistics(log, model, estimators, config.switch_tau, sums)
    return make_estimates(wanted, weights, log.n, config, refitted)
