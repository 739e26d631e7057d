"""A/B analysis of per-user outcomes: each arm's mean with its confidence interval, and the
difference between two arms with Welch's t interval and p-value.

The unit is the **user**, not the request: a user's requests share the user's state (interest,
satisfaction, fatigue), so per-request outcomes are correlated and a test over requests would
claim far more certainty than the data hold. Each user contributes one number per metric (its
lifetime return, clicks, sessions) and users are independent.

**Why Welch** (Welch 1947, the Welch-Satterthwaite degrees of freedom): the arms differ in size
(the split is a hash of the user id, and rarely 50/50) and in spread (a policy that keeps users
longer also spreads their returns wider). Student's pooled t-test assumes equal variances and is
miscalibrated exactly when both sizes and variances differ; Welch's interval does not assume it
and costs nothing when they are equal. Lifetime returns are skewed, which the t interval
tolerates at a few hundred users per arm (measured: ``tests/loop/test_abtest_calibration.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "ALPHA",
    "MIN_LOOK",
    "Difference",
    "MeanCI",
    "Sequential",
    "ab_report",
    "mean_ci",
    "msprt",
    "welch",
]

ALPHA = 0.05
"""Significance level: 95% intervals."""
MIN_LOOK = 10
"""The sequential test looks once both arms have this many users."""


def _number(x: float) -> float | None:
    """A JSON-safe float: NaN (undefined, e.g. one user) becomes None."""
    return None if math.isnan(x) else float(x)


@dataclass(frozen=True)
class MeanCI:
    """A mean and its two-sided t confidence interval."""

    mean: float
    low: float
    """NaN with fewer than 2 values."""
    high: float
    n: int

    def to_dict(self) -> dict[str, float | None]:
        return {"mean": _number(self.mean), "low": _number(self.low), "high": _number(self.high)}


@dataclass(frozen=True)
class Difference:
    """``mean(b) - mean(a)`` with Welch's t interval and two-sided p-value."""

    estimate: float
    low: float
    high: float
    p_value: float
    df: float
    """Welch-Satterthwaite degrees of freedom."""
    alpha: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (equivalently, ``p_value < alpha``)."""
        return bool(self.p_value < self.alpha)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": _number(self.estimate),
            "low": _number(self.low),
            "high": _number(self.high),
            "p_value": _number(self.p_value),
            "df": _number(self.df),
            "significant": self.significant,
        }


def _values(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(out).all():
        raise ValueError(f"{name}: every value must be finite")
    return out


def mean_ci(values: Sequence[float] | np.ndarray, alpha: float = ALPHA) -> MeanCI:
    """The mean of ``values`` and its ``1 - alpha`` t interval (NaN bounds below 2 values)."""
    x = _values(values, "values")
    n = len(x)
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return MeanCI(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return MeanCI(mean, mean - half, mean + half, n)


def welch(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = ALPHA
) -> Difference:
    """``mean(b) - mean(a)``, its ``1 - alpha`` Welch t interval and the two-sided p-value.

    Raises:
        ValueError: an arm has fewer than 2 values.
    """
    x, y = _values(a, "a"), _values(b, "b")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"each arm needs >= 2 users, got {len(x)} and {len(y)}")
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    estimate = float(y.mean() - x.mean())
    se = math.sqrt(va + vb)
    if se == 0.0:  # both arms constant: the difference is known exactly
        p = 1.0 if estimate == 0.0 else 0.0
        return Difference(estimate, estimate, estimate, p, math.inf, alpha)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    p = float(2 * stats.t.sf(abs(estimate) / se, df))
    return Difference(estimate, estimate - half, estimate + half, p, float(df), alpha)


def ab_report(
    arms: Mapping[str, Mapping[str, np.ndarray]],
    metrics: Sequence[str],
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Per-arm summaries and, for exactly two arms, the difference second minus first.

    Args:
        arms: arm name -> metric -> (n,) per-user values (every metric of an arm has one length);
            insertion order is the order of the report, the first arm is A.
        metrics: the metrics to report, in order.
        alpha: 1 - the confidence level of every interval.

    Returns:
        ``{"alpha", "test", "arms": [{"arm", "users", METRIC: {"mean", "low", "high"}}, ...],
        "difference": {"arms": "B - A", METRIC: {"estimate", "low", "high", "p_value", "df",
        "significant"}} or None}`` (None unless there are two arms with >= 2 users each).
    """
    rows = []
    for name, values in arms.items():
        n = {len(values[m]) for m in metrics}
        if len(n) != 1:
            raise ValueError(f"arm {name!r}: metrics of different lengths {sorted(n)}")
        row: dict[str, Any] = {"arm": name, "users": n.pop()}
        row.update({m: mean_ci(values[m], alpha).to_dict() for m in metrics})
        rows.append(row)
    difference = None
    names = list(arms)
    if len(names) == 2 and all(row["users"] >= 2 for row in rows):
        a, b = (arms[n] for n in names)
        difference = {"arms": f"{names[1]} - {names[0]}"}
        difference.update({m: welch(a[m], b[m], alpha).to_dict() for m in metrics})
    return {"alpha": alpha, "test": "welch", "arms": rows, "difference": difference}


