"""RLlib's own multi-agent EnvRunner samples HierarchicalSessionEnv with one policy per level.

No Ray cluster is started: the EnvRunner is built in-process (num_env_runners=0)."""

from __future__ import annotations

import pytest

SMALL = {"num_items": 300, "num_topics": 6, "num_candidates": 8, "embed_dim": 4, "history_len": 4}


@pytest.mark.integration
def test_multi_agent_env_runner_samples_both_levels() -> None:
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.connectors.env_to_module import FlattenObservations
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    from rayrec.envs.hierarchical import HIGH, LOW, HierarchicalSessionEnv

    config = (
        PPOConfig()
        .environment(HierarchicalSessionEnv, env_config={**SMALL, "seed": 0})
        .multi_agent(policies={HIGH, LOW}, policy_mapping_fn=lambda agent_id, *a, **k: agent_id)
        .env_runners(
            num_env_runners=0,
            env_to_module_connector=lambda *a, **k: FlattenObservations(multi_agent=True),
        )
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={HIGH: RLModuleSpec(), LOW: RLModuleSpec()}
            )
        )
    )
    runner = MultiAgentEnvRunner(config=config)
    episodes = runner.sample(num_episodes=2)
    assert len(episodes) == 2
    for episode in episodes:
        assert episode.is_done
        high, low = episode.agent_episodes[HIGH], episode.agent_episodes[LOW]
        # One high decision per option, one low decision per simulator step.
        assert 1 <= len(high) <= len(low)
        assert episode.get_return() == pytest.approx(high.get_return() + low.get_return())
    runner.stop()
