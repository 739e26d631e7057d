"""Trajectory estimators against hand-computed values on two short lifetimes."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.ope import EstimatorConfig, TrajectoryLog, estimate_trajectory

# Lifetime 0: r = [1, 0, 1], rho = [2, .5, 1] -> w = [2, 1, 1].
# Lifetime 1: r = [0, 1],    rho = [.5, 4]    -> w = [.5, 2] (and 2 carried after the end).
REWARD = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
RATIO = np.array([[2.0, 0.5, 1.0], [0.5, 4.0, 1.0]])
ALIVE = np.array([[True, True, True], [True, True, False]])
ACTIONS = np.array([[0, 1, 0], [1, 1, 0]])


def _tabular(actions: np.ndarray) -> np.ndarray:
    """(N, T, 6) one-hot features of (t, action): FQE is then exact (tabular)."""
    n, t = actions.shape
    out = np.zeros((n, t, t * 2))
    for i in range(n):
        for s in range(t):
            out[i, s, 2 * s + actions[i, s]] = 1.0
    return out


def _log(**overrides) -> TrajectoryLog:
    fields = {
        "reward": REWARD,
        "ratio": RATIO,
        "alive": ALIVE,
        "q_features": _tabular(ACTIONS),
        "pi_features": _tabular(np.zeros_like(ACTIONS)),  # pi_e always takes action 0
    }
    return TrajectoryLog(**{**fields, **overrides})


CONFIG = EstimatorConfig(n_bootstrap=20, ridge=0.0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tis", (1 * 2 + 2 * 1) / 2),
        ("pdis", ((2 * 1 + 1 * 0 + 1 * 1) + (0.5 * 0 + 2 * 1)) / 2),
        # self-normalised per step: t0 (2*1 + .5*0)/2.5, t1 (1*0 + 2*1)/3, t2 (1*1 + 2*0)/3
        ("wpdis", 2 / 2.5 + 2 / 3 + 1 / 3),
    ],
)
def test_is_estimators_match_hand_computed(name, expected):
    assert estimate_trajectory(_log(), (name,), CONFIG)[name].value == pytest.approx(expected)


def test_pdis_discounts():
    config = EstimatorConfig(n_bootstrap=20, gamma=0.5)
    value = estimate_trajectory(_log(), ("pdis",), config)["pdis"].value
    assert value == pytest.approx(((2 + 0 + 0.25 * 1) + 0.5 * 2) / 2)


def test_dr_rl_with_given_q_matches_hand_computed():
    # Q = 1 and V = 0.5 on every live step: per step w r - w Q + w_prev V (Jiang & Li 2016).
    q = np.where(ALIVE, 1.0, 0.0)
    v = np.where(ALIVE, 0.5, 0.0)
    est = estimate_trajectory(_log(), ("dr-rl",), CONFIG, q_values=(q, v))
    lifetime0 = (2 - 2 + 0.5) + (0 - 1 + 2 * 0.5) + (1 - 1 + 1 * 0.5)
    lifetime1 = (0 - 0.5 + 0.5) + (2 - 2 + 0.5 * 0.5)
    assert est["dr-rl"].value == pytest.approx((lifetime0 + lifetime1) / 2)


def test_fqe_is_exact_on_tabular_features():
    # Q(2,0) = 1; Q(1,1) = mean(0 + V(2), 1 + 0) = 1; Q(1,0) unseen = 0; Q(0,0) = 1 + V(1) = 1
    # with V(s) = Q(s, 0) since pi_e takes action 0: FQE = Q(0, 0) = 1.
    assert estimate_trajectory(_log(), ("fqe",), CONFIG)["fqe"].value == pytest.approx(1.0)


def test_all_equal_policy_returns_logged_mean():
    """rho = 1 and deterministic pi_e = pi_b: every estimator returns the mean return."""
    same = _tabular(ACTIONS)
    log = _log(ratio=np.ones_like(RATIO), pi_features=same)
    mean_return = REWARD.sum(axis=1).mean()
    for name, e in estimate_trajectory(log, config=CONFIG).items():
        assert e.value == pytest.approx(mean_return), name
        assert e.ess == pytest.approx(2.0)


def test_ess_is_that_of_lifetime_weights_and_flags_degenerate():
    config = EstimatorConfig(n_bootstrap=20, min_ess_fraction=0.95)
    est = estimate_trajectory(_log(), ("tis", "fqe"), config)
    assert est["tis"].ess == pytest.approx(9 / 5)  # final weights [1, 2]
    assert est["tis"].degenerate
    assert not est["fqe"].degenerate


def test_bad_trajectory_logs():
    with pytest.raises(ValueError, match="ratio must be finite"):
        _log(ratio=-RATIO)
    with pytest.raises(ValueError, match="alive"):
        _log(alive=np.zeros_like(ALIVE))
    with pytest.raises(ValueError, match="unknown trajectory estimator"):
        estimate_trajectory(_log(), ("ipw",), CONFIG)
    with pytest.raises(ValueError, match="need q_features"):
        estimate_trajectory(_log(q_features=None, pi_features=None), ("fqe",), CONFIG)
