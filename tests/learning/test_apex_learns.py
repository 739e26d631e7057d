"""Ape-X DQN on the default session env beats greedy-myopic.

``greedy`` peeks at the true click probabilities: the strongest myopic policy. The Ape-X preset
(two env runners on the epsilon ladder, prioritized replay, 3-step double dueling Q) sees only the
observation and must beat greedy on the long-term return with non-overlapping 95% confidence
intervals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.keys import Metrics
from rayrec.runner import RunOptions, train
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = 300  # about 1,000 env steps each: DQN iterations are short


def test_apex_dqn_beats_greedy_myopic(ray_session, tmp_path):
    options = RunOptions(
        out=tmp_path / "apex",
        seed=0,
        iterations=ITERATIONS,
        eval_users=2000,
        baselines=("random", "greedy"),
        checkpoint_every=ITERATIONS,
    )
    result = train(
        EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml")),
        PolicySpec.from_dict(load_yaml(ROOT / "policies" / "apex_dqn.yaml"), "apex_dqn"),
        options,
        quiet=True,
    )
    mine, greedy = result["policy"], result["baselines"]["greedy"]
    low = mine[Metrics.RETURN_MEAN] - mine[Metrics.RETURN_CI95]
    assert low > greedy[Metrics.RETURN_MEAN] + greedy[Metrics.RETURN_CI95], (mine, greedy)
    assert mine[Metrics.SESSIONS_PER_USER] > greedy[Metrics.SESSIONS_PER_USER], (mine, greedy)
