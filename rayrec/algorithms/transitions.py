"""Transitions as 2-step episodes (o_t, a_t, the n-step reward, o_(t+n)) and the learner
connector piece that batches them in bulk: what the fast replay sample and the offline n-step
reader build, and what DQN's and DiscreteCQL's learners consume."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.annotations import override

from rayrec.algorithms.episodes import episode_from_arrays

__all__ = ["TRANSITION_ID_PREFIX", "TransitionsToBatch", "transition_episode"]

# Ids of the 2-step episodes (TransitionsToBatch recognises them by it).
TRANSITION_ID_PREFIX = "rayrec-transition-"


def transition_episode(
    serial: int | str,
    observations: Any,
    action: np.ndarray,
    reward: np.ndarray,
    extras: dict[str, np.ndarray],
    *,
    t: int,
    terminated: bool,
    truncated: bool,
    spaces: tuple[Any, Any],
) -> SingleAgentEpisode:
    """The 2-step episode (o_t, a_t, r, o_(t+n)) of one transition, which TransitionsToBatch
    batches in bulk: ``observations`` holds rows t and t + n (an array or a dict of arrays with
    a leading dimension of 2), ``action``, ``reward`` and every extra one row each."""
    return episode_from_arrays(
        f"{TRANSITION_ID_PREFIX}{serial}",
        obs=observations,
        infos=[{}, {}],
        actions=action,
        rewards=reward,
        extras=extras,
        lookback=0,
        t_started=t,
        terminated=terminated,
        truncated=truncated,
        spaces=spaces,
        start_time=None,
        last_time=None,
    )


class TransitionsToBatch(ConnectorV2):
    """Learner connector piece: the train-batch columns of sampled transitions, in bulk.

    For a list of episodes that all come from :class:`FastPrioritizedEpisodeReplayBuffer`'s fast
    sample (2-step episodes: o_t, a_t, the n-step reward, o_(t+n)), adds ``obs``, ``new_obs``,
    ``actions``, ``rewards``, ``terminateds``, ``truncateds`` and the extra model outputs
    (``weights``, ``n_step``) as one batched item each, which RLlib's default pieces then skip
    (they add a column only when it is missing) and ``BatchIndividualItems`` passes through.
    Anything else is left to the default pieces unchanged.
    """

    @override(ConnectorV2)
    def __call__(
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any],
        episodes: list[Any],
        explore: bool | None = None,
        shared_data: dict | None = None,
        **kwargs: Any,
    ) -> Any:
        if not episodes or Columns.OBS in batch:
            return batch
        first = episodes[0]
        extras = first.extra_model_outputs.keys()
        if not all(
            isinstance(e, SingleAgentEpisode)
            and e.id_.startswith(TRANSITION_ID_PREFIX)
            and e.extra_model_outputs.keys() == extras
            for e in episodes
        ):
            return batch
        if isinstance(first.observations.data, dict):
            # (B, 2, ...) per key: rows t and t + n of every transition.
            pairs = {
                k: np.stack([e.observations.data[k] for e in episodes])
                for k in first.observations.data
            }
            obs = {k: v[:, 0] for k, v in pairs.items()}
            next_obs = {k: v[:, 1] for k, v in pairs.items()}
        else:
            pair = np.stack([e.observations.data for e in episodes])
            obs, next_obs = pair[:, 0], pair[:, 1]
        columns = {
            Columns.OBS: obs,
            Columns.NEXT_OBS: next_obs,
            Columns.ACTIONS: np.concatenate([e.actions.data for e in episodes]),
            Columns.REWARDS: np.concatenate([e.rewards.data for e in episodes]),
            Columns.TERMINATEDS: np.array([e.is_terminated for e in episodes]),
            Columns.TRUNCATEDS: np.array([e.is_truncated for e in episodes]),
        }
        for key in extras:
            columns[key] = np.concatenate([e.extra_model_outputs[key].data for e in episodes])
        for column, value in columns.items():
            self.add_n_batch_items(
                batch,
                column,
                items_to_add=value,
                num_items=len(episodes),
                single_agent_episode=first,
            )
        return batch
