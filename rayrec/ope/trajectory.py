"""Trajectory-level estimators: the value of a policy over whole user lifetimes.

N lifetimes are padded to T steps. After a lifetime ends the user sits in an absorbing state where
both policies agree: rewards 0 and ratios 1, so the cumulative weights carry their last value.
With rho_it = pi_e(a_it | s_it) / pi_b(a_it | s_it), w_it = prod_{l<=t} rho_il (w_i,-1 = 1):

=========  =============================================================================
``tis``    trajectory-wise IS: mean_i w_i,T-1 sum_t gamma^t r_it                (Precup 2000)
``pdis``   per-decision IS: mean_i sum_t gamma^t w_it r_it                      (Precup 2000)
``wpdis``  weighted per-decision IS: sum_t gamma^t sum_i w_it r_it / sum_i w_it  (Precup 2000;
           self-normalised per step, biased but consistent)
``dr-rl``  doubly robust for RL: mean_i sum_t gamma^t [w_it r_it - (w_it Q(s_it, a_it)
           - w_i,t-1 V(s_it))] with Q, V from FQE                    (Jiang & Li 2016, eq. 5)
``fqe``    fitted Q evaluation: mean_i V(s_i0), Q linear in features phi(s, a), fitted by
           ridge regression on r_t + gamma V(s_t+1) repeatedly  (Le et al. 2019)
=========  =============================================================================

V(s) = sum_a pi_e(a | s) Q(s, a) = <theta, sum_a pi_e(a | s) phi(s, a)>, so the log only has to
carry phi of the logged action and the evaluation policy's expected phi in every state.
ESS is that of the whole-lifetime weights w_i,T-1 for every IS-based estimator (the weights that
decide the last steps), N for ``fqe``.

Intervals: with ``EstimatorConfig.refit`` (the default) FQE is refitted on every bootstrap
replicate for ``fqe`` and ``dr-rl``. Every ridge fit of the iteration is linear in sums over the
resampled lifetimes (sum_t x x', sum_t x r, sum_t x phi_pi(s_t+1)'), so a replicate sums those
per-lifetime statistics with its counts and iterates on d x d matrices (:class:`_RefittedFQE`).

Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rayrec.ope.estimate import Estimate, EstimatorConfig, Statistic, make_estimates
from rayrec.ope.reward_model import ridge_fit

__all__ = ["TRAJECTORY_ESTIMATORS", "TrajectoryLog", "estimate_trajectory", "fitted_q_evaluation"]

_CONVERGED = 1e-12
"""FQE stops iterating when no coefficient moves by more than this."""

TRAJECTORY_ESTIMATORS = ("tis", "pdis", "wpdis", "dr-rl", "fqe")


@dataclass(frozen=True)
class TrajectoryLog:
    """N padded lifetimes of at most T steps."""

    reward: np.ndarray
    """(N, T) reward of every step, 0 after the end."""
    ratio: np.ndarray
    """(N, T) pi_e / pi_b of the logged action, 1 after the end."""
    alive: np.ndarray
    """(N, T) bool: the step exists (a prefix of every row)."""
    q_features: np.ndarray | None = None
    """(N, T, d) features phi(s_t, a_t) of the logged action (FQE and DR)."""
    pi_features: np.ndarray | None = None
    """(N, T, d) expected features sum_a pi_e(a | s_t) phi(s_t, a) (FQE and DR)."""

    def __post_init__(self) -> None:
        if self.reward.ndim != 2 or len(self.reward) == 0:
            raise ValueError(f"reward must be (N, T) with N >= 1, got {self.reward.shape}")
        for name in ("ratio", "alive"):
            if getattr(self, name).shape != self.reward.shape:
                raise ValueError(f"{name} must have shape {self.reward.shape} like reward")
        if not np.all(np.isfinite(self.ratio) & (self.ratio >= 0)):
            raise ValueError("ratio must be finite and >= 0")
        if not np.all(self.alive[:, 0]):
            raise ValueError("every lifetime must have at least one step (alive[:, 0])")
        if (self.q_features is None) != (self.pi_features is None):
            raise ValueError("q_features and pi_features come together or not at all")
        if self.q_features is not None:
            expected = (*self.reward.shape, self.q_features.shape[-1])
            for name in ("q_features", "pi_features"):
                if getattr(self, name).shape != expected:
                    raise ValueError(f"{name} must have shape {expected}")

    @property
    def n(self) -> int:
        return len(self.reward)


def fitted_q_evaluation(
    log: TrajectoryLog, config: EstimatorConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(Q, V): (N, T) Q(s_t, a_t) and V(s_t) of the evaluation policy, 0 after the end.

    Linear FQE: theta_{k+1} = argmin sum_(i,t alive) (phi_it theta - y_it)^2 + ridge |theta|^2
    with y_it = r_it + gamma V_k(s_i,t+1). Starting from theta = 0, k iterations see k steps ahead;
    ``fqe_iterations`` = 0 runs T of them (exact on tabular features).
    """
    if log.q_features is None or log.pi_features is None:
        raise ValueError("fqe and dr-rl need q_features and pi_features")
    alive = log.alive.astype(bool)
    x = log.q_features[alive].astype(np.float64)
    d = x.shape[1]
    gram = x.T @ x
    # ridge_fit leaves column 0 unpenalised: prepend a zero column so every feature is penalised.
    padded = np.zeros((d + 1, d + 1))
    padded[1:, 1:] = gram
    padded[0, 0] = 1.0
    nxt_alive = np.zeros_like(alive)
    nxt_alive[:, :-1] = alive[:, 1:]
    pi_next = np.zeros_like(log.pi_features, dtype=np.float64)
    pi_next[:, :-1] = log.pi_features[:, 1:]
    pi_next = pi_next[alive]
    nxt = nxt_alive[alive]
    r = log.reward[alive].astype(np.float64)
    theta = np.zeros(d)
    iterations = config.fqe_iterations or log.reward.shape[1]
    for _ in range(iterations):
        y = r + config.gamma * np.where(nxt, pi_next @ theta, 0.0)
        new = ridge_fit(padded, np.concatenate([[0.0], x.T @ y]), config.ridge)[1:]
        converged = np.allclose(new, theta, rtol=0, atol=_CONVERGED)
        theta = new
        if converged:
            break
    q = np.where(alive, log.q_features @ theta, 0.0)
    v = np.where(alive, log.pi_features @ theta, 0.0)
    return q, v


