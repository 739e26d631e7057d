"""Offline training input: rayrec logs through RLlib's offline data API (Ray Data).

RLlib reads the parquet parts with ``ray.data.read_parquet`` and maps batches of rows through an
``OfflinePreLearner`` in Ray Data actors, so reading and decoding scale out with the cluster.
:class:`LogPreLearner` turns logged rows (item ids) back into the observations the RLModules
consume (features from the catalog of the log's world) and into one-step episodes, which RLlib's
learner connectors of the algorithm (DQN/CQL, BC, MARWIL, TopKReinforce) turn into train batches.

For Q-learning from logs (DiscreteCQL) with ``n_step`` > 1, :class:`LogOfflineData` first turns
the rows into n-step transitions: Ray Data groups the rows by episode (``groupby`` +
``map_groups``, which also scales out) and :func:`n_step_rows` replaces each row's reward by the
discounted sum of the next n logged rewards and its next observation by the one n steps later.
For REINFORCE from logs (TopKReinforce) it adds, the same way, each row's discounted return over
the rest of its logged lifetime (:func:`return_rows`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import DataContext
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.offline.offline_data import OfflineData
from ray.rllib.offline.offline_prelearner import OfflinePreLearner

from rayrec.algorithms.cql import DiscreteCQLConfig
from rayrec.algorithms.topk_reinforce import LOGGED_PROPENSITY, RETURNS, TopKReinforceConfig
from rayrec.algorithms.transitions import transition_episode
from rayrec.contracts.errors import SpecError
from rayrec.data.logs import validate_log
from rayrec.data.schema import OBS_COLUMNS, Col, LogError, column_array, expand_observations
from rayrec.envs.observation import action_space, observation_space
from rayrec.sim import SimConfig
from rayrec.sim.catalog import world_catalog
from rayrec.specs import EnvSpec

__all__ = [
    "N_STEP_COLUMN",
    "LogOfflineData",
    "LogPreLearner",
    "check_propensities",
    "configure_offline",
    "discounted_returns",
    "log_env",
    "n_step_rows",
    "return_rows",
]

N_STEP_COLUMN = "n_step"
"""Column added by :func:`n_step_rows`: how many logged steps a row's reward sums (1..n)."""

# Rows per group of episodes that n_step_rows rewrites at once (in the mean).
_ROWS_PER_BUCKET = 16_384
_BUCKET = "_bucket"
# Rows mixed by the local shuffle of the batches the learner reads, in train batches.
_SHUFFLE_BATCHES = 8


def n_step_rows(rows: pa.Table, n: int, gamma: float) -> pa.Table:
    """The n-step transitions of logged rows that hold whole episodes (in any order).

    Rows are sorted by episode and ``t``. Row t gets ``reward`` = sum_{i < m} gamma^i r_(t+i),
    the ``next_*`` observation and the ``terminated``/``truncated`` flags of row t + m - 1, and
    ``n_step`` = m, where m <= n stops at the episode's last logged row and before a gap in ``t``
    (a missing row): a transition never spans rows the log does not have. The TD target
    bootstraps with gamma^m from that observation unless it is terminal. With n = 1 every row
    keeps its values (and gets ``n_step`` = 1).
    """
    count = rows.num_rows
    episode = rows.column(Col.EPISODE_ID).to_numpy()
    t = rows.column(Col.T).to_numpy()
    order = np.lexsort((t, episode))
    if not np.array_equal(order, np.arange(count)):
        rows, episode, t = rows.take(pa.array(order)), episode[order], t[order]
    index = np.arange(count)
    # Last row of each row's run: the episode's end, or the row before a gap in t.
    breaks = np.flatnonzero((np.diff(t) != 1) | (np.diff(episode) != 0))
    run_end = np.append(breaks, count - 1)[np.searchsorted(breaks, index)]
    last = np.minimum(index + n - 1, run_end)
    rewards = rows.column(Col.REWARD).to_numpy().astype(np.float64)
    total = np.zeros(count)
    for i in range(n):  # vectorised over rows; n is small
        ahead = index + i
        ok = ahead <= last
        total[ok] += gamma**i * rewards[ahead[ok]]
    take = pa.array(last)
    replaced = {Col.NEXT + c for c in OBS_COLUMNS} | {Col.TERMINATED, Col.TRUNCATED}
    columns = {}
    for name in rows.column_names:
        if name == Col.REWARD:
            columns[name] = pa.array(total.astype(np.float32))
        elif name in replaced:
            columns[name] = rows.column(name).take(take)
        else:
            columns[name] = rows.column(name)
    columns[N_STEP_COLUMN] = pa.array((last - index + 1).astype(np.int32))
    return pa.table(columns)


