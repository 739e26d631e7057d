"""The two-level (options) agent trained by ``rayrec.runner.train`` on the niche-interest scenario.

``policies/hierarchical_ppo.yaml`` on ``envs/hierarchical.yaml`` for a fixed number of PPO
iterations (seeded; about three minutes on 2 shared CPUs), evaluated on the flat return (the
simulator reward only) over 2000 users against the baselines on the same scenario.

What holds: it beats ``random`` and ``popular`` with non-overlapping 95% CIs. What does not: it
does not beat ``greedy``, which *peeks* at the true click probabilities
(``rayrec/evaluation/baselines.py``); that test is a strict xfail with the measured numbers, so it
fails loudly the day the learning gets there (and then the xfail must go).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.keys import Metrics
from rayrec.runner import RunOptions, train
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.learning

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = 20  # x 4096 env steps (about 3,300 simulator steps each)


@pytest.fixture(scope="module")
def results(ray_session, tmp_path_factory) -> dict:
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "hierarchical.yaml"))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / "hierarchical_ppo.yaml"))
    options = RunOptions(
        out=tmp_path_factory.mktemp("runs") / "hier",
        seed=0,
        iterations=ITERATIONS,
        eval_users=2000,
        baselines=("random", "popular", "greedy"),
        checkpoint_every=ITERATIONS,
    )
    return train(env, policy, options, quiet=True)


def _interval(m: dict) -> tuple[float, float]:
    mean, ci = m[Metrics.RETURN_MEAN], m[Metrics.RETURN_CI95]
    return mean - ci, mean + ci


def _summary(results: dict) -> dict[str, float]:
    out = {"hierarchical": results["policy"][Metrics.RETURN_MEAN]}
    out.update({k: m[Metrics.RETURN_MEAN] for k, m in results["baselines"].items()})
    return out


@pytest.mark.parametrize("baseline", ["random", "popular"])
def test_the_hierarchical_agent_beats(results: dict, baseline: str) -> None:
    low, _ = _interval(results["policy"])
    _, high = _interval(results["baselines"][baseline])
    assert low > high, _summary(results)


@pytest.mark.xfail(
    strict=True,
    reason="measured at 20 iterations (66,347 simulator steps, 205 s on 2 shared CPUs, 2000 "
    "users): 6.46 +- 0.16 against greedy's 10.42 +- 0.25 on the flat return (random 4.82 +- 0.12, "
    "popular 3.98 +- 0.13); greedy peeks at the true click probabilities",
)
def test_the_hierarchical_agent_beats_the_peeking_greedy(results: dict) -> None:
    low, _ = _interval(results["policy"])
    _, high = _interval(results["baselines"]["greedy"])
    assert low > high, _summary(results)
