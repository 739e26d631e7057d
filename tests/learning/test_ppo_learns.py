"""PPO on the default session env: it beats random, most-popular and greedy-myopic, and reaches the heuristic.

``greedy`` peeks at the latent user state: it shows the candidate with the highest true click
probability, the strongest myopic policy. PPO sees only the observation and must beat it on the
long-term return with non-overlapping 95% confidence intervals: the central claim of RL over
bandits.

The comparison with PPO's myopic twin (the same preset with ``training.gamma=0``, a contextual
bandit with the same information and budget) trains a second model, so it is a benchmark, not a
test: ``benchmarks/compare_algorithms.py`` with ``--set training.gamma=0`` (docs/results.md).

``heuristic`` is the hand-written scorer over the same observation (issue #22): before the relation
head and the separate critic, PPO lost to it by 10 (23.0 against 33.5); now it must reach it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.contracts.keys import Metrics
from rayrec.run import RunOptions, selection_options, train
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]
# x 4096 env steps. At 100 iterations two runs of seed 0 (an older preset) scored 32.23 +- 1.14 and
# 33.48 +- 1.17: the heuristic check below failed once. At 480 s (about 230 iterations; the preset
# now trains 400) seeds 0, 1 and 2 scored 34.52, 33.98 and 35.15 (docs/results.md). At 120
# iterations (the best of six checks on 500 validation users, 2026-12-07): 34.08 +- 1.14 against
# the heuristic's 33.51 +- 1.10 and greedy's 15.88 +- 0.65, at 3/5 of the old 200's cost.
ITERATIONS = 120
USERS = 2000


@pytest.fixture(scope="module")
def ppo(ray_session, tmp_path_factory) -> dict:
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / "ppo.yaml"))
    options = RunOptions(
        out=tmp_path_factory.mktemp("runs") / "ppo",
        seed=0,
        iterations=ITERATIONS,
        eval_users=USERS,
        baselines=("random", "popular", "greedy", "heuristic"),
        checkpoint_every=ITERATIONS,
        **selection_options(policy),
    )
    return train(
        EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml")), policy, options, quiet=True
    )


def _low(m: dict) -> float:
    return m[Metrics.RETURN_MEAN] - m[Metrics.RETURN_CI95]


def _high(m: dict) -> float:
    return m[Metrics.RETURN_MEAN] + m[Metrics.RETURN_CI95]


@pytest.mark.parametrize("baseline", ["random", "popular", "greedy"])
def test_ppo_beats(ppo: dict, baseline: str) -> None:
    base = ppo["baselines"][baseline]
    assert _low(ppo["policy"]) > _high(base), (ppo["policy"], base)


def test_ppo_reaches_the_hand_written_heuristic(ppo: dict) -> None:
    """Not significantly worse than the heuristic that reads the same observation: the upper end
    of PPO's 95% CI reaches the heuristic's mean (beating it is docs/results.md's claim, at the
    preset's full budget)."""
    heuristic = ppo["baselines"]["heuristic"]
    assert _high(ppo["policy"]) >= heuristic[Metrics.RETURN_MEAN], (ppo["policy"], heuristic)
