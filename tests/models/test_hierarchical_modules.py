"""The two levels' RLModules on real HierarchicalSessionEnv observations: shapes, the high level's
option mask, and the low level's dependence on the active option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rayrec.contracts.observation import Obs
from rayrec.envs.hierarchical import HIGH, LOW, HierarchicalSessionEnv, HierObs
from rayrec.models.hierarchical import OptionCandidateModule, OptionPolicyModule
from rayrec.models.towers import MASKED_LOGIT

SMALL = {"num_items": 300, "num_topics": 5, "num_candidates": 8, "history_len": 6, "embed_dim": 8}


def _observations(level: str, n: int = 8) -> tuple[HierarchicalSessionEnv, dict]:
    """``n`` observations of ``level`` from one env played with the first valid actions."""
    env = HierarchicalSessionEnv({**SMALL, "seed": 0})
    obs, _ = env.reset(seed=0)
    seen = []
    while len(seen) < n:
        agent = next(iter(obs))
        if agent == level:
            seen.append(obs[agent])
        action = int(np.flatnonzero(obs[agent][Obs.ACTION_MASK])[0])
        obs, _, terms, truncs, _ = env.step({agent: action})
        if terms["__all__"] or truncs["__all__"]:
            obs, _ = env.reset()
    return env, {k: torch.from_numpy(np.stack([o[k] for o in seen])) for k in seen[0]}


def _module(cls: type, env: HierarchicalSessionEnv, level: str, **model):
    return cls(
        observation_space=env.observation_spaces[level],
        action_space=env.action_spaces[level],
        model_config={"hidden": 16, **model},
    )


@pytest.mark.parametrize("encoder", ["none", "mean", "gated", "gru", "attention"])
def test_high_level_logits_cover_the_options_and_respect_the_mask(encoder: str) -> None:
    env, obs = _observations(HIGH)
    obs[Obs.ACTION_MASK][:, 0] = 0  # make "explore" unavailable everywhere
    module = _module(OptionPolicyModule, env, HIGH, encoder=encoder)
    out = module.forward_train({Columns.OBS: obs})
    logits = out[Columns.ACTION_DIST_INPUTS]
    assert logits.shape == (8, len(env.options))
    masked = obs[Obs.ACTION_MASK] == 0
    assert torch.all(logits[masked] == MASKED_LOGIT)
    assert torch.all(logits[~masked] > MASKED_LOGIT / 2)
    values = module.compute_values({Columns.OBS: obs}, out[Columns.EMBEDDINGS])
    assert values.shape == (8,) and torch.isfinite(values).all()


def test_low_level_scores_depend_on_the_active_option() -> None:
    torch.manual_seed(0)
    env, obs = _observations(LOW)
    module = _module(OptionCandidateModule, env, LOW)
    logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert logits.shape == (8, SMALL["num_candidates"])
    invalid = obs[Obs.ACTION_MASK] == 0
    assert torch.all(logits[invalid] == MASKED_LOGIT)
    other = dict(obs)
    other[HierObs.OPTION] = torch.roll(obs[HierObs.OPTION], 1, dims=-1)
    changed = module.forward_inference({Columns.OBS: other})[Columns.ACTION_DIST_INPUTS]
    assert not torch.allclose(logits[~invalid], changed[~invalid])
    assert torch.all(changed[invalid] == MASKED_LOGIT)
    values = module.compute_values({Columns.OBS: obs})
    assert values.shape == (8,) and torch.isfinite(values).all()


def test_a_module_refuses_the_wrong_action_space() -> None:
    import gymnasium as gym

    env, _ = _observations(HIGH, 1)
    with pytest.raises(ValueError, match="Discrete action space"):
        OptionPolicyModule(
            observation_space=env.observation_spaces[HIGH],
            action_space=gym.spaces.Box(0.0, 1.0, (2,)),
            model_config={},
        )
