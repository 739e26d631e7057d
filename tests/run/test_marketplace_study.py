"""The exploitability estimate (``rayrec.run.marketplace_study.exploitability``) on scripted setups.

The best-response training is replaced by a fake ``train_market`` that returns scripted modules,
so the tests check, without Ray, what the estimate does with a response: the evaluation of both
strategies on the same seeded episodes, the per-agent gain, which roles learn and which stay
frozen, stopping the algorithm, and the errors raised before any training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rayrec.envs.marketplace import MARKETPLACE_ENV_ID
from rayrec.run import marketplace_study
from rayrec.run.marketplace_study import exploitability
from rayrec.specs import EnvSpec

PERIODS, PRODUCTION_COST = 4, 0.5
SMALL = {
    "num_users": 8,
    "num_periods": PERIODS,
    "num_background_items": 30,
    "num_creators": 2,
    "creator_slots": 2,
    "num_advertisers": 1,
    "num_strategic_users": 2,
    "production_cost": PRODUCTION_COST,
}
PLATFORM_STATE = {"frozen": "platform weights"}


class _Fixed:
    """A module whose greedy action is ``choice`` (one index per sub-action)."""

    def __init__(self, *choice: int, sizes: tuple[int, ...]) -> None:
        parts = [np.eye(n, dtype=np.float32)[c] * 5.0 for c, n in zip(choice, sizes, strict=True)]
        self.logits = torch.from_numpy(np.concatenate(parts))

    def forward_inference(self, batch: dict) -> dict:
        return {Columns.ACTION_DIST_INPUTS: self.logits[None]}


class _Algo:
    def __init__(self, modules: dict[str, Any]) -> None:
        self.modules, self.stopped = modules, False

    def get_module(self, module_id: str) -> Any:
        return self.modules[module_id]

    def stop(self) -> None:
        self.stopped = True


def _spec(**changes: Any) -> EnvSpec:
    return EnvSpec.from_dict({"id": MARKETPLACE_ENV_ID, "config": {**SMALL, **changes}})


def _fake_training(monkeypatch: pytest.MonkeyPatch, role: str, response: Any) -> list[dict]:
    """Replace the best-response training: the role's module is ``response``; record the calls."""
    calls: list[dict] = []
    # The frozen platform: appeal level 0, quality level 2, one ad position (MultiDiscrete 3, 3, 3).
    platform = _Fixed(0, 2, 1, sizes=(3, 3, 3))

    def train_market(env_spec, policy, iterations, seed=0, frozen=None):
        algo = _Algo({"platform": platform, role: response})
        calls.append(
            {"env_spec": env_spec, "iterations": iterations, "frozen": frozen, "algo": algo}
        )
        return algo, {"iterations": iterations, "env_steps": 0, "wall_time_s": 0.0}

    monkeypatch.setattr(marketplace_study, "train_market", train_market)
    return calls


def test_a_dominated_scripted_strategy_shows_the_hand_computed_gain(monkeypatch) -> None:
    # Creators paid nothing per click: a creator's reward is -production_cost * effort per period.
    # The scripted creator always makes effort 1: return -0.5 * 4 = -2.0. Effort 0 (any topic)
    # returns 0, so the best response gains exactly 0.5 * 4 = 2.0 per creator.
    spec = _spec(creator_click_value=0.0)
    topics, efforts = spec.config.num_topics, spec.config.effort_levels
    calls = _fake_training(monkeypatch, "creator", _Fixed(0, 0, sizes=(topics, efforts)))
    result = exploitability(spec, None, PLATFORM_STATE, "creator", iterations=3, episodes=3)
    assert result["scripted_return_per_agent"] == pytest.approx(-PRODUCTION_COST * PERIODS)
    assert result["best_response_return_per_agent"] == pytest.approx(0.0)
    assert result["gain_per_agent"] == pytest.approx(PRODUCTION_COST * PERIODS)
    # The role learns next to the platform, whose learned strategy stays frozen; the algorithm
    # is stopped after the evaluation.
    (call,) = calls
    assert call["env_spec"].config.learning_roles == ("platform", "creator")
    assert call["frozen"] == {"platform": PLATFORM_STATE}
    assert call["iterations"] == 3 and call["algo"].stopped


def test_a_response_that_plays_the_current_strategy_gains_nothing(monkeypatch) -> None:
    # Strategic users' scripted play is the middle click threshold; a response playing it too gets
    # the same noisy returns on the same seeded episodes: the gain is 0, not evaluation noise.
    spec = _spec()
    levels = spec.config.pickiness_levels
    _fake_training(monkeypatch, "user", _Fixed(levels // 2, sizes=(levels + 1,)))
    result = exploitability(spec, None, PLATFORM_STATE, "user", iterations=1, episodes=4)
    assert result["scripted_return_per_agent"] != 0.0
    assert result["gain_per_agent"] == 0.0
    assert result["others_under_best_response"] == result["others_under_scripted"]


def test_a_response_that_leaves_changes_the_users_return(monkeypatch) -> None:
    # The last user action leaves: a different strategy, so the gain is not identically zero.
    spec = _spec()
    levels = spec.config.pickiness_levels
    _fake_training(monkeypatch, "user", _Fixed(levels, sizes=(levels + 1,)))
    result = exploitability(spec, None, PLATFORM_STATE, "user", iterations=1, episodes=4)
    assert result["gain_per_agent"] != 0.0
    assert result["gain_per_agent"] == pytest.approx(
        result["best_response_return_per_agent"] - result["scripted_return_per_agent"]
    )


def test_the_algorithm_is_stopped_when_the_evaluation_fails(monkeypatch) -> None:
    class Broken:
        def forward_inference(self, batch: dict) -> dict:
            raise RuntimeError("broken module")

    calls = _fake_training(monkeypatch, "creator", Broken())
    with pytest.raises(RuntimeError, match="broken module"):
        exploitability(_spec(), None, PLATFORM_STATE, "creator", iterations=1, episodes=1)
    assert calls[0]["algo"].stopped


@pytest.mark.parametrize(
    ("role", "changes", "match"),
    [
        pytest.param("platform", {}, "must be one of creator, advertiser, user", id="platform"),
        pytest.param("buyer", {}, "must be one of creator, advertiser, user", id="unknown"),
        pytest.param("advertiser", {"num_advertisers": 0}, "num_advertisers is 0", id="no-ads"),
        pytest.param("user", {"num_strategic_users": 0}, "num_strategic_users is 0", id="no-users"),
    ],
)
def test_a_role_that_cannot_respond_is_refused_before_training(
    monkeypatch, role: str, changes: dict, match: str
) -> None:
    calls = _fake_training(monkeypatch, role, None)
    with pytest.raises(ValueError, match=match):
        exploitability(_spec(**changes), None, PLATFORM_STATE, role, iterations=1)
    assert calls == []
