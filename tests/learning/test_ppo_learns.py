"""PPO on the default session env beats random and most-popular on long-term return."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.keys import Metrics
from rayrec.runner import RunOptions, train
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]


def test_ppo_beats_random_and_popular(ray_session, tmp_path):
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml"))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / "ppo.yaml"))
    options = RunOptions(
        out=tmp_path / "ppo",
        seed=0,
        iterations=40,
        eval_users=1000,
        baselines=("random", "popular"),
        checkpoint_every=40,
    )
    results = train(env, policy, options, quiet=True)
    mine = results["policy"]
    low = mine[Metrics.RETURN_MEAN] - mine[Metrics.RETURN_CI95]
    for name, base in results["baselines"].items():
        high = base[Metrics.RETURN_MEAN] + base[Metrics.RETURN_CI95]
        assert low > high, (name, mine[Metrics.RETURN_MEAN], base[Metrics.RETURN_MEAN])
