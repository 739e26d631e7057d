"""A learned marketplace platform earns more than the scripted greedy one without hurting users.

PPO trains the platform against scripted creators and advertisers and simulator users; learned
and greedy platforms are evaluated on the same seeded episodes. The user-welfare floor is
configurable (``RAYREC_MARKET_USER_FLOOR``); by default it is the users' welfare under the greedy
platform.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rayrec.contracts.keys import MarketMetrics
from rayrec.run.marketplace_study import platform_study
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = 6
EPISODES = 20


def test_learned_platform_beats_greedy_and_keeps_user_welfare(ray_session):
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "marketplace.yaml"))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / "marketplace_ppo.yaml"))
    floor = os.environ.get("RAYREC_MARKET_USER_FLOOR")
    record, algo = platform_study(
        env,
        policy,
        ITERATIONS,
        EPISODES,
        seed=0,
        user_welfare_floor=None if floor is None else float(floor),
    )
    algo.stop()
    mine, greedy = record["learned_platform"], record["scripted_platform"]["greedy"]
    key = MarketMetrics.WELFARE_PLATFORM
    low = mine[key] - mine[key + "_ci95"]
    high = greedy[key] + greedy[key + "_ci95"]
    assert low > high, (mine[key], greedy[key])
    assert record["user_welfare_above_floor"], (
        mine[MarketMetrics.WELFARE_USERS],
        record["user_welfare_floor"],
    )
