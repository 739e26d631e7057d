"""Multi-agent learners whose seeded runs repeat: the train batch's modules in one fixed order.

RLlib 2.60's minibatch iterator (``ray/rllib/utils/minibatch_utils.py``) shuffles each module's
batch with the global NumPy generator, module after module in the order of the batch's dict. That
order comes from sets of agent and module ids, and string hashes differ per process unless
``PYTHONHASHSEED`` is set: two runs of one seed drew different minibatches from the first
iteration on (measured on the hierarchical agent: the same first sample, different losses). The
learners here sort the batch's modules before it is iterated.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.appo.torch.appo_torch_learner import APPOTorchLearner
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.policy.sample_batch import MultiAgentBatch

__all__ = [
    "SortedModulesAPPOLearner",
    "SortedModulesMixin",
    "SortedModulesPPOLearner",
    "sorted_learner",
]


class SortedModulesMixin:
    """Put before a torch ``Learner`` class: its train batches iterate modules in sorted order."""

    def _make_batch_if_necessary(self, training_data: Any) -> Any:
        batch = super()._make_batch_if_necessary(training_data)  # type: ignore[misc]
        if isinstance(batch, MultiAgentBatch):
            batch.policy_batches = dict(sorted(batch.policy_batches.items()))
        return batch


class SortedModulesPPOLearner(SortedModulesMixin, PPOTorchLearner):
    """RLlib's PPO torch learner, modules in sorted order."""


class SortedModulesAPPOLearner(SortedModulesMixin, APPOTorchLearner):
    """RLlib's APPO torch learner, modules in sorted order."""


_SORTED = {PPOTorchLearner: SortedModulesPPOLearner, APPOTorchLearner: SortedModulesAPPOLearner}


def sorted_learner(config: Any) -> None:
    """Give a multi-agent ``config`` the sorted-modules twin of its default learner (PPO, APPO);
    other learners are left as they are."""
    default = config.get_default_learner_class()
    if default in _SORTED:
        config.learners(learner_class=_SORTED[default])
