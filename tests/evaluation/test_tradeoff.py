"""The long-term trade-off built into the simulator, measured on the default configuration.

Myopic greedy (highest true click probability) beats random on immediate clicks; the long-term
heuristic, which gives up clicks on unsatisfying items, beats greedy on the lifetime return.
The measured values are in docs/simulator.md ("The long-term trade-off").
"""

from __future__ import annotations

from typing import Any

import pytest

from rayrec.contracts.keys import Metrics
from rayrec.evaluation import evaluate, make_baseline
from rayrec.sim import SimConfig

USERS = 2000


@pytest.fixture(scope="module")
def metrics() -> dict[str, dict[str, Any]]:
    config = SimConfig()
    return {
        name: evaluate(make_baseline(name), config, users=USERS, seed=0)
        for name in ("random", "greedy", "longterm")
    }


def test_greedy_beats_random_on_immediate_click_rate(metrics: dict[str, dict[str, Any]]) -> None:
    greedy, random = metrics["greedy"], metrics["random"]
    assert greedy[Metrics.CLICK_RATE] > 1.5 * random[Metrics.CLICK_RATE]


def test_longterm_beats_greedy_on_return(metrics: dict[str, dict[str, Any]]) -> None:
    longterm, greedy = metrics["longterm"], metrics["greedy"]
    low = longterm[Metrics.RETURN_MEAN] - longterm[Metrics.RETURN_CI95]
    high = greedy[Metrics.RETURN_MEAN] + greedy[Metrics.RETURN_CI95]
    assert low > high, "95% confidence intervals overlap"
    assert longterm[Metrics.RETURN_MEAN] >= 1.3 * greedy[Metrics.RETURN_MEAN]


def test_greedy_clicks_more_often_but_longterm_keeps_users(
    metrics: dict[str, dict[str, Any]],
) -> None:
    longterm, greedy = metrics["longterm"], metrics["greedy"]
    assert greedy[Metrics.CLICK_RATE] > longterm[Metrics.CLICK_RATE]
    assert longterm[Metrics.SESSIONS_PER_USER] - longterm[Metrics.SESSIONS_CI95] > (
        greedy[Metrics.SESSIONS_PER_USER] + greedy[Metrics.SESSIONS_CI95]
    )
    assert longterm[Metrics.SESSION_LENGTH_MEAN] > greedy[Metrics.SESSION_LENGTH_MEAN]


def test_greedy_serves_clickbait_and_longterm_avoids_it(
    metrics: dict[str, dict[str, Any]],
) -> None:
    longterm, greedy, random = metrics["longterm"], metrics["greedy"], metrics["random"]
    assert greedy[Metrics.CLICKBAIT_SHARE] > random[Metrics.CLICKBAIT_SHARE]
    assert longterm[Metrics.CLICKBAIT_SHARE] < 0.5 * random[Metrics.CLICKBAIT_SHARE]
    assert longterm[Metrics.WATCH_MEAN] > greedy[Metrics.WATCH_MEAN]


def test_default_scenario_rewards_what_the_observation_shows() -> None:
    """On envs/session.yaml the long-term gain is larger than the oracle's edge from peeking.

    The non-peeking heuristic (history, CTR and watch estimates only) beats the peeking greedy
    with non-overlapping intervals: a learner that uses the observation well can beat the
    greedy-myopic oracle, which is what the learning tests ask of the RL presets.
    """
    from pathlib import Path

    from rayrec.specs import EnvSpec, load_yaml

    root = Path(__file__).resolve().parents[2]
    config = EnvSpec.from_dict(load_yaml(root / "envs" / "session.yaml")).config
    result = {
        name: evaluate(make_baseline(name), config, users=USERS, seed=0)
        for name in ("greedy", "heuristic", "longterm")
    }
    greedy, heuristic, longterm = result["greedy"], result["heuristic"], result["longterm"]
    low = heuristic[Metrics.RETURN_MEAN] - heuristic[Metrics.RETURN_CI95]
    assert low > greedy[Metrics.RETURN_MEAN] + greedy[Metrics.RETURN_CI95], result
    assert longterm[Metrics.RETURN_MEAN] > heuristic[Metrics.RETURN_MEAN], result
