"""APPO (the asynchronous A3C family, V-trace) on the default session env beats greedy-myopic.

``greedy`` peeks at the true click probabilities: the strongest myopic policy. APPO sees only the
observation and must beat it on the long-term return with non-overlapping 95% confidence
intervals, with more sessions per user (the gain is retention). PPO's test, with its myopic twin,
is tests/learning/test_ppo_learns.py.

APPO: two env runners sample asynchronously into a learner process of its own; 30 iterations are
about 550k env steps on 2 CPUs (measured 20.97 +- 1.12 against greedy's 15.88 +- 0.65).

Ape-X DQN: 450 iterations (about 470k env steps, 8-11 minutes on 2 CPUs) with its preset's
checkpoint selection on 500 validation users. With the preset's lr 0.0005, seeds 0, 1 and 2
scored 19.24 +- 1.09, 21.09 +- 1.18 and 21.95 +- 1.18 against greedy's 15.88 +- 0.65. (With lr
0.001 and 300 iterations it passed on only two of four runs: the claim did not hold reliably.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.contracts.keys import Metrics
from rayrec.run import RunOptions, selection_options, train
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("preset", "iterations"), [("appo", 30), ("apex_dqn", 450)])
def test_beats_greedy_myopic(ray_session, tmp_path, preset: str, iterations: int) -> None:
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / f"{preset}.yaml"), preset)
    options = RunOptions(
        out=tmp_path / preset,
        seed=0,
        iterations=iterations,
        eval_users=2000,
        baselines=("random", "greedy"),
        checkpoint_every=iterations,
        **selection_options(policy),
    )
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml"))
    result = train(env, policy, options, quiet=True)
    mine, greedy = result["policy"], result["baselines"]["greedy"]
    low = mine[Metrics.RETURN_MEAN] - mine[Metrics.RETURN_CI95]
    assert low > greedy[Metrics.RETURN_MEAN] + greedy[Metrics.RETURN_CI95], (mine, greedy)
    assert mine[Metrics.SESSIONS_PER_USER] > greedy[Metrics.SESSIONS_PER_USER], (mine, greedy)
