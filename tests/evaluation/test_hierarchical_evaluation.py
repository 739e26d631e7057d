"""Evaluation of a two-level agent: the flat return of each user, whatever the batching."""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.contracts.keys import Metrics
from rayrec.contracts.observation import Obs
from rayrec.envs.hierarchical import HIGH, LOW, HierarchicalSessionEnv, HierarchyConfig, HierInfo
from rayrec.evaluation.hierarchical import evaluate_hierarchical
from rayrec.sim import SimConfig

CONFIG = SimConfig(num_items=300, num_topics=4, num_candidates=8, embed_dim=4, history_len=4)
HIERARCHY = HierarchyConfig(option_budget=3)


def last_valid(level: str, obs: dict[str, np.ndarray]) -> np.ndarray:
    """The last available option / candidate of every row."""
    mask = obs[Obs.ACTION_MASK].astype(bool)
    return mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)


def _flat_returns_one_by_one(users: int, seed: int) -> np.ndarray:
    env = HierarchicalSessionEnv({**CONFIG.to_dict(), "hierarchy": HIERARCHY})
    out = np.zeros(users)
    for i in range(users):
        obs, _ = env.reset(seed=seed + i)
        while True:
            level = next(iter(obs))
            action = last_valid(level, {k: v[None] for k, v in obs[level].items()})[0]
            obs, _, terms, truncs, infos = env.step({level: action})
            if level == LOW:
                out[i] += (infos.get(LOW) or infos[HIGH])[HierInfo.FLAT_REWARD]
            if terms["__all__"] or truncs["__all__"]:
                break
    return out


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_the_return_is_the_flat_return_of_the_same_users(batch_size: int) -> None:
    m = evaluate_hierarchical(last_valid, CONFIG, HIERARCHY, users=7, seed=5, batch_size=batch_size)
    want = _flat_returns_one_by_one(7, 5)
    assert m[Metrics.USERS] == 7
    assert m[Metrics.RETURN_MEAN] == pytest.approx(want.mean())
    assert set(Metrics.REQUIRED) <= set(m)


def test_a_different_actor_gets_a_different_result() -> None:
    def first_valid(level: str, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.argmax(obs[Obs.ACTION_MASK], axis=1)

    a = evaluate_hierarchical(last_valid, CONFIG, HIERARCHY, users=20, seed=0)
    b = evaluate_hierarchical(first_valid, CONFIG, HIERARCHY, users=20, seed=0)
    assert a[Metrics.RETURN_MEAN] != b[Metrics.RETURN_MEAN]


def test_one_user_is_refused() -> None:
    with pytest.raises(ValueError, match="users"):
        evaluate_hierarchical(last_valid, CONFIG, HIERARCHY, users=1)
