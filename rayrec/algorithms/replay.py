"""Prioritized episode replay whose ``sample()`` does not dominate Ape-X's learner loop.

RLlib 2.60's ``PrioritizedEpisodeReplayBuffer.sample`` builds every sampled transition through
the general episode API: ``get_observations`` maps a tree over the Dict observation twice per
transition, the ``SingleAgentEpisode`` constructor walks the spaces and validates, ``lfilter``
sums three rewards and a SHA-256 hash counts distinct steps. For rayrec's session observations
(nine arrays) that is about 200 us per transition: a 512-transition batch took longer to sample
than the learner took to train on it, and replay sampling was about 60% of an Ape-X iteration.

:class:`FastPrioritizedEpisodeReplayBuffer` keeps RLlib's buffer (storage, sum and min trees,
eviction, priority updates, state) and replaces only ``sample`` for the case DQN uses: one
transition per item and a fixed ``n_step``. It draws from the same generator in the same order,
so it returns the same transitions as RLlib's ``sample`` with the same weights and n-step
rewards; observations are views into the stored episodes (rows t and t + n), and the 2-step
episodes are assembled directly (:func:`rayrec.algorithms.episodes.episode_from_arrays`). Other
requests (random n-step ranges, infos, episodes not held as numpy arrays) go to RLlib's
``sample``.

RLlib's learner connectors then spent more than both together: they read every 2-step episode
through the same tree-mapped episode API. :class:`TransitionsToBatch`, a learner connector piece
placed before RLlib's defaults, stacks such transitions into the train batch's columns in bulk
(one array per column), and RLlib's own pieces see the columns present and skip them; it leaves any
other episodes to them. The resulting tensors equal the default pipeline's (tested).

The buffer also takes a ``seed`` (RLlib's is drawn from the OS), so a seeded run samples the same
batches.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import DEFAULT_AGENT_ID, DEFAULT_MODULE_ID
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils import force_list
from ray.rllib.utils.annotations import override
from ray.rllib.utils.replay_buffers.prioritized_episode_buffer import (
    PrioritizedEpisodeReplayBuffer,
)

from rayrec.algorithms.transitions import TransitionsToBatch, transition_episode

__all__ = ["FastPrioritizedEpisodeReplayBuffer", "configure_fast_replay", "uses_fast_replay"]


def _numpy_form(episode: SingleAgentEpisode) -> bool:
    """Whether the episode's buffers hold numpy arrays: a flat dict of them or one array for
    observations, one array each for actions, rewards and extra model outputs."""
    obs = episode.observations
    if not (obs.finalized and episode.actions.finalized and episode.rewards.finalized):
        return False
    arrays = [episode.actions.data, episode.rewards.data]
    arrays += [b.data for b in episode.extra_model_outputs.values()]
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return False
    if isinstance(obs.data, dict):
        return all(isinstance(v, np.ndarray) for v in obs.data.values())
    return isinstance(obs.data, np.ndarray)


def _copy_buffer(buffer: InfiniteLookbackBuffer) -> InfiniteLookbackBuffer:
    copy = InfiniteLookbackBuffer.__new__(InfiniteLookbackBuffer)
    copy.__dict__.update(buffer.__dict__)
    data = buffer.data
    if isinstance(data, dict):
        copy.data = {k: v.copy() for k, v in data.items()}
    elif isinstance(data, np.ndarray):
        copy.data = data.copy()
    else:
        copy.data = deepcopy(data)
    return copy


def _copy_episode(episode: SingleAgentEpisode) -> SingleAgentEpisode:
    """A deep copy of a numpy episode that copies its arrays as arrays (``copy.deepcopy`` walks
    them as Python objects) and shares only the (immutable) spaces."""
    new = SingleAgentEpisode.__new__(SingleAgentEpisode)
    for key in SingleAgentEpisode.__slots__:
        if not hasattr(episode, key):
            continue
        value = getattr(episode, key)
        if isinstance(value, InfiniteLookbackBuffer):
            value = _copy_buffer(value)
        elif key == "extra_model_outputs":
            value = {k: _copy_buffer(v) for k, v in value.items()}
        elif not key.endswith("_space"):
            value = deepcopy(value)
        setattr(new, key, value)
    return new


class FastPrioritizedEpisodeReplayBuffer(PrioritizedEpisodeReplayBuffer):
    """RLlib's prioritized episode replay with a fast ``sample`` for one-step items.

    Args:
        seed: seeds the sampling generator (RLlib's default draws fresh OS entropy).
        **kwargs: as ``PrioritizedEpisodeReplayBuffer`` (``capacity``, ``alpha``, ...).
    """

    def __init__(self, *args: Any, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = np.random.default_rng(seed)
        self._sampled_serial = 0
        # Whether every stored episode holds numpy arrays (None: not known, look).
        self._numpy_only: bool | None = True

    @override(PrioritizedEpisodeReplayBuffer)
    def add(self, episodes: Any, weight: float | None = None) -> None:
        """RLlib's ``add`` (the same stored episodes, indices, tree nodes and metrics), faster.

        Two parts of RLlib's ``add`` grow with the buffer or the data: the deep copy of every
        incoming episode walks its numpy arrays as Python objects (:func:`_copy_episode` copies
        the arrays), and every eviction rebuilds the whole index list and its tree-node map in
        a Python loop with a list lookup per stored step (here: one set lookup per step in a
        comprehension, 5-10x faster at a full 200,000-step buffer).
        """
        if weight is None:
            weight = self._max_priority
        episodes = force_list(episodes)
        # Numpy episodes are copied as arrays; the rest as RLlib copies them.
        numpy = [type(e) is SingleAgentEpisode and _numpy_form(e) for e in episodes]
        if not all(numpy):
            self._numpy_only = None
        added = {"steps": 0, "agent_steps": 0, "episodes": 0}
        evicted = {"steps": 0, "agent_steps": 0, "episodes": 0}
        new_ids = [e.id_ for e in episodes]
        for eps in episodes:
            self._num_timesteps += len(eps)
            self._num_timesteps_added += len(eps)
        evicted_ids: list[str] = []
        evicted_indices: set[int] = set()
        while (
            self._num_timesteps > self.capacity
            and self._num_remaining_episodes(new_ids, evicted_ids) != 1
        ):
            old = self.episodes.popleft()
            evicted_ids.append(old.id_)
            evicted_indices.add(self.episode_id_to_index.pop(old.id_))
            evicted["episodes"] += 1
            evicted["steps"] += len(old)
            evicted["agent_steps"] += old.agent_steps()
            if old.id_ in new_ids:
                # A new chunk of an evicted episode is evicted with it.
                gone = len(episodes[new_ids.index(old.id_)])
                self._num_timesteps -= gone
                self._num_timesteps_added -= gone
            self._num_timesteps -= len(old)
            self._num_episodes_evicted += 1
        if evicted_indices:
            self._drop_indices(evicted_indices)

        j = len(self._indices)
        evicted_set = set(evicted_ids)
        for eps, is_numpy in zip(episodes, numpy, strict=True):
            if eps.id_ in evicted_set:
                continue
            eps = _copy_episode(eps) if is_numpy else deepcopy(eps)
            if eps.id_ in self.episode_id_to_index:
                # The next chunk of a stored episode: concatenated to it.
                eps_idx = self.episode_id_to_index[eps.id_]
                existing = self.episodes[eps_idx - self._num_episodes_evicted]
                old_len = len(existing)
                self._indices.extend(
                    (eps_idx, old_len + i, self._get_free_node_and_assign(j + i, weight))
                    for i in range(len(eps))
                )
                existing.concat_episode(eps)
            else:
                added["episodes"] += 1
                self.episodes.append(eps)
                eps_idx = len(self.episodes) - 1 + self._num_episodes_evicted
                self.episode_id_to_index[eps.id_] = eps_idx
                self._indices.extend(
                    (eps_idx, i, self._get_free_node_and_assign(j + i, weight))
                    for i in range(len(eps))
                )
            added["steps"] += len(eps)
            added["agent_steps"] += eps.agent_steps()
            j = len(self._indices)

        agent, module = DEFAULT_AGENT_ID, DEFAULT_MODULE_ID
        self._update_add_metrics(
            num_episodes_added=added["episodes"],
            num_env_steps_added=added["steps"],
            num_episodes_evicted=evicted["episodes"],
            num_env_steps_evicted=evicted["steps"],
            agent_to_num_episodes_added={agent: added["episodes"]},
            agent_to_num_steps_added={agent: added["agent_steps"]},
            agent_to_num_episodes_evicted={agent: evicted["episodes"]},
            agent_to_num_steps_evicted={agent: evicted["agent_steps"]},
            module_to_num_episodes_added={module: added["episodes"]},
            module_to_num_steps_added={module: added["agent_steps"]},
            module_to_num_episodes_evicted={module: evicted["episodes"]},
            module_to_num_steps_evicted={module: evicted["agent_steps"]},
        )

    def _drop_indices(self, evicted: set[int]) -> None:
        """Remove the steps of evicted episodes from the index list and free their tree nodes
        (RLlib's loop, as comprehensions over the list)."""
        indices = self._indices
        for triple in [t for t in indices if t[0] in evicted]:
            node = triple[2]
            self._free_nodes.appendleft(node)
            self._max_idx -= 1 if self._max_idx == node else 0
            self._sum_segment[node] = 0.0
            self._min_segment[node] = float("inf")
            self._tree_idx_to_sample_idx.pop(node)
        self._indices = [t for t in indices if t[0] not in evicted]
        self._tree_idx_to_sample_idx.update({t[2]: i for i, t in enumerate(self._indices)})

    @override(PrioritizedEpisodeReplayBuffer)
    def get_state(self) -> dict[str, Any]:
        """RLlib's state plus the sampling generator's, so a restored buffer samples on."""
        return {**super().get_state(), "rayrec_rng": self.rng.bit_generator.state}

    @override(PrioritizedEpisodeReplayBuffer)
    def set_state(self, state: Any) -> None:
        super().set_state(state)
        if "rayrec_rng" in state:
            self.rng.bit_generator.state = state["rayrec_rng"]
        self._numpy_only = None

    def _fast_path(self, n_step: Any, include_infos: bool, batch_length_T: int | None) -> bool:
        if isinstance(n_step, tuple) or include_infos or (batch_length_T or 1) > 1:
            return False
        if self._numpy_only is None:
            self._numpy_only = all(_numpy_form(e) for e in self.episodes) or None
        return bool(self._numpy_only)

    @override(PrioritizedEpisodeReplayBuffer)
    def sample(
        self,
        num_items: int | None = None,
        *,
        batch_size_B: int | None = None,
        batch_length_T: int | None = None,
        n_step: int | tuple | None = None,
        beta: float = 0.0,
        gamma: float = 0.99,
        include_infos: bool = False,
        include_extra_model_outputs: bool = False,
        to_numpy: bool = False,
        **kwargs: Any,
    ) -> list[SingleAgentEpisode]:
        """RLlib's ``sample`` (same draws, same transitions), as views and direct assembly."""
        if not self._fast_path(n_step, include_infos, batch_length_T):
            return super().sample(
                num_items,
                batch_size_B=batch_size_B,
                batch_length_T=batch_length_T,
                n_step=n_step,
                beta=beta,
                gamma=gamma,
                include_infos=include_infos,
                include_extra_model_outputs=include_extra_model_outputs,
                to_numpy=to_numpy,
                **kwargs,
            )
        assert beta >= 0.0
        if num_items is not None:
            assert batch_size_B is None, "pass num_items or batch_size_B, not both"
            batch_size_B = num_items
        batch_size_B = batch_size_B or self.batch_size_B
        n = n_step or 1
        self._last_sampled_indices = []
        tree = self._sum_segment
        total = tree.sum()
        num_timesteps = self.get_num_timesteps()
        p_min = self._min_segment.min() / total
        max_weight = (p_min * num_timesteps) ** (-beta)
        sampled: list[SingleAgentEpisode] = []
        steps: set[tuple[str, int]] = set()
        episode_idxs: set[int] = set()
        resamples = 0
        while len(sampled) < batch_size_B:
            # RLlib's draw: the prefix-sum search over priorities (Schaul et al. 2016), o_t.
            idx = tree.find_prefixsum_idx(self.rng.random() * total)
            weight = (tree[idx] / total * num_timesteps) ** (-beta)
            episode_idx, ts, _ = self._indices[self._tree_idx_to_sample_idx[idx]]
            episode_idx -= self._num_episodes_evicted
            episode = self.episodes[episode_idx]
            if ts + n > len(episode):
                resamples += 1
                continue
            sampled.append(
                self._transition(
                    episode, ts, n, gamma, weight / max_weight, include_extra_model_outputs
                )
            )
            steps.add((episode.id_, ts))
            episode_idxs.add(episode_idx)
            self._last_sampled_indices.append(idx)
        self.sampled_timesteps += batch_size_B
        self._record_sample(batch_size_B, len(episode_idxs), len(steps), n, resamples)
        return sampled

    def _transition(
        self,
        episode: SingleAgentEpisode,
        ts: int,
        n: int,
        gamma: float,
        weight: float,
        include_extra_model_outputs: bool,
    ) -> SingleAgentEpisode:
        """The 2-step episode (o_t, a_t, sum_i gamma^i r_(t+i), o_(t+n)) RLlib's sample builds."""
        obs = episode.observations
        first = obs.lookback + ts
        # Rows t and t + n, as strided views (no copy).
        rows = slice(first, first + n + 1, n)
        if isinstance(obs.data, dict):
            observations = {k: v[rows] for k, v in obs.data.items()}
        else:
            observations = obs.data[rows]
        acts = episode.actions
        rew = episode.rewards
        r0 = rew.lookback + ts
        # Horner's rule in float64: the recurrence RLlib's lfilter runs, so the sums are equal.
        reward = 0.0
        for x in rew.data[r0 : r0 + n][::-1].tolist():
            reward = x + gamma * reward
        extras = {"weights": np.array([weight]), "n_step": np.array([n])}
        if include_extra_model_outputs:
            for key, buffer in episode.extra_model_outputs.items():
                at = buffer.lookback + ts
                extras[key] = buffer.data[at : at + 1]
        last = ts + n >= len(episode)
        self._sampled_serial += 1
        return transition_episode(
            self._sampled_serial,
            observations,
            acts.data[acts.lookback + ts : acts.lookback + ts + 1],
            np.array([reward]),
            extras,
            t=ts,
            terminated=episode.is_terminated if last else False,
            truncated=episode.is_truncated if last else False,
            spaces=(episode._observation_space, episode._action_space),
        )

    def _record_sample(
        self, num: int, num_episodes: int, num_steps: int, n: int, resamples: int
    ) -> None:
        """RLlib's sample metrics (one agent, one module)."""
        agent, module = DEFAULT_AGENT_ID, DEFAULT_MODULE_ID
        self._update_sample_metrics(
            num_env_steps_sampled=num,
            num_episodes_per_sample=num_episodes,
            num_env_steps_per_sample=num_steps,
            sampled_n_step=float(n),
            num_resamples=resamples,
            agent_to_num_steps_sampled={agent: num},
            agent_to_num_episodes_per_sample={agent: num_episodes},
            agent_to_num_steps_per_sample={agent: num_steps},
            agent_to_sampled_n_step={agent: float(n)},
            agent_to_num_resamples={agent: resamples},
            module_to_num_steps_sampled={module: num},
            module_to_num_episodes_per_sample={module: num_episodes},
            module_to_num_steps_per_sample={module: num_steps},
            module_to_sampled_n_step={module: float(n)},
            module_to_num_resamples={module: resamples},
        )


class _WithTransitions:
    """Learner connector builder: TransitionsToBatch, then what ``inner`` builds (if any)."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner

    def __call__(self, *args: Any) -> list[ConnectorV2]:
        return [TransitionsToBatch(), *(force_list(self.inner(*args)) if self.inner else [])]


def uses_fast_replay(config: Any) -> bool:
    """Whether an RLlib config's replay buffer is :class:`FastPrioritizedEpisodeReplayBuffer`."""
    kind = (getattr(config, "replay_buffer_config", None) or {}).get("type")
    if isinstance(kind, str):
        return kind.rsplit(".", 1)[-1] == FastPrioritizedEpisodeReplayBuffer.__name__
    return isinstance(kind, type) and issubclass(kind, FastPrioritizedEpisodeReplayBuffer)


def configure_fast_replay(config: Any, seed: int) -> None:
    """Seed the fast buffer and put :class:`TransitionsToBatch` in front of the learner's
    connector pipeline (no-op for other buffers)."""
    if not uses_fast_replay(config):
        return
    config.training(replay_buffer_config={**config.replay_buffer_config, "seed": seed})
    existing = getattr(config, "_learner_connector", None)
    if isinstance(existing, _WithTransitions):
        return
    config.learners(learner_connector=_WithTransitions(existing))
