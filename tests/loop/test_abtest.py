"""The A/B statistics on hand-computed numbers (Welch 1947; Satterthwaite degrees of freedom)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rayrec.loop.abtest import ab_report, mean_ci, welch

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
