"""The Ape-X arrangement of RLlib's DQN (Horgan et al. 2018).

RLlib 2.60 ships DQN with prioritized episode replay, n-step returns, dueling and double Q, but
no longer APEX-DQN. What Ape-X adds on top is many actors that explore at different rates: actor
i of N acts epsilon-greedily with

    epsilon_i = epsilon ** (1 + alpha * i / (N - 1))        (Horgan et al. 2018, section 4)

(epsilon = 0.4, alpha = 7 in the paper). ``ApexEnvRunner`` gives each EnvRunner its rung of that
ladder, from its worker index, whenever its RLModule is (re)built: after a restart too.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.utils.annotations import override
from ray.rllib.utils.schedules.scheduler import Scheduler

from rayrec.algorithms.env_runner import VectorEnvRunner

__all__ = ["APEX_KEY", "ApexEnvRunner", "ladder_epsilon"]

# The key under which the ladder's (epsilon, alpha) travel in the RLModule's model_config.
APEX_KEY = "apex_ladder"


def ladder_epsilon(index: int, num_runners: int, epsilon: float = 0.4, alpha: float = 7.0) -> float:
    """Exploration rate of actor ``index`` (0-based) out of ``num_runners``."""
    if not 0.0 < epsilon < 1.0:
        raise ValueError(f"apex.epsilon ({epsilon}) must be in (0, 1)")
    if alpha < 0:
        raise ValueError(f"apex.alpha ({alpha}) must be >= 0")
    if num_runners <= 1:
        return epsilon
    if not 0 <= index < num_runners:
        raise ValueError(f"actor index ({index}) must be in [0, {num_runners})")
    return float(epsilon ** (1.0 + alpha * index / (num_runners - 1)))


class ApexEnvRunner(VectorEnvRunner):
    """An EnvRunner whose DQN module explores at its own rung of the Ape-X epsilon ladder."""

    @override(VectorEnvRunner)
    def make_module(self) -> None:
        super().make_module()
        ladder = (self.config.model_config or {}).get(APEX_KEY)
        if ladder is None and self.module is not None:
            ladder = self.module.model_config.get(APEX_KEY)
        if self.module is None or ladder is None:
            return
        epsilon, alpha = ladder
        # Worker 0 is the local runner; it samples only when there are no remote runners.
        n = max(self.config.num_env_runners, 1)
        index = max((self.worker_index or 0) - 1, 0)
        self.apex_epsilon = ladder_epsilon(index, n, epsilon, alpha)
        self.module.epsilon_schedule = Scheduler(
            fixed_value_or_schedule=self.apex_epsilon, framework="torch"
        )

    def get_apex_epsilon(self) -> Any:
        """This runner's exploration rate (for tests and reports)."""
        return getattr(self, "apex_epsilon", None)
