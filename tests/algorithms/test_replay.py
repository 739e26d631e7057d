"""FastPrioritizedEpisodeReplayBuffer samples what RLlib's PrioritizedEpisodeReplayBuffer does."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import tree
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.replay_buffers.prioritized_episode_buffer import (
    PrioritizedEpisodeReplayBuffer,
)

from rayrec.algorithms.replay import FastPrioritizedEpisodeReplayBuffer
from rayrec.algorithms.transitions import TransitionsToBatch
from rayrec.envs import SessionEnv

SMALL = {"num_items": 300, "num_candidates": 8, "embed_dim": 4, "num_topics": 4, "history_len": 3}


def _chunks(seed: int, lengths: list[int]) -> list[SingleAgentEpisode]:
    """Numpy episode chunks of one SessionEnv user (random valid actions): the first chunk
    starts at the reset, each later one continues the same episode id, as env runners send them."""
    env = SessionEnv(**SMALL)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    chunks, episode = [], None
    for length in lengths:
        if episode is None:
            episode = SingleAgentEpisode(
                observation_space=env.observation_space, action_space=env.action_space
            )
            episode.add_env_reset(obs, info)
        for _ in range(length):
            action = int(rng.choice(np.flatnonzero(obs["action_mask"])))
            obs, reward, terminated, truncated, info = env.step(action)
            episode.add_env_step(
                obs,
                action,
                reward,
                info,
                terminated=terminated,
                truncated=truncated,
                extra_model_outputs={"q": np.float32(reward + 1.0)},
            )
            if terminated or truncated:
                break
        episode.to_numpy()
        chunks.append(episode)
        episode = None if episode.is_done else episode.cut()
    return chunks


def _filled(cls: type, seed: int) -> PrioritizedEpisodeReplayBuffer:
    buffer = cls(capacity=200, alpha=0.6)
    buffer.rng = np.random.default_rng(seed)
    for user in range(4):
        for chunk in _chunks(user, [7, 9, 40]):
            buffer.add(chunk)
    # Non-uniform priorities, the same for both buffers.
    buffer.sample(num_items=32, n_step=1)
    buffer.update_priorities(np.random.default_rng(7).uniform(0.1, 3.0, 32), DEFAULT_MODULE)
    buffer.rng = np.random.default_rng(seed)
    return buffer


DEFAULT_MODULE = "default_policy"


def _flat(episode: SingleAgentEpisode) -> dict:
    return {
        "obs": [episode.get_observations(i) for i in (0, 1)],
        "action": episode.get_actions(0),
        "reward": episode.get_rewards(0),
        "weights": episode.get_extra_model_outputs("weights", 0),
        "n_step": episode.get_extra_model_outputs("n_step", 0),
        "extras": {
            k: episode.get_extra_model_outputs(k, 0)
            for k in episode.extra_model_outputs
            if k not in ("weights", "n_step")
        },
        "flags": (episode.is_terminated, episode.is_truncated, episode.t_started, len(episode)),
    }


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("extras", [False, True])
def test_same_transitions_as_rllib(n_step, extras):
    ours = _filled(FastPrioritizedEpisodeReplayBuffer, seed=3)
    theirs = _filled(PrioritizedEpisodeReplayBuffer, seed=3)
    for ep_ours, ep_theirs in zip(ours.episodes, theirs.episodes, strict=True):
        assert ours._fast_path(n_step, False, 0)
        assert len(ep_ours) == len(ep_theirs)
    kwargs = {"n_step": n_step, "gamma": 0.9, "beta": 0.4, "include_extra_model_outputs": extras}
    got = ours.sample(num_items=64, **kwargs)
    want = theirs.sample(num_items=64, **kwargs)
    assert ours._last_sampled_indices == theirs._last_sampled_indices
    assert len({e.id_ for e in got}) == 64
    for a, b in zip(got, want, strict=True):
        fa, fb = _flat(a), _flat(b)
        for oa, ob in zip(fa.pop("obs"), fb.pop("obs"), strict=True):
            assert oa.keys() == ob.keys()
            for key in oa:
                np.testing.assert_array_equal(oa[key], ob[key])
        assert fa["reward"] == fb["reward"]  # exactly: the same float64 recurrence
        assert fa["weights"] == fb["weights"] and fa["n_step"] == fb["n_step"]
        assert fa["action"] == fb["action"] and fa["flags"] == fb["flags"]
        assert fa["extras"].keys() == fb["extras"].keys()
        for key in fa["extras"]:
            np.testing.assert_array_equal(fa["extras"][key], fb["extras"][key])
    # The same draws leave the generators in the same state, and the metrics agree.
    assert ours.rng.random() == theirs.rng.random()
    assert ours.get_metrics() == theirs.get_metrics()


def test_terminal_transitions_are_sampled_with_their_flags():
    buffer = _filled(FastPrioritizedEpisodeReplayBuffer, seed=0)
    episodes = buffer.sample(num_items=2000, n_step=3, gamma=0.99, beta=0.4)
    done = [e for e in episodes if e.is_terminated or e.is_truncated]
    assert done, "no transition reached an episode's end"
    assert all(not e.is_terminated and not e.is_truncated for e in episodes if e not in done)


def test_seed_makes_sampling_repeatable_and_other_requests_fall_back():
    a = _filled(FastPrioritizedEpisodeReplayBuffer, seed=5)
    b = FastPrioritizedEpisodeReplayBuffer(capacity=200, alpha=0.6, seed=11)
    c = FastPrioritizedEpisodeReplayBuffer(capacity=200, alpha=0.6, seed=11)
    assert b.rng.random() == c.rng.random()
    # A random n-step range takes RLlib's path (which draws n per item) and still works.
    assert not a._fast_path((1, 4), False, 0)
    episodes = a.sample(num_items=16, n_step=(1, 4), gamma=0.99)
    assert {int(e.get_extra_model_outputs("n_step", 0)) for e in episodes} <= {1, 2, 3}


def _learner_pipeline(custom: bool):
    """DQN's learner connector pipeline (the default pieces plus next observations, as the DQN
    learner builds it), with or without TransitionsToBatch in front."""
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.connectors.common import AddObservationsFromEpisodesToBatch
    from ray.rllib.connectors.learner import AddNextObservationsFromEpisodesToTrainBatch

    env = SessionEnv(**SMALL)
    config = DQNConfig()
    if custom:
        config.learners(learner_connector=lambda *_: TransitionsToBatch())
    pipeline = config.build_learner_connector(
        input_observation_space=env.observation_space, input_action_space=env.action_space
    )
    pipeline.insert_after(
        AddObservationsFromEpisodesToBatch, AddNextObservationsFromEpisodesToTrainBatch()
    )
    return pipeline


def _tensors(pipeline, episodes):
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    module = MultiRLModule()
    module.framework = "torch"  # what NumpyToTensor asks of the learner's module
    batch = pipeline(rl_module=module, batch={}, episodes=episodes, shared_data={})
    return tree.flatten_with_path(batch)


@pytest.mark.parametrize("n_step", [1, 3])
def test_connector_gives_the_default_pipelines_batch(n_step):
    buffer = _filled(FastPrioritizedEpisodeReplayBuffer, seed=2)
    episodes = buffer.sample(num_items=48, n_step=n_step, gamma=0.95, beta=0.4)
    assert any(e.is_terminated or e.is_truncated for e in episodes) or n_step == 1
    ids = [e.id_ for e in episodes]
    direct = TransitionsToBatch()(rl_module=None, batch={}, episodes=episodes, shared_data={})
    assert {"obs", "new_obs", "actions", "rewards", "weights", "n_step"} <= direct.keys()
    ours = _tensors(_learner_pipeline(custom=True), episodes)
    # RLlib's observation piece renames the episodes it reads: ours left none to it.
    assert [e.id_ for e in episodes] == ids
    theirs = _tensors(_learner_pipeline(custom=False), episodes)
    assert [path for path, _ in ours] == [path for path, _ in theirs]
    for (path, a), (_, b) in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), path


def test_connector_leaves_other_episodes_to_the_defaults():
    chunks = _chunks(0, [5])
    batch = TransitionsToBatch()(rl_module=None, batch={}, episodes=chunks, shared_data={})
    assert batch == {}


def test_add_copies_arrays_and_leaves_the_callers_episode_alone():
    buffer = FastPrioritizedEpisodeReplayBuffer(capacity=100, seed=0)
    chunk = _chunks(1, [6])[0]
    buffer.add(chunk)
    stored = buffer.episodes[0]
    assert type(chunk) is SingleAgentEpisode and type(stored) is SingleAgentEpisode
    assert stored is not chunk and stored.id_ == chunk.id_ and len(stored) == len(chunk)
    for key, value in chunk.observations.data.items():
        np.testing.assert_array_equal(stored.observations.data[key], value)
        assert not np.shares_memory(stored.observations.data[key], value)
    np.testing.assert_array_equal(stored.rewards.data, chunk.rewards.data)
    assert not np.shares_memory(stored.rewards.data, chunk.rewards.data)
    assert stored.observation_space is chunk.observation_space


def test_list_episodes_take_rllibs_path_until_they_are_gone():
    buffer = FastPrioritizedEpisodeReplayBuffer(capacity=60, seed=0)
    buffer.add(_chunks(0, [40])[0])
    assert buffer._fast_path(3, False, 0)
    env = SessionEnv(**SMALL)
    obs, info = env.reset(seed=9)
    listed = SingleAgentEpisode(
        observation_space=env.observation_space, action_space=env.action_space
    )
    listed.add_env_reset(obs, info)
    for _ in range(3):
        action = int(np.flatnonzero(obs["action_mask"])[0])
        obs, reward, terminated, truncated, info = env.step(action)
        listed.add_env_step(obs, action, reward, info, terminated=terminated, truncated=truncated)
        if terminated or truncated:
            break
    buffer.add(listed)  # not numpy: RLlib's own deep copy and sample
    assert not buffer._fast_path(3, False, 0)
    assert len(buffer.sample(num_items=8, n_step=1)) == 8
    for user in range(1, 4):  # evicts the list episode (capacity 60)
        buffer.add(_chunks(user, [40])[0])
    assert all(e.id_ != listed.id_ for e in buffer.episodes)
    assert buffer._fast_path(3, False, 0)


def _state(buffer: PrioritizedEpisodeReplayBuffer) -> dict:
    return {
        "indices": list(buffer._indices),
        "tree_map": dict(buffer._tree_idx_to_sample_idx),
        "free": list(buffer._free_nodes),
        "sum": list(buffer._sum_segment.value),
        "min": list(buffer._min_segment.value),
        "max_idx": buffer._max_idx,
        "timesteps": (buffer._num_timesteps, buffer._num_timesteps_added),
        "evicted": buffer._num_episodes_evicted,
        "episodes": [(e.id_, len(e)) for e in buffer.episodes],
        "id_to_index": dict(buffer.episode_id_to_index),
        "metrics": buffer.get_metrics(),
    }


def test_add_with_evictions_keeps_rllibs_bookkeeping():
    ours = FastPrioritizedEpisodeReplayBuffer(capacity=64, alpha=0.6, seed=0)
    theirs = PrioritizedEpisodeReplayBuffer(capacity=64, alpha=0.6)
    # Interleaved chunks of several users, so that evicted episodes have steps all over the
    # index list, and a chunk whose episode is evicted in the same add.
    chunks = [_chunks(user, [5, 9, 30]) for user in range(6)]
    c = chunks
    batches = [
        [c[0][0], c[1][0], c[2][0]],
        [c[0][1], c[1][1], c[2][1], c[3][0]],
        [c[0][2], c[1][2], c[2][2], c[3][1]],
        [c[4][0], c[5][0], c[3][2]],
        [c[4][1], c[5][1]],
        [c[4][2], c[5][2]],
    ]
    for batch in batches:
        ours.add(batch, weight=0.5)
        theirs.add([copy.deepcopy(e) for e in batch], weight=0.5)
        assert _state(ours) == _state(theirs)
    assert ours._num_episodes_evicted > 0
    for buffer in (ours, theirs):
        buffer.rng = np.random.default_rng(1)
    got = ours.sample(num_items=32, n_step=2, gamma=0.9, beta=0.4)
    want = theirs.sample(num_items=32, n_step=2, gamma=0.9, beta=0.4)
    assert [e.t_started for e in got] == [e.t_started for e in want]


def test_state_round_trip_keeps_sampling_where_it_was():
    buffer = _filled(FastPrioritizedEpisodeReplayBuffer, seed=4)
    buffer.sample(num_items=8, n_step=1)
    restored = FastPrioritizedEpisodeReplayBuffer(capacity=200, alpha=0.6, seed=99)
    restored.set_state(buffer.get_state())
    a = buffer.sample(num_items=16, n_step=3, gamma=0.9)
    b = restored.sample(num_items=16, n_step=3, gamma=0.9)
    assert [(e.t_started, e.get_rewards(0)) for e in a] == [
        (e.t_started, e.get_rewards(0)) for e in b
    ]


def test_configure_keeps_a_users_learner_connector():
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.connectors.common import AddObservationsFromEpisodesToBatch

    from rayrec.algorithms.replay import configure_fast_replay

    config = DQNConfig().training(
        replay_buffer_config={"type": "rayrec.algorithms.replay.FastPrioritizedEpisodeReplayBuffer"}
    )
    config.learners(learner_connector=lambda *_: AddObservationsFromEpisodesToBatch())
    configure_fast_replay(config, seed=3)
    configure_fast_replay(config, seed=3)  # idempotent
    pieces = config._learner_connector(None, None)
    assert [type(p).__name__ for p in pieces] == [
        "TransitionsToBatch",
        "AddObservationsFromEpisodesToBatch",
    ]
    assert config.replay_buffer_config["seed"] == 3
