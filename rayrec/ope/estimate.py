"""What every estimator returns, and how its confidence interval and effective sample size are made.

Each estimator is written as a *statistic of resampling counts*: a function of ``c`` (one count per
logged unit: a row at step level, a user lifetime at trajectory level) with ``c = 1`` giving the
point estimate. A nonparametric bootstrap replicate draws n units with replacement, so its counts
are ``bincount(rng.integers(0, n, n))``. All estimators of one call share the same replicates,
which keeps their intervals comparable and costs one resample for all of them. Statistics take a
batch of replicates at once, counts of shape (B, n), so that the models refitted in every
replicate (the reward model of DM/DR, the Q function of FQE: ``refitted`` in
:func:`make_estimates`) are matrix products over the batch instead of B passes over the log.

Numpy only: no Ray, torch or gymnasium here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Estimate",
    "EstimatorConfig",
    "Statistic",
    "bootstrap_ci",
    "effective_sample_size",
    "linear_sums",
    "make_estimates",
]

Statistic = Callable[[np.ndarray], np.ndarray]
"""Counts ``c`` (..., n) of resamples -> the estimate on each, shape (...) (``c = 1``: the data).

Vectorised over leading axes: the bootstrap passes a (B, n) batch, the point estimate (n,) ones.
"""
BATCH_ENTRIES = 1 << 24
"""Counts held at once by the bootstrap when models are refitted (B * n; 128 MiB of float64):
their matrix products run faster on large batches."""
SUMS_BATCH_ENTRIES = 1 << 17
"""Counts held at once for statistics that are only sums (1 MiB: they stay in the cache)."""


@dataclass(frozen=True)
class EstimatorConfig:
    """Settings shared by every estimator."""

    seed: int = 0
    """Seeds the bootstrap, the cross-fitting folds and any Monte Carlo step."""
    n_bootstrap: int = 1000
    """Bootstrap replicates for the 95% intervals (percentile method)."""
    n_folds: int = 2
    """Folds of the cross-fitted reward model (DM, DR, SNDR, Switch-DR)."""
    ridge: float = 1.0
    """L2 penalty of the ridge reward model and of linear FQE (the intercept is not penalised)."""
    switch_tau: float = 10.0
    """Switch-DR threshold: rows whose importance weight exceeds it keep only the model term."""
    min_ess_fraction: float = 0.01
    """An estimate whose weights have ESS below this fraction of the sample is flagged degenerate."""
    gamma: float = 1.0
    """Discount of trajectory-level returns (1.0: the undiscounted lifetime return)."""
    fqe_iterations: int = 0
    """Fitted-Q iterations; 0 means as many as the longest trajectory (exact for tabular features)."""
    refit: bool = True
    """Refit the reward model (DM, DR, SNDR, Switch-DR) and FQE (``fqe``, ``dr-rl``) on every
    bootstrap replicate, so that their intervals hold the models' own uncertainty; False keeps
    the fits of the whole log in every replicate (OBP's intervals: far too narrow for DM and FQE).
    The point estimates are the same either way."""

    def __post_init__(self) -> None:
        if self.n_bootstrap < 10:
            raise ValueError(f"n_bootstrap ({self.n_bootstrap}) must be >= 10")
        if self.n_folds < 2:
            raise ValueError(f"n_folds ({self.n_folds}) must be >= 2 (cross-fitting)")
        if not self.ridge >= 0:
            raise ValueError(f"ridge ({self.ridge}) must be >= 0")
        if not self.switch_tau > 0:
            raise ValueError(f"switch_tau ({self.switch_tau}) must be > 0")
        if not 0 <= self.min_ess_fraction <= 1:
            raise ValueError(f"min_ess_fraction ({self.min_ess_fraction}) must be in [0, 1]")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma ({self.gamma}) must be in (0, 1]")
        if self.fqe_iterations < 0:
            raise ValueError(f"fqe_iterations ({self.fqe_iterations}) must be >= 0")


@dataclass(frozen=True)
class Estimate:
    """One estimator's answer on one log."""

    name: str
    """Estimator key (``ipw``, ``snipw``, ``dm``, ..., ``fqe``)."""
    value: float
    """Point estimate of the evaluation policy's value."""
    ci95: tuple[float, float]
    """Percentile bootstrap 95% interval."""
    ess: float
    """Effective sample size (sum w)^2 / sum w^2 of the weights the estimator applies."""
    n: int
    """Logged units (rows at step level, lifetimes at trajectory level)."""
    degenerate: bool = field(default=False)
    """ESS below ``min_ess_fraction * n``: the estimate is not to be trusted."""

    def to_dict(self) -> dict[str, object]:
        """The ``--json`` entry: ``{"value", "ci95", "ess"}``."""
        return {"value": self.value, "ci95": [self.ci95[0], self.ci95[1]], "ess": self.ess}


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2; 0 when every weight is 0."""
    w = np.asarray(weights, dtype=np.float64)
    sq = float(np.dot(w, w))
    return float(w.sum() ** 2 / sq) if sq > 0 else 0.0


def linear_sums(*vectors: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """counts (..., n) -> (..., k) sums sum_i c_i v_i of k vectors (n,), in one pass over the
    counts; the last batch's answer is kept, so the statistics of one call can share it."""
    matrix = np.stack([np.asarray(v, dtype=np.float64) for v in vectors], axis=1)
    last: list[tuple[np.ndarray, np.ndarray]] = []

    def sums(counts: np.ndarray) -> np.ndarray:
        if last and last[0][0] is counts:
            return last[0][1]
        out = counts @ matrix
        last[:] = [(counts, out)]
        return out

    return sums


def bootstrap_ci(
    statistics: Mapping[str, Statistic],
    n: int,
    n_bootstrap: int,
    seed: int,
    batch_entries: int = SUMS_BATCH_ENTRIES,
) -> dict[str, tuple[float, float]]:
    """Percentile 95% intervals of every statistic over shared bootstrap resamples of n units.

    The resamples are drawn one after the other from one seeded stream and handed to the
    statistics in batches of (B, n) counts, B * n <= ``batch_entries``; the batch size changes
    only the rounding of the sums, not the resamples.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB007]))
    draws = {name: np.empty(n_bootstrap) for name in statistics}
    batch = max(1, min(n_bootstrap, batch_entries // max(n, 1)))
    buffer = np.empty((batch, n))  # reused: a fresh large array pays its page faults each time
    for start in range(0, n_bootstrap, batch):
        stop = min(start + batch, n_bootstrap)
        counts = buffer[: stop - start]  # a new view per batch: statistics cache by identity
        for b in range(stop - start):
            counts[b] = np.bincount(rng.integers(0, n, n), minlength=n)
        for name, stat in statistics.items():
            draws[name][start:stop] = stat(counts)
    out = {}
    for name, values in draws.items():
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            out[name] = (float("nan"), float("nan"))
        else:
            lo, hi = np.percentile(finite, [2.5, 97.5])
            out[name] = (float(lo), float(hi))
    return out


def make_estimates(
    statistics: Mapping[str, Statistic],
    weights: Mapping[str, np.ndarray | None],
    n: int,
    config: EstimatorConfig,
    refitted: Mapping[str, Statistic] | None = None,
) -> dict[str, Estimate]:
    """Point estimates, shared-bootstrap intervals and ESS for named statistics.

    ``weights[name]`` is the weight vector whose ESS is reported (``None``: no weights, ESS = n).
    ``refitted[name]``, where given, replaces ``statistics[name]`` in the bootstrap: the same
    estimator with its model refitted on each resample. The point estimate always comes from
    ``statistics`` (the model fitted on the whole log).
    """
    ones = np.ones(n)
    replicated = {**statistics, **{k: v for k, v in (refitted or {}).items() if k in statistics}}
    batch = BATCH_ENTRIES if refitted else SUMS_BATCH_ENTRIES
    cis = bootstrap_ci(replicated, n, config.n_bootstrap, config.seed, batch)
    out = {}
    for name, stat in statistics.items():
        w = weights.get(name)
        ess = float(n) if w is None else effective_sample_size(w)
        out[name] = Estimate(
            name=name,
            value=float(stat(ones)),
            ci95=cis[name],
            ess=ess,
            n=n,
            degenerate=ess < config.min_ess_fraction * n,
        )
    return out
