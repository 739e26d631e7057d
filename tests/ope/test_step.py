"""Step-level estimators against values computed by hand on a four-row log."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.ope import EstimatorConfig, StepLog, SupportError, effective_sample_size, estimate_step
from rayrec.ope.reward_model import cross_fit_rewards, fold_ids

# Four rows, two actions. pi_e(a_i) = [1, .5, .8, 1], so w = [2, 1, 3.2, 4/3].
REWARD = np.array([1.0, 0.0, 1.0, 0.0])
ACTION = np.array([0, 1, 1, 0])
PSCORE = np.array([0.5, 0.5, 0.25, 0.75])
EVAL = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8], [1.0, 0.0]])
# A fixed reward model: q_logged = [.5, .1, .3, 0], q_pi = [.5, .25, .36, 0].
Q = np.array([[0.5, 0.2], [0.4, 0.1], [0.6, 0.3], [0.0, 0.5]])
SUM_W = 2 + 1 + 3.2 + 4 / 3


def _log(**overrides) -> StepLog:
    fields = {
        "reward": REWARD,
        "pscore": PSCORE,
        "action": ACTION,
        "eval_dist": EVAL,
        "context": np.zeros((4, 1)),
        "action_features": np.eye(2),
    }
    return StepLog(**{**fields, **overrides})


def _estimates(tau: float = 2.0):
    config = EstimatorConfig(n_bootstrap=50, switch_tau=tau)
    return estimate_step(_log(), config=config, rewards_model=Q)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ipw", 5.2 / 4),
        ("snipw", 5.2 / SUM_W),  # self-normalised: divides by sum w = 7.53, not n = 4
        ("dm", 1.11 / 4),
        ("dr", 1.11 / 4 + 3.14 / 4),  # residuals w (r - q) = [1, -.1, 2.24, 0]
        ("sndr", 1.11 / 4 + 3.14 / SUM_W),
        ("switch-dr", 1.11 / 4 + 0.9 / 4),  # tau = 2 drops the row with w = 3.2
    ],
)
def test_step_estimators_match_hand_computed(name, expected):
    assert _estimates()[name].value == pytest.approx(expected, rel=1e-12)


def test_switch_dr_clipping_moves_with_tau():
    # tau = 1.5 also drops w = 2: only the residual -0.1 (w = 1) and 0 (w = 4/3) are kept.
    assert _estimates(tau=1.5)["switch-dr"].value == pytest.approx(1.11 / 4 - 0.1 / 4)
    # tau above every weight: Switch-DR is DR; tau below every weight: Switch-DR is DM.
    assert _estimates(tau=10.0)["switch-dr"].value == pytest.approx(_estimates()["dr"].value)
    assert _estimates(tau=0.5)["switch-dr"].value == pytest.approx(_estimates()["dm"].value)


def test_ess_and_intervals():
    est = _estimates()
    w = np.array([2, 1, 3.2, 4 / 3])
    assert est["ipw"].ess == pytest.approx(SUM_W**2 / (w @ w))
    assert est["dm"].ess == 4
    assert est["switch-dr"].ess == pytest.approx(effective_sample_size(np.array([2, 1, 0, 4 / 3])))
    for e in est.values():
        assert e.ci95[0] <= e.ci95[1]
    again = _estimates()
    assert {k: v.ci95 for k, v in est.items()} == {k: v.ci95 for k, v in again.items()}


def test_degenerate_flag():
    config = EstimatorConfig(n_bootstrap=10, min_ess_fraction=0.9)
    est = estimate_step(_log(), ("ipw", "dm"), config=config, rewards_model=Q)
    assert est["ipw"].degenerate  # ESS 3.33 < 0.9 * 4
    assert not est["dm"].degenerate


def test_all_equal_policy_returns_logged_mean():
    """pi_e = pi_b (deterministic): every estimator must return the logged mean reward."""
    rng = np.random.default_rng(0)
    n = 24
    action = np.arange(n) % 3
    reward = 0.2 + 0.3 * action  # linear in the action feature: the ridge model fits it exactly
    log = StepLog(
        reward=reward,
        pscore=np.ones(n),
        action=action,
        eval_dist=np.eye(3)[action],
        context=rng.normal(size=(n, 2)),
        action_features=np.arange(3.0)[:, None],
    )
    est = estimate_step(log, config=EstimatorConfig(n_bootstrap=20, ridge=0.0))
    for name, e in est.items():
        assert e.value == pytest.approx(reward.mean(), abs=1e-9), name


def test_all_equal_stochastic_policy_ips_is_the_logged_mean():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=50)
    action = np.array([rng.choice(4, p=p) for p in probs])
    log = _log(
        reward=rng.random(50),
        pscore=probs[np.arange(50), action],
        action=action,
        eval_dist=probs,
        context=np.zeros((50, 1)),
        action_features=np.eye(4),
    )
    est = estimate_step(log, ("ipw", "snipw"), EstimatorConfig(n_bootstrap=10))
    assert est["ipw"].value == pytest.approx(log.reward.mean())
    assert est["snipw"].value == pytest.approx(log.reward.mean())


def test_cross_fitting_predicts_each_row_from_the_other_folds():
    # One-hot actions, no context, no penalty: the prediction is the other folds' action mean.
    n = 40
    rng = np.random.default_rng(3)
    action = rng.integers(0, 2, n)
    reward = rng.random(n)
    q = cross_fit_rewards(np.zeros((n, 0)), np.eye(2), action, reward, n_folds=4, ridge=0.0)
    folds = fold_ids(n, 4, 0)
    for i in (0, 7, 19):
        other = (folds != folds[i]) & (action == 1)
        assert q[i, 1] == pytest.approx(reward[other].mean())


def test_fold_ids_are_seeded_and_balanced():
    a, b = fold_ids(10, 3, seed=1), fold_ids(10, 3, seed=1)
    assert np.array_equal(a, b)
    assert sorted(np.bincount(a)) == [3, 3, 4]
    assert not np.array_equal(a, fold_ids(10, 3, seed=2))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pscore": np.array([0.5, 0.0, 0.25, 0.75])}, "pscore must be a probability"),
        ({"pscore": np.array([0.5, np.nan, 0.25, 0.75])}, "pscore must be a probability"),
        ({"action": np.array([0, 2, 1, 0])}, "action must be in"),
        ({"eval_dist": EVAL * 0.5}, "probability distribution"),
        ({"reward": REWARD[:3]}, "rows"),
    ],
)
def test_bad_logs_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        _log(**overrides)


def test_zero_propensity_actions_the_policy_wants():
    with pytest.raises(SupportError, match="behaviour propensity 0"):
        _log(pscore=np.array([1.0, 0.5, 0.25, 0.75]), eval_dist=np.full((4, 2), 0.5))


def test_unknown_estimator():
    with pytest.raises(ValueError, match="unknown step estimator 'foo'; known: ipw"):
        estimate_step(_log(), ("foo",))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_bootstrap", 5, "n_bootstrap"),
        ("n_folds", 1, "n_folds"),
        ("switch_tau", 0.0, "switch_tau"),
        ("gamma", 0.0, "gamma"),
    ],
)
def test_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        EstimatorConfig(**{field: value})