@dataclass(frozen=True)
class Sequential:
    """An always-valid test of ``mean(b) - mean(a)`` over users in arrival order (mSPRT)."""

    p_value: float
    """Always-valid p-value after the last user: min over every look of 1 / likelihood ratio."""
    first_rejection: int | None
    """Users seen when the p-value first fell below alpha (None: never)."""
    alpha: float

    @property
    def significant(self) -> bool:
        return self.first_rejection is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "always_valid_p": _number(self.p_value),
            "first_rejection": self.first_rejection,
            "significant": self.significant,
        }


def msprt(
    values: Sequence[float] | np.ndarray,
    in_b: Sequence[bool] | np.ndarray,
    effect: float = 0.25,
    alpha: float = ALPHA,
) -> Sequential:
    """The mixture sequential probability ratio test (mSPRT: Robbins 1970; Johari, Koomen, Pekelis
    and Walsh 2017, "Peeking at A/B tests") with a look after every user, in arrival order.

    At each look the difference of means d has estimated variance V = s_A^2/n_A + s_B^2/n_B; the
    likelihood ratio of d under the mixture effect ~ N(0, tau^2) against no effect is

        L = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

    and the always-valid p-value is the running minimum of 1 / L: stopping whenever it falls below
    alpha keeps the false-positive rate at most alpha however often one looks (for normal data
    with known variance; here the variance is estimated, as in the paper's plug-in version).
    ``tau`` is ``effect`` per-user standard deviations (pooled, at that look): the effect size the
    test is most sensitive to. Looks start once both arms have MIN_LOOK users (the plug-in
    variance means little before).

    Args:
        values: (n,) per-user outcomes in the order the users finished.
        in_b: (n,) True for users of arm B.
    """
    x = _values(values, "values")
    b = np.asarray(in_b, dtype=bool).reshape(-1)
    if len(b) != len(x):
        raise ValueError(f"values ({len(x)}) and in_b ({len(b)}) must have one length")
    a = ~b
    cumulative = []
    for arm in (a, b):
        n = np.cumsum(arm)
        total, squares = np.cumsum(np.where(arm, x, 0.0)), np.cumsum(np.where(arm, x * x, 0.0))
        safe = np.maximum(n, 1)
        mean = total / safe
        var = np.maximum(squares - n * mean**2, 0.0) / np.maximum(n - 1, 1)
        cumulative.append((n, mean, var))
    (na, ma, va), (nb, mb, vb) = cumulative
    looks = (na >= MIN_LOOK) & (nb >= MIN_LOOK)
    v = va / np.maximum(na, 1) + vb / np.maximum(nb, 1)
    pooled = ((na - 1) * va + (nb - 1) * vb) / np.maximum(na + nb - 2, 1)
    tau2 = effect**2 * pooled
    d = mb - ma
    ok = looks & (v > 0) & (tau2 > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_l = 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2 * v * (v + tau2))
    log_l = np.where(ok, log_l, -np.inf)
    p = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_l)))
    crossed = np.flatnonzero(p < alpha)
    first = int(crossed[0]) + 1 if crossed.size else None
    return Sequential(float(p[-1]) if len(p) else 1.0, first, alpha)
