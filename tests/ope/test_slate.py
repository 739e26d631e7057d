"""Slate estimators against hand-computed values on two slates of two positions."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.ope import EstimatorConfig, SlateLog, estimate_slate

# Sequential ratios e/b: slate 0 [2, .5] (prefix weights [2, 1]), slate 1 [1, 3] (prefix [1, 3]).
LOG = SlateLog(
    rewards=np.array([[1.0, 1.0], [1.0, 0.0]]),
    behavior_seq=np.array([[0.5, 0.5], [0.25, 0.25]]),
    eval_seq=np.array([[1.0, 0.25], [0.25, 0.75]]),
    behavior_marginal=np.array([[0.5, 0.5], [0.5, 0.5]]),
    eval_marginal=np.array([[1.0, 0.0], [0.25, 1.0]]),
)
CONFIG = EstimatorConfig(n_bootstrap=20)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sips", (1 * 2 + 3 * 1) / 2),  # whole-slate weight times the slate reward
        ("rips", ((2 * 1 + 1 * 1) + (1 * 1 + 3 * 0)) / 2),  # prefix weight per position
        ("iips", ((2 * 1 + 0 * 1) + (0.5 * 1 + 2 * 0)) / 2),  # marginal weight per position
    ],
)
def test_slate_estimators_match_hand_computed(name, expected):
    assert estimate_slate(LOG, (name,), CONFIG)[name].value == pytest.approx(expected)


def test_slate_all_equal_policy_returns_logged_mean():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.1, 1.0, size=(30, 3))
    rewards = (rng.random((30, 3)) < 0.3).astype(float)
    log = SlateLog(rewards, probs, probs, probs, probs)
    for name, e in estimate_slate(log, ("sips", "iips", "rips"), CONFIG).items():
        assert e.value == pytest.approx(rewards.sum(axis=1).mean()), name
        assert e.ess == pytest.approx(30)


def test_iips_needs_marginals():
    log = SlateLog(LOG.rewards, LOG.behavior_seq, LOG.eval_seq)
    with pytest.raises(ValueError, match="iips needs marginal"):
        estimate_slate(log, ("iips",), CONFIG)


def test_bad_slate_logs():
    with pytest.raises(ValueError, match=r"behavior_seq must hold probabilities in \(0, 1\]"):
        SlateLog(LOG.rewards, np.zeros((2, 2)), LOG.eval_seq)
    with pytest.raises(ValueError, match="eval_seq must have shape"):
        SlateLog(LOG.rewards, LOG.behavior_seq, LOG.eval_seq[:, :1])
    with pytest.raises(ValueError, match="unknown slate estimator"):
        estimate_slate(LOG, ("ipw",), CONFIG)
