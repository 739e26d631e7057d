"""Discrete conservative Q-learning: CQL(H) (Kumar et al. 2020) on RLlib's DQN learner.

RLlib 2.60's CQL is built on SAC and samples continuous actions. Recommendations are discrete
choices among candidates, so rayrec adds the discrete variant: the DQN TD loss (target network,
optionally double-Q, dueling, n-step from the data) plus

    alpha * E_s [ logsumexp_{a valid} Q(s, a) - Q(s, a_logged) ]        (Kumar et al. 2020, eq. 4)

which pushes down the Q-values of actions the logs do not support. Masked candidates are excluded
from the logsumexp (their Q is -inf, so exp(Q) = 0). Training reads parquet logs through RLlib's
offline data API (:mod:`rayrec.data.offline`).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.dqn.dqn import DQN, DQNConfig
from ray.rllib.algorithms.dqn.dqn_learner import QF_PREDS
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.connectors.common.add_observations_from_episodes_to_batch import (
    AddObservationsFromEpisodesToBatch,
)
from ray.rllib.connectors.learner.add_next_observations_from_episodes_to_train_batch import (
    AddNextObservationsFromEpisodesToTrainBatch,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    OFFLINE_SAMPLING_TIMER,
    TIMERS,
)

from rayrec.algorithms.transitions import TransitionsToBatch

__all__ = [
    "CQL_LOSS_KEY",
    "DiscreteCQL",
    "DiscreteCQLConfig",
    "DiscreteCQLTorchLearner",
    "conservative_penalty",
]

CQL_LOSS_KEY = "cql_penalty"


def conservative_penalty(q_values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(B,) logsumexp over valid candidates of Q minus Q of the logged action.

    Args:
        q_values: (B, M) Q-values, -inf for masked candidates.
        actions: (B,) logged candidate indices.
    """
    logged = q_values.gather(1, actions.long().view(-1, 1)).squeeze(1)
    return torch.logsumexp(q_values, dim=1) - logged


class DiscreteCQLConfig(DQNConfig):
    """DQN's configuration plus ``cql_alpha``, the weight of the conservative penalty."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or DiscreteCQL)
        self.cql_alpha = 1.0
        # Offline: learn from the first batch, no exploration, no replay warm-up.
        self.num_steps_sampled_before_learning_starts = 0
        self.double_q = True
        self.dueling = True
        self.n_step = 1
        # One training iteration = `dataset_num_iters_per_learner` updates; DQN's default (keep
        # stepping until 1000 env steps were sampled) would never end without env sampling.
        self.min_sample_timesteps_per_iteration = 0

    @override(DQNConfig)
    def training(self, *, cql_alpha: float | None = NotProvided, **kwargs: Any) -> Any:
        super().training(**kwargs)
        if cql_alpha is not NotProvided:
            self.cql_alpha = cql_alpha
        return self

    @override(DQNConfig)
    def get_default_learner_class(self) -> type:
        return DiscreteCQLTorchLearner

    @override(DQNConfig)
    def build_learner_connector(
        self, input_observation_space: Any, input_action_space: Any, device: Any = None
    ) -> Any:
        # Offline batches are built by this pipeline in the OfflinePreLearner, which must add
        # NEXT_OBS itself (online DQN adds it in the Learner).
        pipeline = super().build_learner_connector(
            input_observation_space=input_observation_space,
            input_action_space=input_action_space,
            device=device,
        )
        pipeline.insert_after(
            AddObservationsFromEpisodesToBatch, AddNextObservationsFromEpisodesToTrainBatch()
        )
        # LogPreLearner hands over transition episodes (o_t, a_t, n-step reward, o_(t+n)) with
        # their n_step; this piece batches them in bulk and the default pieces skip the columns.
        pipeline.prepend(TransitionsToBatch())
        return pipeline

    @override(DQNConfig)
    def validate(self) -> None:
        super().validate()
        if self.cql_alpha < 0:
            self._value_error(f"cql_alpha ({self.cql_alpha}) must be >= 0")
        if self.num_atoms > 1:
            self._value_error("DiscreteCQL supports num_atoms = 1 (expected Q-values) only")
        n = self.n_step
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            self._value_error(
                f"DiscreteCQL's n_step ({n!r}) must be a whole number >= 1: the log is rewritten "
                "into transitions of that many steps"
            )


class DiscreteCQLTorchLearner(DQNTorchLearner):
    """DQN's TD loss plus ``cql_alpha`` times the conservative penalty."""

    @override(DQNTorchLearner)
    def compute_loss_for_module(
        self, *, module_id: str, config: DiscreteCQLConfig, batch: dict, fwd_out: dict
    ) -> torch.Tensor:
        rewards = batch[Columns.REWARDS]
        missing = {"weights", "n_step"} - batch.keys()
        if missing:  # logged data: uniform weights; one-step transitions unless batched n_step
            batch = dict(batch)
            for key in missing:
                batch[key] = torch.ones_like(rewards)
        td_loss = super().compute_loss_for_module(
            module_id=module_id, config=config, batch=batch, fwd_out=fwd_out
        )
        penalty = conservative_penalty(fwd_out[QF_PREDS], batch[Columns.ACTIONS]).mean()
        self.metrics.log_value((module_id, CQL_LOSS_KEY), penalty, window=1)
        return td_loss + config.cql_alpha * penalty


class DiscreteCQL(DQN):
    """Discrete CQL trained from offline data (no environment sampling)."""

    @classmethod
    @override(DQN)
    def get_default_config(cls) -> DiscreteCQLConfig:
        return DiscreteCQLConfig()

    @override(DQN)
    def training_step(self) -> None:
        # As RLlib's offline algorithms (MARWIL/BC) do: sample batches through the offline data
        # pipeline, update the learner(s), count the rows as sampled steps (target-net updates are
        # scheduled on that count). Remote learners read their own streaming shards; a local
        # learner gets `dataset_num_iters_per_learner` batches one at a time, each counted before
        # its update so the target network follows the rows consumed.
        cfg = self.config
        remote = cfg.num_learners > 0
        updates = 1 if remote else max(1, cfg.dataset_num_iters_per_learner or 1)
        for _ in range(updates):
            with self.metrics.log_time((TIMERS, OFFLINE_SAMPLING_TIMER)):
                data = self.offline_data.sample(
                    num_samples=cfg.train_batch_size_per_learner,
                    num_shards=cfg.num_learners,
                    return_iterator=remote,
                )
                self.metrics.log_value(
                    key=NUM_ENV_STEPS_SAMPLED_LIFETIME,
                    value=cfg.train_batch_size_per_learner
                    * max(1, cfg.num_learners)
                    * ((cfg.dataset_num_iters_per_learner or 1) if remote else 1),
                    reduce="lifetime_sum",
                )
                training_data = (
                    TrainingData(data_iterators=data) if remote else TrainingData(batch=data)
                )
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                learner_results = self.learner_group.update(
                    training_data=training_data,
                    minibatch_size=cfg.train_batch_size_per_learner,
                    num_iters=cfg.dataset_num_iters_per_learner if remote else 1,
                    timesteps={
                        NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                            NUM_ENV_STEPS_SAMPLED_LIFETIME
                        )
                    },
                    **(self.offline_data.iter_batches_kwargs if remote else {}),
                )
                self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
