"""Ape-X replay throughput: RLlib's prioritized episode replay against rayrec's fast path.

Fills RLlib's ``PrioritizedEpisodeReplayBuffer`` and rayrec's ``FastPrioritizedEpisodeReplayBuffer``
with the same episodes, sampled by one local Ape-X env runner of ``policies/apex_dqn.yaml`` on
``envs/session.yaml`` (no Ray cluster), and times, alternately in one process:

- add: ``buffer.add`` of one env runner's ``sample()`` (the preset's 32 envs x 16 steps);
- sample + batch: ``buffer.sample`` of one train batch (512 transitions, 3-step returns, beta 0.4)
  and the DQN learner connector pipeline that turns it into the learner's tensors (rayrec's
  ``TransitionsToBatch`` in front for the fast buffer, RLlib's default pieces alone otherwise).

Each cell is the median of ``--repeats`` timings; the last column is RLlib's time over rayrec's.

    python benchmarks/bench_replay.py [--steps 20000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pipeline(config, env_runner, fast: bool):
    from ray.rllib.connectors.common import AddObservationsFromEpisodesToBatch
    from ray.rllib.connectors.learner import AddNextObservationsFromEpisodesToTrainBatch

    config = copy.deepcopy(config)
    if not fast:
        config.learners(learner_connector=None)
    pipeline = config.build_learner_connector(
        input_observation_space=env_runner.env.single_observation_space,
        input_action_space=env_runner.env.single_action_space,
    )
    # The DQN learner inserts this piece itself (DQNLearner.build).
    pipeline.insert_after(
        AddObservationsFromEpisodesToBatch, AddNextObservationsFromEpisodesToTrainBatch()
    )
    return pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps in each buffer")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
    from ray.rllib.utils.replay_buffers.prioritized_episode_buffer import (
        PrioritizedEpisodeReplayBuffer,
    )

    from rayrec.algorithms.replay import FastPrioritizedEpisodeReplayBuffer
    from rayrec.experiment import build_config
    from rayrec.specs import EnvSpec, PolicySpec, load_yaml

    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml"))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / "apex_dqn.yaml"))
    config = build_config(env, policy, seed=0)
    config.env_runners(num_env_runners=0)
    runner = config.env_runner_cls(config=config)
    per_call = config.num_envs_per_env_runner * config.rollout_fragment_length
    chunks = []
    while sum(len(e) for c in chunks for e in c) < args.steps + args.repeats * per_call:
        chunks.append(runner.sample(num_timesteps=per_call))
    buffers = {
        "rllib": PrioritizedEpisodeReplayBuffer(capacity=200_000, alpha=0.6),
        "rayrec": FastPrioritizedEpisodeReplayBuffer(capacity=200_000, alpha=0.6, seed=0),
    }
    fill, extra = chunks[: -args.repeats], chunks[-args.repeats :]
    for buffer in buffers.values():
        for chunk in fill:
            buffer.add(chunk)
    pipelines = {name: _pipeline(config, runner, name == "rayrec") for name in buffers}
    module = MultiRLModule()
    module.framework = "torch"
    times: dict[tuple[str, str], list[float]] = {}
    for i in range(args.repeats):
        for name, buffer in buffers.items():
            t = time.perf_counter()
            buffer.add(extra[i])
            times.setdefault(("add", name), []).append(time.perf_counter() - t)
            t = time.perf_counter()
            episodes = buffer.sample(num_items=512, n_step=3, gamma=0.99, beta=0.4)
            pipelines[name](rl_module=module, batch={}, episodes=episodes, shared_data={})
            times.setdefault(("sample + batch", name), []).append(time.perf_counter() - t)
    runner.stop()

    steps = buffers["rayrec"].get_num_timesteps()
    print(
        f"Ape-X replay, {steps:,} env steps in each buffer, {per_call} steps per add, "
        f"512 transitions per batch, median of {args.repeats}"
    )
    print()
    print("| operation | RLlib (ms) | rayrec (ms) | speedup |")
    print("|---|---:|---:|---:|")
    for op in ("add", "sample + batch"):
        ours = statistics.median(times[(op, "rayrec")]) * 1e3
        theirs = statistics.median(times[(op, "rllib")]) * 1e3
        print(f"| {op} | {theirs:.1f} | {ours:.1f} | {theirs / ours:.1f}x |")


if __name__ == "__main__":
    main()
