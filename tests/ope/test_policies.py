"""The simulator adapter's logging path: ``collect_with_step_truth`` plays the behaviour through
``rayrec.evaluation.collect.run_behavior``, the same loop as ``rayrec collect``."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.data.logs import read_log
from rayrec.data.schema import Col
from rayrec.evaluation.collect import collect
from rayrec.ope.policies import collect_with_step_truth, make_eval_policy
from rayrec.specs import EnvSpec, SpecError

SMALL = {"num_items": 300, "num_candidates": 6, "max_sessions": 2, "max_steps_per_session": 8}


def test_step_truth_logs_exactly_what_collect_logs(tmp_path):
    env = EnvSpec.from_dict({"config": SMALL})
    policies = {name: make_eval_policy(name, env.config) for name in ("random", "heuristic")}
    truth = collect_with_step_truth(env, "epsilon-ctr:0.3", 30, tmp_path / "truth", 4, policies)
    collect(env, "epsilon-ctr:0.3", users=30, out=tmp_path / "plain", seed=4)
    columns = [Col.EPISODE_ID, Col.T, Col.ACTION, Col.PROPENSITY, Col.REWARD]
    recorded = read_log(tmp_path / "truth", columns=columns)
    plain = read_log(tmp_path / "plain", columns=columns)
    for name in columns:
        assert np.array_equal(
            recorded.column(name).to_numpy(zero_copy_only=False),
            plain.column(name).to_numpy(zero_copy_only=False),
        ), name
    # Mean click probability of the policy's pick on the logged states (reward_click = 1).
    assert set(truth) == {"random", "heuristic"}
    for name, value in truth.items():
        assert 0 < value < 1, name


def test_step_truth_needs_single_items_and_a_click_reward(tmp_path):
    env = EnvSpec.from_dict({"config": {**SMALL, "reward_watch": 0.5}})
    with pytest.raises(SpecError, match="click-only reward"):
        collect_with_step_truth(env, "random", 10, tmp_path / "x", 0, {})
