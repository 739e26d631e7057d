"""Hierarchical PPO: one policy per level of ``HierarchicalSessionEnv``, each with its own discount.

The two levels (agent and module ids ``high`` and ``low``) of the options agent train with
RLlib's multi-agent PPO (built by :mod:`rayrec.experiment.hierarchical`), each level with its own
``gamma`` and ``lambda_`` (RLlib's ``algorithm_config_overrides_per_module``).

RLlib 2.60's PPO learner builds one ``GeneralAdvantageEstimation(gamma=config.gamma)`` for every
module (``ray/rllib/algorithms/ppo/ppo_learner.py``), so per-module gammas would be silently
ignored in the advantages; :class:`PerModuleGammaPPOLearner` swaps in :class:`PerModuleGammaGAE`,
which reads ``config.get_config_for_module(module_id)`` (gamma and lambda).

It also restores the bootstrap at the ``max_sessions`` bound: RLlib 2.60's ``MultiAgentEpisode``
marks every agent terminated as soon as all agents are done, truncated ones included ("Case 2" in
``ray/rllib/env/multi_agent_episode.py``), so a lifetime cut by the bound (truncated, the user
would have come back) lost its value V(s_T) as if the user had left. ``HierarchicalSessionEnv``
never sets both flags, so a step flagged both is a truncation.

Like every multi-agent learner of rayrec it sorts the train batch's modules
(:class:`rayrec.algorithms.ordered.SortedModulesPPOLearner`), so that a seeded run repeats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.core.columns import Columns
from ray.rllib.utils.annotations import override
from ray.rllib.utils.numpy import convert_to_numpy

from rayrec.algorithms.ordered import SortedModulesPPOLearner

__all__ = ["PerModuleGammaGAE", "PerModuleGammaPPOLearner"]


class PerModuleGammaGAE(GeneralAdvantageEstimation):
    """GAE with each module's own gamma and lambda (RLlib's GAE uses one pair for all modules).

    Args:
        gammas, lambdas: module id -> value; modules not listed use ``gamma`` / ``lambda_``.
    """

    def __init__(
        self,
        *args: Any,
        gammas: dict[str, float],
        lambdas: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gammas = dict(gammas)
        self.lambdas = dict(lambdas or {})
        self.default_gamma, self.default_lambda = self.gamma, self.lambda_

    @override(GeneralAdvantageEstimation)
    def __call__(self, *, rl_module: Any, episodes: Any, batch: dict, **kwargs: Any) -> Any:
        try:
            for module_id in list(batch):
                _truncation_is_not_termination(batch[module_id])
                self.gamma = self.gammas.get(module_id, self.default_gamma)
                self.lambda_ = self.lambdas.get(module_id, self.default_lambda)
                # The parent writes advantages and value targets into batch[module_id] in place;
                # it only reads the episodes of the module ids present in the batch it is given.
                super().__call__(
                    rl_module=rl_module,
                    episodes=episodes,
                    batch={module_id: batch[module_id]},
                    **kwargs,
                )
        finally:
            self.gamma, self.lambda_ = self.default_gamma, self.default_lambda
        return batch


def _truncation_is_not_termination(module_batch: dict) -> None:
    """Clear ``terminateds`` where ``truncateds`` is set too, in place (numpy or torch (B,))."""
    if Columns.TERMINATEDS not in module_batch or Columns.TRUNCATEDS not in module_batch:
        return
    terminated = module_batch[Columns.TERMINATEDS]
    flags = convert_to_numpy(terminated)
    both = flags.astype(bool) & convert_to_numpy(module_batch[Columns.TRUNCATEDS]).astype(bool)
    if not both.any():
        return
    flags = np.where(both, np.zeros_like(flags), flags)
    if isinstance(terminated, torch.Tensor):
        flags = torch.as_tensor(flags, device=terminated.device)
    module_batch[Columns.TERMINATEDS] = flags


class PerModuleGammaPPOLearner(SortedModulesPPOLearner):
    """PPO's torch learner with :class:`PerModuleGammaGAE` in place of the one-gamma GAE."""

    @override(PPOTorchLearner)
    def build(self) -> None:
        # Torch's default intra-op threads (one per core) thrash when env runners share those
        # cores: on 2 busy CPUs a learner update took 13x longer than with one thread (measured:
        # 34 s vs 2.5 s per 4096-step PPO iteration). A learner uses the CPUs it was given.
        cpus = self.config.num_cpus_per_learner
        torch.set_num_threads(cpus if isinstance(cpus, int) and cpus > 0 else 1)
        super().build()
        pipeline = self._learner_connector
        if pipeline is None or not any(
            type(c) is GeneralAdvantageEstimation for c in pipeline.connectors
        ):
            return  # no default GAE to replace (custom pipeline)
        modules = list(self.config.policies)
        per_module = {mid: self.config.get_config_for_module(mid) for mid in modules}
        pipeline.remove(GeneralAdvantageEstimation)
        pipeline.append(
            PerModuleGammaGAE(
                gamma=self.config.gamma,
                lambda_=self.config.lambda_,
                gammas={mid: c.gamma for mid, c in per_module.items()},
                lambdas={mid: c.lambda_ for mid, c in per_module.items()},
            )
        )
