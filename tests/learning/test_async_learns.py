"""APPO (the asynchronous A3C family, V-trace) on the default session env beats greedy-myopic.

``greedy`` peeks at the true click probabilities: the strongest myopic policy. APPO sees only the
observation, samples asynchronously from two env runners into a learner process of its own, and
must beat greedy on the long-term return with non-overlapping 95% confidence intervals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.keys import Metrics
from rayrec.runner import RunOptions, train
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = 30  # about 23k env steps each on 2 CPUs


def test_appo_beats_greedy_myopic(ray_session, tmp_path):
    options = RunOptions(
        out=tmp_path / "appo",
        seed=0,
        iterations=ITERATIONS,
        eval_users=2000,
        baselines=("random", "greedy"),
        checkpoint_every=ITERATIONS,
    )
    result = train(
        EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml")),
        PolicySpec.from_dict(load_yaml(ROOT / "policies" / "appo.yaml"), "appo"),
        options,
        quiet=True,
    )
    mine, greedy = result["policy"], result["baselines"]["greedy"]
    low = mine[Metrics.RETURN_MEAN] - mine[Metrics.RETURN_CI95]
    assert low > greedy[Metrics.RETURN_MEAN] + greedy[Metrics.RETURN_CI95], (mine, greedy)
    # Retention is where the gain comes from.
    assert mine[Metrics.SESSIONS_PER_USER] > greedy[Metrics.SESSIONS_PER_USER], (mine, greedy)
