"""Building RLlib ``SingleAgentEpisode`` objects from arrays, fast.

RLlib's ``SingleAgentEpisode`` constructor walks the observation and action spaces for every
buffer and validates the episode: a few hundred microseconds per episode. rayrec builds many small
episodes on hot paths (the batched env runner's chunks, the replay buffer's sampled transitions)
whose data is consistent by construction, so it sets the same attributes directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.env.single_agent_episode import _REWARDS_BOX_SPACE, SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils.spaces.space_utils import get_base_struct_from_space

__all__ = ["episode_from_arrays", "lookback_buffer"]

_STRUCTS: dict[int, tuple[Any, Any]] = {}
# Episodes unpickled from remote env runners bring new space objects every time: the cache is
# cleared when it grows past this, so it never keeps old spaces alive for a whole run.
_MAX_STRUCTS = 64


def _struct(space: Any) -> Any:
    """RLlib's ``get_base_struct_from_space`` of ``space``, computed once per space object."""
    if space is None:
        return None
    cached = _STRUCTS.get(id(space))
    if cached is None or cached[0] is not space:
        if len(_STRUCTS) >= _MAX_STRUCTS:
            _STRUCTS.clear()
        cached = _STRUCTS[id(space)] = (space, get_base_struct_from_space(space))
    return cached[1]


def lookback_buffer(data: Any, lookback: int, space: Any = None) -> InfiniteLookbackBuffer:
    """A finalized (numpy) buffer, or a list one for infos: what ``InfiniteLookbackBuffer``'s
    constructor and space setter make, without their per-call walk over the space."""
    buffer = InfiniteLookbackBuffer.__new__(InfiniteLookbackBuffer)
    buffer.data = data
    buffer.lookback = lookback
    buffer.finalized = not isinstance(data, list)
    buffer._space = space
    buffer._space_struct = _struct(space)
    return buffer


def episode_from_arrays(
    id_: str,
    *,
    obs: dict[str, np.ndarray],
    infos: list[dict],
    actions: np.ndarray,
    rewards: np.ndarray,
    extras: dict[str, np.ndarray],
    lookback: int,
    t_started: int,
    terminated: bool,
    truncated: bool,
    spaces: tuple[Any, Any],
    start_time: float | None,
    last_time: float | None,
) -> SingleAgentEpisode:
    """The ``SingleAgentEpisode`` its constructor builds from these buffers (the same attributes),
    without the constructor's per-buffer space walks and validation: at a few hundred
    microseconds per chunk those cost more than sampling its steps. The data is consistent
    by construction (tests compare the episodes with RLlib's own runner's)."""
    episode = SingleAgentEpisode.__new__(SingleAgentEpisode)
    episode.id_ = id_
    episode.agent_id = episode.module_id = episode.multi_agent_episode_id = None
    episode.observations = lookback_buffer(obs, lookback, spaces[0])
    episode._observation_space = spaces[0]
    episode.infos = lookback_buffer(infos, lookback)
    episode.actions = lookback_buffer(actions, lookback, spaces[1])
    episode._action_space = spaces[1]
    episode.rewards = lookback_buffer(rewards, lookback, _REWARDS_BOX_SPACE)
    episode.is_terminated = terminated
    episode.is_truncated = truncated
    episode.extra_model_outputs = {k: lookback_buffer(v, lookback) for k, v in extras.items()}
    episode.t_started = t_started
    episode.t = len(rewards) - lookback + t_started
    episode._custom_data = {}
    episode._start_time = start_time
    episode._last_step_time = last_time
    episode._last_added_observation = None
    episode._last_added_infos = None
    return episode
