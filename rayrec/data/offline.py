"""Offline training input: rayrec logs through RLlib's offline data API (Ray Data).

RLlib reads the parquet parts with ``ray.data.read_parquet`` and maps batches of rows through an
``OfflinePreLearner`` in Ray Data actors, so reading and decoding scale out with the cluster.
:class:`LogPreLearner` turns logged rows (item ids) back into the observations the RLModules
consume (features from the catalog of the log's world) and into one-step episodes, which RLlib's
learner connectors of the algorithm (DQN/CQL, BC, MARWIL) turn into train batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.offline.offline_prelearner import OfflinePreLearner

from rayrec.data.logs import validate_log
from rayrec.data.schema import Col, LogError, column_array, expand_observations
from rayrec.envs.observation import action_space, observation_space
from rayrec.sim import SimConfig
from rayrec.sim.catalog import world_catalog
from rayrec.specs import EnvSpec, SpecError

__all__ = ["LogPreLearner", "configure_offline", "log_env"]


class LogPreLearner(OfflinePreLearner):
    """Rows of a rayrec log -> one-step :class:`SingleAgentEpisode` s -> the learner connector."""

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self._sim_config = SimConfig.from_dict(dict(config.env_config["config"]))
        self._catalog = world_catalog(self._sim_config)

    def _map_to_episodes(
        self, batch: dict[str, Any], to_numpy: bool = False, **kwargs: Any
    ) -> dict[str, list[SingleAgentEpisode]]:
        n = len(batch[Col.REWARD])
        cfg = self._sim_config
        obs = expand_observations(batch, self._catalog, cfg)
        nxt = expand_observations(batch, self._catalog, cfg, Col.NEXT)
        actions = column_array(batch[Col.ACTION], n).astype(np.int64)
        if cfg.slate_size == 1:
            actions = actions[:, 0]
        rewards = np.asarray(batch[Col.REWARD], dtype=np.float32)
        terminated = np.asarray(batch[Col.TERMINATED], dtype=bool)
        truncated = np.asarray(batch[Col.TRUNCATED], dtype=bool)
        episode_ids = np.asarray(batch[Col.EPISODE_ID])
        steps = np.asarray(batch[Col.T])
        episodes = []
        for i in range(n):
            episode = SingleAgentEpisode(
                id_=f"{episode_ids[i]}-{steps[i]}",
                observations=[
                    {key: value[i] for key, value in obs.items()},
                    {key: value[i] for key, value in nxt.items()},
                ],
                actions=[actions[i]],
                rewards=[float(rewards[i])],
                terminated=bool(terminated[i]),
                truncated=bool(truncated[i]),
                len_lookback_buffer=0,
            )
            if to_numpy:
                episode.to_numpy()
            episodes.append(episode)
        return {"episodes": episodes}


def log_env(data: str | Path) -> EnvSpec:
    """The environment spec a log was collected in (validated log)."""
    try:
        meta, _ = validate_log(data)
        return EnvSpec.from_dict(meta["env"], f"{data}/log.json")
    except LogError as e:
        raise SpecError(str(e)) from e


def configure_offline(config: Any, data: str | Path, env: EnvSpec) -> Any:
    """Point ``config`` (an AlgorithmConfig) at the log folder ``data`` collected in ``env``.

    The log must come from the same world (catalog) and shapes as ``env``; its parts are read
    with Ray Data and decoded by :class:`LogPreLearner`.
    """
    try:
        meta, files = validate_log(data)
    except LogError as e:
        raise SpecError(str(e)) from e
    from rayrec.algorithms.cql import DiscreteCQLConfig

    if isinstance(config, DiscreteCQLConfig) and env.config.slate_size != 1:
        raise SpecError(
            f"DiscreteCQL learns Q-values of single items: slate_size must be 1, "
            f"got {env.config.slate_size} (use BC or MARWIL for slates)"
        )
    logged = SimConfig.from_dict(meta["env"]["config"])
    for field in ("world_seed", "num_items", "embed_dim", "num_candidates", "slate_size"):
        if getattr(logged, field) != getattr(env.config, field):
            raise SpecError(
                f"--data {data}: logged with {field}={getattr(logged, field)}, "
                f"but the env spec has {field}={getattr(env.config, field)}"
            )
    if logged.history_len != env.config.history_len:
        raise SpecError(
            f"--data {data}: logged with history_len={logged.history_len}, "
            f"the env spec has {env.config.history_len}"
        )
    # Offline algorithms build no env to learn the spaces from.
    config.environment(
        observation_space=observation_space(env.config), action_space=action_space(env.config)
    )
    config.offline_data(
        input_=[str(Path(f).resolve()) for f in files],
        input_read_method="read_parquet",
        # Read tasks ask for a quarter CPU: with a remote learner holding a whole CPU of a small
        # machine, 1-CPU read tasks would never be scheduled and the pipeline would stall.
        input_read_method_kwargs={"num_cpus": 0.25},
        prelearner_class=LogPreLearner,
        # One decoding actor with half a CPU leaves room for the learner on 2 CPUs; on a
        # cluster raise it with --set offline_data.map_batches_kwargs=...
        map_batches_kwargs={"concurrency": 1, "num_cpus": 0.5},
        # Equal-sized batches: the last, partial batch of a pass is dropped (RLlib's per-batch
        # metrics cannot stack unequal batches, and the next pass reads it again, reshuffled).
        iter_batches_kwargs={"prefetch_batches": 2, "drop_last": True},
        dataset_num_iters_per_learner=1,
    )
    return config
