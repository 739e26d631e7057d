"""Gymnasium environments over the batched simulator.

``SessionVectorEnv`` is a ``gymnasium.vector.VectorEnv`` in which each sub-env is one user's lifetime;
finished users are replaced by new ones (next-step autoreset, the mode RLlib's EnvRunner expects).
``SessionEnv`` is the single-user ``gymnasium.Env`` view of the same simulator.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rayrec.envs.observation import action_space, observation_space, observe
from rayrec.sim import SessionSimulator, SimConfig

__all__ = ["SessionEnv", "SessionVectorEnv"]


def _first_seed(env: Any, seed: int | None) -> int | None:
    """The seed of this reset: the constructor's seed on the first reset without one."""
    if seed is None and not env._has_reset:
        seed = env._default_seed
    env._has_reset = True
    return seed


def _seed_simulator(env: Any, seed: int | None) -> None:
    """After ``super().reset(seed)``: re-seed the simulator's streams from ``env.np_random``."""
    if seed is not None:
        env.sim.seed(int(env.np_random.integers(0, 2**63 - 1)))


class SessionVectorEnv(VectorEnv):
    """B users of the session simulator as one vectorised env.

    Args:
        num_envs: B, the number of user slots.
        seed: optional seed used when ``reset`` is called without one.
        **config: fields of :class:`rayrec.sim.SimConfig`.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}  # noqa: RUF012

    def __init__(self, num_envs: int = 1, seed: int | None = None, **config: Any) -> None:
        self.config = SimConfig.from_dict(config)
        self.num_envs = num_envs
        self.sim = SessionSimulator(self.config, num_envs, seed=seed)
        self._default_seed = seed
        self.single_observation_space = observation_space(self.config)
        self.single_action_space = action_space(self.config)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._has_reset = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        seed = _first_seed(self, seed)
        super().reset(seed=seed)
        _seed_simulator(self, seed)
        self.sim.reset()
        self._autoreset[:] = False
        return observe(self.sim), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        result = self.sim.step(np.asarray(actions))
        reward = result.reward.astype(np.float32)
        terminated = result.terminated.copy()
        truncated = result.truncated.copy()
        if self._autoreset.any():
            # Next-step autoreset: slots that finished last step start a new user now.
            self.sim.reset_users(self._autoreset)
            reward[self._autoreset] = 0.0
            terminated[self._autoreset] = False
            truncated[self._autoreset] = False
        self._autoreset = terminated | truncated
        return observe(self.sim), reward, terminated, truncated, {}


class SessionEnv(gym.Env):
    """One user's lifetime of sessions as a single-agent ``gymnasium.Env``.

    Args:
        seed: optional seed used when ``reset`` is called without one the first time.
        render_mode: unused (no rendering); accepted for the Gymnasium API.
        **config: fields of :class:`rayrec.sim.SimConfig`.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self, seed: int | None = None, render_mode: str | None = None, **config: Any
    ) -> None:
        self.config = SimConfig.from_dict(config)
        self.sim = SessionSimulator(self.config, 1, seed=seed)
        self._default_seed = seed
        self.observation_space = observation_space(self.config)
        self.action_space = action_space(self.config)
        self.render_mode = render_mode
        self._has_reset = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        seed = _first_seed(self, seed)
        super().reset(seed=seed)
        _seed_simulator(self, seed)
        self.sim.reset()
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        r = self.sim.step(np.asarray(action).reshape(1, -1))
        info = self._info()
        info.update(
            clicked=bool(r.clicked[0]),
            item=int(r.item[0]),
            watch=float(r.watch[0]),
            like=bool(r.like[0]),
            skip=bool(r.skip[0]),
            session_ended=bool(r.session_ended[0]),
        )
        return self._obs(), float(r.reward[0]), bool(r.terminated[0]), bool(r.truncated[0]), info

    def _obs(self) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in observe(self.sim).items()}

    def _info(self) -> dict[str, Any]:
        return {
            "user_id": int(self.sim.user_id[0]),
            "session_index": int(self.sim.session_index[0]),
            "step_in_session": int(self.sim.step_in_session[0]),
        }
