"""fast_unbatch returns exactly what RLlib's unbatch returns."""

from __future__ import annotations

import numpy as np
from ray.rllib.utils.spaces.space_utils import unbatch

from rayrec.algorithms.fast_paths import fast_unbatch
from rayrec.envs import SessionVectorEnv


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, dict):
            assert list(x) == list(y)
            for key in x:
                np.testing.assert_array_equal(x[key], y[key])
                assert x[key].dtype == y[key].dtype
        else:
            np.testing.assert_array_equal(x, y)


def test_dict_observations_unbatch_identically():
    env = SessionVectorEnv(num_envs=7, seed=0, num_items=300, num_topics=5, num_candidates=8)
    obs, _ = env.reset(seed=0)
    _same(fast_unbatch(obs), unbatch(obs))


def test_arrays_and_nested_structures_unbatch_identically():
    actions = np.arange(5)
    _same(fast_unbatch(actions), unbatch(actions))
    nested = {"a": np.ones((3, 2)), "b": (np.zeros(3), np.arange(3))}
    out, ref = fast_unbatch(nested), unbatch(nested)
    assert len(out) == len(ref) == 3
    for x, y in zip(out, ref, strict=True):
        np.testing.assert_array_equal(x["a"], y["a"])
        np.testing.assert_array_equal(x["b"][1], y["b"][1])