class _RefittedFQE:
    """Linear FQE refitted on resamples of the lifetimes, given their counts c (B, N).

    Iteration k solves (sum_i c_i G_i + ridge I) theta_k+1 = sum_i c_i (b_i + gamma H_i theta_k)
    with per-lifetime G_i = sum_t x_it x_it', b_i = sum_t x_it r_it and H_i = sum_t x_it
    phi_pi(s_i,t+1)' (t alive; phi_pi 0 after the end), as :func:`fitted_q_evaluation` does on
    the whole log. The last batch's coefficients are kept (``fqe`` and ``dr-rl`` share them).
    """

    def __init__(self, log: TrajectoryLog, config: EstimatorConfig, discount: np.ndarray) -> None:
        if log.q_features is None or log.pi_features is None:
            raise ValueError("fqe and dr-rl need q_features and pi_features")
        alive = log.alive.astype(bool)
        x = np.where(alive[..., None], log.q_features, 0.0).astype(np.float64)
        pi = np.where(alive[..., None], log.pi_features, 0.0).astype(np.float64)
        pi_next = np.zeros_like(pi)
        pi_next[:, :-1] = pi[:, 1:]
        r = np.where(alive, log.reward, 0.0).astype(np.float64)
        n, d = len(x), x.shape[-1]
        self.d, self.config = d, config
        self.iterations = config.fqe_iterations or log.reward.shape[1]
        self.stats = np.concatenate(
            [
                np.einsum("ntd,nte->nde", x, x).reshape(n, -1),
                np.einsum("ntd,nt->nd", x, r),
                np.einsum("ntd,nte->nde", x, pi_next).reshape(n, -1),
                pi[:, 0],
            ],
            axis=1,
        )
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def split(self, sums: np.ndarray) -> tuple[np.ndarray, ...]:
        """(B, m) summed statistics -> gram (B, d, d), xr (B, d), H (B, d, d), phi_pi(s_0) (B, d)."""
        d, b = self.d, len(sums)
        gram = sums[:, : d * d].reshape(b, d, d)
        xr = sums[:, d * d : d * d + d]
        h = sums[:, d * d + d : 2 * d * d + d].reshape(b, d, d)
        return gram, xr, h, sums[:, 2 * d * d + d :]

    def __call__(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(theta (B, d), sum_i c_i phi_pi(s_i0) (B, d)) of the FQE refitted on each resample."""
        if self._last is not None and self._last[0] is counts:
            return self._last[1]
        gram, xr, h, start = self.split(np.atleast_2d(counts) @ self.stats)
        system = gram + self.config.ridge * np.eye(self.d)
        if self.config.ridge > 0:
            inverse = np.linalg.solve(system, np.broadcast_to(np.eye(self.d), system.shape))
        else:  # as lstsq in fitted_q_evaluation: the minimum-norm solution
            inverse = np.linalg.pinv(system)
        fixed = np.einsum("bij,bj->bi", inverse, xr)
        carry = self.config.gamma * inverse @ h
        theta = np.zeros_like(xr)
        for _ in range(self.iterations):
            new = fixed + np.einsum("bij,bj->bi", carry, theta)
            converged = np.all(np.abs(new - theta) <= _CONVERGED)
            theta = new
            if converged:
                break
        self._last = (counts, (theta, start))
        return theta, start


def estimate_trajectory(
    log: TrajectoryLog,
    estimators: tuple[str, ...] = TRAJECTORY_ESTIMATORS,
    config: EstimatorConfig | None = None,
    q_values: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Estimate]:
    """Estimates of the evaluation policy's expected (discounted) lifetime return.

    ``q_values`` = (Q, V), both (N, T), replaces the FQE fit in ``dr-rl`` and ``fqe`` (fixed:
    not refitted per bootstrap replicate).
    """
    config = config or EstimatorConfig()
    unknown = [e for e in estimators if e not in TRAJECTORY_ESTIMATORS]
    if unknown:
        raise ValueError(
            f"unknown trajectory estimator {unknown[0]!r}; known: {', '.join(TRAJECTORY_ESTIMATORS)}"
        )
    alive = log.alive.astype(bool)
    r = np.where(alive, log.reward, 0.0).astype(np.float64)
    rho = np.where(alive, log.ratio, 1.0).astype(np.float64)
    discount = config.gamma ** np.arange(r.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        w = np.cumprod(rho, axis=1)
    final = w[:, -1]
    per_unit = {
        "tis": final * (r @ discount),
        "pdis": (w * r) @ discount,
    }
    wr = w * r
    stats: dict[str, Statistic] = {
        "tis": lambda c: (c @ per_unit["tis"]) / c.sum(axis=-1),
        "pdis": lambda c: (c @ per_unit["pdis"]) / c.sum(axis=-1),
    }

    def wpdis(c: np.ndarray) -> np.ndarray:
        num, den = c @ wr, c @ w
        with np.errstate(invalid="ignore", divide="ignore"):
            per_step = np.where(den > 0, num / den, 0.0)
        return per_step @ discount

    stats["wpdis"] = wpdis
    refitted: dict[str, Statistic] = {}
    if "fqe" in estimators or "dr-rl" in estimators:
        q, v = q_values if q_values is not None else fitted_q_evaluation(log, config)
        w_prev = np.concatenate([np.ones((len(w), 1)), w[:, :-1]], axis=1)
        dr_unit = ((wr - w * q + w_prev * v) * alive) @ discount
        v0 = v[:, 0]
        stats["dr-rl"] = lambda c: (c @ dr_unit) / c.sum(axis=-1)
        stats["fqe"] = lambda c: (c @ v0) / c.sum(axis=-1)
        if q_values is None and config.refit:
            refitted = _refitted_statistics(log, config, w, w_prev, discount)
    weights: dict[str, np.ndarray | None] = {
        "tis": final,
        "pdis": final,
        "wpdis": final,
        "dr-rl": final,
        "fqe": None,
    }
    wanted = {name: stats[name] for name in estimators}
    return make_estimates(wanted, weights, log.n, config, refitted)


def _refitted_statistics(
    log: TrajectoryLog,
    config: EstimatorConfig,
    w: np.ndarray,
    w_prev: np.ndarray,
    discount: np.ndarray,
) -> dict[str, Statistic]:
    """``fqe`` and ``dr-rl`` with FQE refitted on every resample. Both are linear in theta:
    V(s_i0) = phi_pi(s_i0)' theta and the DR-RL term of lifetime i is h_i + g_i' theta with
    h_i = sum_t gamma^t w_it r_it and g_i = sum_t gamma^t (w_i,t-1 phi_pi(s_it) - w_it x_it)."""
    fqe = _RefittedFQE(log, config, discount)
    alive = log.alive.astype(bool)
    scale = discount * alive
    r = np.where(alive, log.reward, 0.0)
    h = (w * r * scale).sum(axis=1)
    with np.errstate(invalid="ignore"):
        g = np.einsum("nt,ntd->nd", w_prev * scale, log.pi_features) - np.einsum(
            "nt,ntd->nd", w * scale, log.q_features
        )

    def fqe_value(c: np.ndarray) -> np.ndarray:
        theta, start = fqe(c)
        return np.einsum("bd,bd->b", start, theta) / c.sum(axis=-1)

    def dr_rl(c: np.ndarray) -> np.ndarray:
        theta, _ = fqe(c)
        return (c @ h + np.einsum("bd,bd->b", c @ g, theta)) / c.sum(axis=-1)

    return {"fqe": fqe_value, "dr-rl": dr_rl}