def discounted_returns(
    episode: np.ndarray, t: np.ndarray, rewards: np.ndarray, gamma: float
) -> np.ndarray:
    """(n,) R_t = sum_{j >= 0} gamma^j r_(t+j) over the rest of each row's logged lifetime.

    Rows may come in any order; the result is in theirs. A return runs to the episode's last
    logged row and stops before a gap in ``t`` (a row the log lacks: what followed is unknown),
    and nothing is bootstrapped at a truncation (REINFORCE has no critic).
    """
    count = len(rewards)
    order = np.lexsort((t, episode))
    episode, t = np.asarray(episode)[order], np.asarray(t)[order]
    sorted_rewards = np.asarray(rewards, dtype=np.float64)[order]
    index = np.arange(count)
    breaks = np.flatnonzero((np.diff(t) != 1) | (np.diff(episode) != 0))
    run_end = np.append(breaks, count - 1)[np.searchsorted(breaks, index)]
    # Rows grouped by their distance to the run's end: one vectorised step per distance.
    to_end = run_end - index
    by_distance = np.argsort(to_end, kind="stable")
    starts = np.searchsorted(to_end[by_distance], np.arange(to_end.max(initial=0) + 2))
    out = sorted_rewards.copy()
    for k in range(1, len(starts) - 1):
        rows = by_distance[starts[k] : starts[k + 1]]
        out[rows] += gamma * out[rows + 1]
    result = np.empty(count)
    result[order] = out
    return result


def return_rows(rows: pa.Table, gamma: float) -> pa.Table:
    """Logged rows that hold whole episodes, with the ``returns`` column of
    :func:`discounted_returns` (float32) appended; rows keep their order."""
    returns = discounted_returns(
        rows.column(Col.EPISODE_ID).to_numpy(),
        rows.column(Col.T).to_numpy(),
        rows.column(Col.REWARD).to_numpy(),
        gamma,
    )
    return rows.append_column(RETURNS, pa.array(returns.astype(np.float32)))


def _add_bucket(rows: pa.Table, buckets: int) -> pa.Table:
    """``map_batches`` function: the ``_bucket`` column, episode id modulo ``buckets``."""
    episode = rows.column(Col.EPISODE_ID).to_numpy()
    return rows.append_column(_BUCKET, pa.array(episode % buckets))


@contextmanager
def _ordered_blocks() -> Iterator[None]:
    """Datasets created inside keep their blocks in order (``preserve_order``).

    A Dataset copies the process's ``DataContext`` when it is created, so the setting travels with
    the log's dataset (and those derived from it) and the process's own context is restored. Without
    it Ray Data hands blocks on as its tasks finish: the same log, seed and code trained different
    CQL models (a 4-iteration run evaluated 12.94 and 13.14 on the same 200 users).
    """
    context = DataContext.get_current()
    before = context.execution_options.preserve_order
    context.execution_options.preserve_order = True
    try:
        yield
    finally:
        context.execution_options.preserve_order = before


