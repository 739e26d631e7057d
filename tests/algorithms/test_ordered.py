"""Multi-agent learners iterate a train batch's modules in sorted order (seeded runs repeat)."""

from __future__ import annotations

from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

from rayrec.algorithms.ordered import (
    SortedModulesAPPOLearner,
    SortedModulesMixin,
    SortedModulesPPOLearner,
    sorted_learner,
)


class _Unsorted:
    """Stands in for RLlib's Learner: returns the batch in the order a set of agent ids gave."""

    def _make_batch_if_necessary(self, training_data):
        return training_data


class _Learner(SortedModulesMixin, _Unsorted):
    pass


def test_modules_come_out_sorted_whatever_order_they_came_in():
    batches = {mid: SampleBatch({"obs": [i]}) for i, mid in enumerate(["low", "high", "creator"])}
    out = _Learner()._make_batch_if_necessary(MultiAgentBatch(batches, env_steps=3))
    assert list(out.policy_batches) == ["creator", "high", "low"]
    assert out.policy_batches["low"]["obs"][0] == 0  # the data stays with its module


def test_a_single_agent_batch_passes_through():
    batch = SampleBatch({"obs": [1, 2]})
    assert _Learner()._make_batch_if_necessary(batch) is batch


def test_ppo_and_appo_configs_get_the_sorted_twin_and_others_keep_theirs():
    ppo, appo, dqn = PPOConfig(), APPOConfig(), DQNConfig()
    for config in (ppo, appo, dqn):
        sorted_learner(config)
    assert ppo.learner_class is SortedModulesPPOLearner
    assert appo.learner_class is SortedModulesAPPOLearner
    assert dqn.learner_class is not None and not issubclass(dqn.learner_class, SortedModulesMixin)
