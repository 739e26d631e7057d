"""One observation builder: the env and the Serve app build identical arrays for one user state."""

from __future__ import annotations

import numpy as np

from rayrec.contracts.observation import Obs
from rayrec.envs.observation import observe
from rayrec.serve.policy import ServedPolicy
from rayrec.sim import SessionSimulator, SimConfig
from rayrec.specs import EnvSpec


def test_served_observation_equals_the_envs_for_the_same_user_state():
    config = SimConfig(num_items=300, num_candidates=10, history_len=6, world_seed=3)
    sim = SessionSimulator(config, num_users=8, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5):  # some history, responses and context to compare
        sim.step(rng.integers(0, config.num_candidates, size=8))
    env_obs = observe(sim)
    valid = env_obs[Obs.ACTION_MASK].astype(bool)
    served = ServedPolicy(
        version="v",
        checkpoint=None,
        env=EnvSpec(id="rayrec/Session-v0", config=config),
        module=None,
        algorithm="PPO",
        catalog=sim.catalog,
        retriever=sim.retriever,
    )
    # A request names the candidates it may show: the valid ones of each user, in order.
    obs = served.observation(
        sim.history_items.copy(),
        sim.history_responses.copy(),
        sim.context(),
        [row[ok] for row, ok in zip(sim.candidates, valid, strict=True)],
    )
    for user in range(8):
        m = int(valid[user].sum())
        assert obs[Obs.ACTION_MASK][user, :m].all() and not obs[Obs.ACTION_MASK][user, m:].any()
        for key in [v for k, v in vars(Obs).items() if k.isupper()]:
            mine, theirs = obs[key][user], env_obs[key][user]
            if key.startswith("candidate") or key == Obs.ACTION_MASK:
                mine, theirs = mine[:m], theirs[valid[user]]
            assert mine.dtype == theirs.dtype, key
            np.testing.assert_array_equal(mine, theirs, err_msg=key)
