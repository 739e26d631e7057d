"""What every estimator returns, and how its confidence interval and effective sample size are made.

Each estimator is written as a *statistic of resampling counts*: a function of ``c`` (one count per
logged unit: a row at step level, a user lifetime at trajectory level) with ``c = 1`` giving the
point estimate. A nonparametric bootstrap replicate draws n units with replacement, so its counts
are ``bincount(rng.integers(0, n, n))``. All estimators of one call share the same replicates,
which keeps their intervals comparable and costs one resample for all of them. Fitted models (the
reward model of DM/DR, the Q function of FQE) are not refitted per replicate: the interval is
conditional on them, as in the Open Bandit Pipeline.

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
    "make_estimates",
]

Statistic = Callable[[np.ndarray], float]
"""Counts ``c`` (n,) of a resample -> the estimate on that resample (``c = 1``: the data)."""


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


def bootstrap_ci(
    statistics: Mapping[str, Statistic], n: int, n_bootstrap: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Percentile 95% intervals of every statistic over shared bootstrap resamples of n units."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB007]))
    draws = {name: np.empty(n_bootstrap) for name in statistics}
    for b in range(n_bootstrap):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        for name, stat in statistics.items():
            draws[name][b] = stat(counts)
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
) -> dict[str, Estimate]:
    """Point estimates, shared-bootstrap intervals and ESS for named statistics.

    ``weights[name]`` is the weight vector whose ESS is reported (``None``: no weights, ESS = n).
    """
    ones = np.ones(n)
    cis = bootstrap_ci(statistics, n, config.n_bootstrap, config.seed)
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
