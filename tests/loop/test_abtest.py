"""The A/B statistics on hand-computed numbers (Welch 1947; Satterthwaite degrees of freedom)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rayrec.loop.abtest import MIN_LOOK, ab_report, mean_ci, msprt, welch

A = [1.0, 2.0, 3.0, 4.0]  # mean 2.5, variance 5/3
B = [2.0, 4.0, 6.0, 8.0, 10.0]  # mean 6, variance 10


def test_welch_on_a_hand_computed_pair():
    va, vb = (5 / 3) / 4, 10 / 5  # variances of the two means
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    d = welch(A, B)
    assert d.estimate == pytest.approx(3.5)
    assert d.df == pytest.approx(df) and df == pytest.approx(5.5208, abs=1e-4)
    half = stats.t.ppf(0.975, df) * se
    assert (d.low, d.high) == pytest.approx((3.5 - half, 3.5 + half))
    assert d.p_value == pytest.approx(2 * stats.t.sf(3.5 / se, df))
    assert d.significant == (d.p_value < 0.05) and d.significant == (d.low > 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_agrees_with_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.exponential(2.0, 80), rng.exponential(2.5, 30)
    d = welch(a, b)
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert d.p_value == pytest.approx(ref.pvalue) and d.df == pytest.approx(ref.df)
    ci = ref.confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high))


def test_constant_arms_give_an_exact_difference():
    same, other = welch([2.0, 2.0], [2.0, 2.0, 2.0]), welch([1.0, 1.0], [3.0, 3.0])
    assert (same.estimate, same.p_value, same.significant) == (0.0, 1.0, False)
    assert (other.low, other.high, other.p_value, other.significant) == (2.0, 2.0, 0.0, True)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [([1.0], [1.0, 2.0], "each arm needs >= 2 users"), ([1.0, math.nan], [1.0, 2.0], "finite")],
)
def test_welch_refuses_what_it_cannot_judge(a, b, message):
    with pytest.raises(ValueError, match=message):
        welch(a, b)


def test_mean_ci_is_the_t_interval():
    ci = mean_ci(A)
    half = stats.t.ppf(0.975, 3) * math.sqrt(5 / 3) / 2
    assert (ci.mean, ci.low, ci.high, ci.n) == pytest.approx((2.5, 2.5 - half, 2.5 + half, 4))
    one = mean_ci([3.0])
    assert one.mean == 3.0 and math.isnan(one.low) and one.to_dict()["low"] is None


def test_report_has_both_arms_and_the_difference_b_minus_a():
    arms = {"A": {"x": np.array(A), "y": np.ones(4)}, "B": {"x": np.array(B), "y": np.ones(5)}}
    report = ab_report(arms, ["x", "y"])
    assert [(r["arm"], r["users"]) for r in report["arms"]] == [("A", 4), ("B", 5)]
    assert set(report["arms"][0]["x"]) == {"mean", "low", "high"}
    diff = report["difference"]
    assert diff["arms"] == "B - A" and diff["x"]["estimate"] == pytest.approx(3.5)
    assert set(diff["x"]) == {"estimate", "low", "high", "p_value", "df", "significant"}
    assert report["test"] == "welch" and report["alpha"] == 0.05


def test_report_without_two_judgeable_arms_has_no_difference():
    assert ab_report({"A": {"x": np.array(A)}}, ["x"])["difference"] is None
    one_user = {"A": {"x": np.array(A)}, "B": {"x": np.array([1.0])}}
    assert ab_report(one_user, ["x"])["difference"] is None


def _likelihood_ratio(a: np.ndarray, b: np.ndarray, effect: float) -> float:
    """The mSPRT's mixture likelihood ratio at one look, from its formula."""
    v = a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    tau2, d = effect**2 * pooled, b.mean() - a.mean()
    return math.sqrt(v / (v + tau2)) * math.exp(tau2 * d**2 / (2 * v * (v + tau2)))


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_msprt_is_the_running_minimum_of_one_over_the_ratio(shift):
    rng = np.random.default_rng(3)
    in_b = rng.random(120) < 0.4
    values = rng.exponential(1.0, 120) + shift * in_b
    p, first = 1.0, None
    for n in range(1, 121):
        a, b = values[:n][~in_b[:n]], values[:n][in_b[:n]]
        if min(len(a), len(b)) >= MIN_LOOK:
            p = min(p, 1 / _likelihood_ratio(a, b, 0.25))
            first = n if first is None and p < 0.05 else first
    got = msprt(values, in_b)
    assert got.p_value == pytest.approx(p) and got.first_rejection == first
    assert got.significant == (first is not None)
