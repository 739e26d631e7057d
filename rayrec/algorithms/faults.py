"""Fault injection for chaos tests: an env wrapper that kills its process once.

``rayrec train`` accepts it through the env config key ``fault_injection`` (see
:func:`rayrec.experiment.make_vector_env`), so a test can crash a real EnvRunner mid-training and
check that RLlib's fault tolerance restarts it and training completes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["CrashOnceVectorEnv"]


class CrashOnceVectorEnv(gym.vector.VectorWrapper):
    """Hard-kills the process (``os._exit``) at step ``after_steps`` if ``marker`` does not exist.

    The marker file is created atomically just before the crash, so across processes and
    restarts the crash happens once, like a machine failure, not a bug that recurs on every retry.
    """

    def __init__(self, env: gym.vector.VectorEnv, marker: str | os.PathLike, after_steps: int):
        super().__init__(env)
        self.marker = Path(marker)
        self.after_steps = int(after_steps)
        self._steps = 0

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        self._steps += 1
        if self._steps >= self.after_steps and not self.marker.exists():
            try:
                # O_EXCL: of several processes reaching this point, exactly one crashes.
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return self.env.step(actions)
            os.write(fd, f"crashed pid {os.getpid()} at step {self._steps}\n".encode())
            os.close(fd)
            os._exit(17)
        return self.env.step(actions)
