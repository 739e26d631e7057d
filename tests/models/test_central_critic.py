"""The centralised-critic module: the actor reads the local view only, the critic everything."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rayrec.models.central_critic import CentralCriticPPOModule


@pytest.mark.parametrize(
    "action_space", [gym.spaces.Discrete(4), gym.spaces.MultiDiscrete([3, 3, 2])]
)
def test_actor_ignores_global_state_critic_reads_it(action_space):
    obs_space = gym.spaces.Box(-10, 10, (7,), np.float32)
    module = CentralCriticPPOModule(
        observation_space=obs_space,
        action_space=action_space,
        model_config={"local_dim": 3, "hidden": 16},
    )
    obs = torch.randn(5, 7)
    other = obs.clone()
    other[:, 3:] += 1.0
    a = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    b = module.forward_inference({Columns.OBS: other})[Columns.ACTION_DIST_INPUTS]
    torch.testing.assert_close(a, b)
    expected = action_space.n if hasattr(action_space, "n") else int(sum(action_space.nvec))
    assert a.shape == (5, expected)
    values = module.compute_values({Columns.OBS: obs})
    assert values.shape == (5,)
    assert not torch.allclose(values, module.compute_values({Columns.OBS: other}))
    dist = module.get_train_action_dist_cls().from_logits(a)
    assert dist.sample().shape[0] == 5


def test_local_dim_out_of_range_is_named():
    with pytest.raises(ValueError, match="local_dim"):
        CentralCriticPPOModule(
            observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
            action_space=gym.spaces.Discrete(2),
            model_config={"local_dim": 9},
        )