class LogOfflineData(OfflineData):
    """RLlib's ``OfflineData`` over a rayrec log, with n-step transitions for DiscreteCQL and
    lifetime returns for TopKReinforce.

    With ``n_step`` > 1 the rows are grouped by episode and rewritten by :func:`n_step_rows`; for
    TopKReinforce :func:`return_rows` adds the returns the same way (either materialized once, so
    every pass over the data reuses it). The batches the learner reads are
    shuffled locally over ``_SHUFFLE_BATCHES`` train batches of rows, seeded by the run's seed:
    the log holds a lifetime's rows together, and SGD on one user's steps at a time learns worse.
    A user's own ``iter_batches_kwargs`` shuffle settings win.
    """

    def __init__(self, config: Any) -> None:
        with _ordered_blocks():
            super().__init__(config)
            self._rewrite(config)
        shuffle = {
            "local_shuffle_buffer_size": _SHUFFLE_BATCHES * config.train_batch_size_per_learner,
            "local_shuffle_seed": config.seed,
        }
        self.iter_batches_kwargs = shuffle | self.iter_batches_kwargs

    def _rewrite(self, config: Any) -> None:
        n = offline_n_step(config)
        if n > 1:
            rewrite, kwargs = n_step_rows, {"n": n, "gamma": float(config.gamma)}
        elif isinstance(config, TopKReinforceConfig):
            rewrite, kwargs = return_rows, {"gamma": float(config.gamma)}
        else:
            return
        # Grouping by episode id modulo a bucket count keeps every episode whole inside one
        # group and lets the rewrite handle many episodes per call (one call per episode
        # costs seconds per 100k rows).
        buckets = max(1, -(-self.data.count() // _ROWS_PER_BUCKET))
        self.data = (
            self.data.map_batches(
                _add_bucket, batch_format="pyarrow", fn_kwargs={"buckets": buckets}
            )
            .groupby(_BUCKET, num_partitions=buckets)
            .map_groups(rewrite, batch_format="pyarrow", fn_kwargs=kwargs)
            .drop_columns([_BUCKET])
            .materialize()
        )


def offline_n_step(config: Any) -> int:
    """The n-step length of Q-learning from logs: DiscreteCQL's ``n_step`` (its ``validate``
    checks it is a whole number >= 1); 1 for the other algorithms, which read the rows as logged."""
    return config.n_step if isinstance(config, DiscreteCQLConfig) else 1


class LogPreLearner(OfflinePreLearner):
    """Rows of a rayrec log -> one-step :class:`SingleAgentEpisode` s -> the learner connector."""

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self._sim_config = SimConfig.from_dict(dict(config.env_config["config"]))
        self._catalog = world_catalog(self._sim_config)
        # DiscreteCQL's and TopKReinforce's learner connectors start with TransitionsToBatch,
        # which batches transition episodes in bulk; the other algorithms' connectors read plain
        # episodes.
        self._reinforce = isinstance(config, TopKReinforceConfig)
        self._transitions = self._reinforce or isinstance(config, DiscreteCQLConfig)
        self._spaces = (observation_space(self._sim_config), action_space(self._sim_config))
        self._serial = 0

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
        if self._transitions:
            columns = (actions, rewards, terminated, truncated, steps)
            return {"episodes": self._transitions_of(batch, obs, nxt, *columns)}
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

    def _transitions_of(
        self,
        batch: dict[str, Any],
        obs: dict[str, np.ndarray],
        nxt: dict[str, np.ndarray],
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        t: np.ndarray,
    ) -> list[SingleAgentEpisode]:
        """One transition episode per row (o_t, a_t, the row's (n-step) reward, o_(t+n)), with
        DiscreteCQL's ``weights`` and ``n_step`` or TopKReinforce's return and logged propensity."""
        n = len(rewards)
        pairs = {k: np.stack([obs[k], nxt[k]], axis=1) for k in obs}
        if self._reinforce:
            extras = {
                RETURNS: np.asarray(batch[RETURNS], dtype=np.float32),
                LOGGED_PROPENSITY: np.asarray(batch[Col.PROPENSITY], dtype=np.float32),
            }
        else:
            steps = (
                np.asarray(batch[N_STEP_COLUMN], dtype=np.float32)
                if N_STEP_COLUMN in batch
                else np.ones(n, dtype=np.float32)
            )
            extras = {"weights": np.ones(n, dtype=np.float32), "n_step": steps}
        terminated, truncated, t = terminated.tolist(), truncated.tolist(), t.tolist()
        first = self._serial
        self._serial += n
        return [
            transition_episode(
                first + i,
                {k: v[i] for k, v in pairs.items()},
                actions[i : i + 1],
                rewards[i : i + 1],
                {key: value[i : i + 1] for key, value in extras.items()},
                t=t[i],
                terminated=terminated[i],
                truncated=truncated[i],
                spaces=self._spaces,
            )
            for i in range(n)
        ]


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
    if isinstance(config, DiscreteCQLConfig) and env.config.slate_size != 1:
        raise SpecError(
            f"DiscreteCQL learns Q-values of single items: slate_size must be 1, "
            f"got {env.config.slate_size} (use BC or MARWIL for slates)"
        )
    if isinstance(config, TopKReinforceConfig) and env.config.slate_size != 1:
        raise SpecError(
            f"TopKReinforce learns from one logged item per row: slate_size must be 1, "
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
        offline_data_class=LogOfflineData,
        # One decoding actor with half a CPU leaves room for the learner on 2 CPUs; on a
        # cluster raise it with --set offline_data.map_batches_kwargs=...
        map_batches_kwargs={"concurrency": 1, "num_cpus": 0.5},
        # Equal-sized batches: the last, partial batch of a pass is dropped (RLlib's per-batch
        # metrics cannot stack unequal batches, and the next pass reads it again, reshuffled).
        iter_batches_kwargs={"prefetch_batches": 2, "drop_last": True},
        dataset_num_iters_per_learner=1,
    )
    return config


def check_propensities(config: Any, data: str | Path) -> None:
    """TopKReinforce with ``behavior_propensity: logged`` needs every row's logged propensity to
    be a probability in (0, 1]; SpecError (one line) otherwise. Reads that one column only."""
    if not isinstance(config, TopKReinforceConfig) or config.behavior_propensity != "logged":
        return
    try:
        _, files = validate_log(data)
    except LogError as e:
        raise SpecError(str(e)) from e
    bad = rows = 0
    for path in files:
        column = pq.read_table(path, columns=[Col.PROPENSITY]).column(Col.PROPENSITY)
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        rows += len(values)
        bad += int(np.sum(~(np.isfinite(values) & (values > 0) & (values <= 1))))
    if bad:
        raise SpecError(
            f"--data {data}: {bad} of {rows} rows have no valid logged propensity (column "
            f"{Col.PROPENSITY!r} not in (0, 1]); set training.behavior_propensity=learned to use "
            "the behaviour head's estimate"
        )
