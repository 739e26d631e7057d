"""APPO (the asynchronous A3C family, V-trace) and Ape-X DQN on the default session env beat
greedy-myopic.

``greedy`` peeks at the true click probabilities: the strongest myopic policy. Each preset sees
only the observation and must beat it on the long-term return with non-overlapping 95% confidence
intervals, with more sessions per user (the gain is retention). PPO's test, with its myopic twin,
is tests/learning/test_ppo_learns.py.

- APPO: two env runners sample asynchronously into a learner process of its own; 30 iterations
  are about 700k env steps on 2 CPUs.
- Ape-X DQN: two env runners on the epsilon ladder, prioritized replay, 3-step double dueling Q;
  300 iterations are about 320k env steps (DQN iterations are short).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.keys import Metrics
from rayrec.runner import RunOptions, train
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("preset", "iterations"), [("appo", 30), ("apex_dqn", 300)])
def test_beats_greedy_myopic(ray_session, tmp_path, preset: str, iterations: int) -> None:
    options = RunOptions(
        out=tmp_path / preset,
        seed=0,
        iterations=iterations,
        eval_users=2000,
        baselines=("random", "greedy"),
        checkpoint_every=iterations,
    )
    result = train(
        EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml")),
        PolicySpec.from_dict(load_yaml(ROOT / "policies" / f"{preset}.yaml"), preset),
        options,
        quiet=True,
    )
    mine, greedy = result["policy"], result["baselines"]["greedy"]
    low = mine[Metrics.RETURN_MEAN] - mine[Metrics.RETURN_CI95]
    assert low > greedy[Metrics.RETURN_MEAN] + greedy[Metrics.RETURN_CI95], (mine, greedy)
    assert mine[Metrics.SESSIONS_PER_USER] > greedy[Metrics.SESSIONS_PER_USER], (mine, greedy)
