"""The one adapter between ``rayrec.ope`` and the rest of rayrec: simulator logs and policies.

Every import of rayrec outside ``rayrec.ope`` and ``rayrec.datasets`` lives in this module, so a
restructuring of the package only has to fix the imports here.

It turns a ``rayrec collect`` log (``rayrec.data``) and an evaluation policy into the arrays the
numpy estimators take (:class:`StepLog`, :class:`SlateLog`, :class:`TrajectoryLog`), and computes
the ground truth by playing the policy in the simulator of the log's world.

Evaluation policies: the baselines that see only the observation (``random``, ``popular``,
``heuristic``; ``greedy`` and ``longterm`` peek at the latent user state, which a log does not
hold) and any rayrec checkpoint, whose distribution over the logged candidates is the softmax of
its scores (Plackett-Luce for slates), as ``collect --behavior checkpoint:PATH`` samples it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from rayrec.contracts.layout import find_run_dir
from rayrec.contracts.observation import Obs
from rayrec.data.logs import LogWriter, read_log, read_log_meta, write_log_folder
from rayrec.data.schema import Col, LogError, column_array, expand_observations, log_schema
from rayrec.evaluation.baselines import (
    ObservedHeuristicPolicy,
    PopularPolicy,
    RandomPolicy,
)
from rayrec.evaluation.collect import parse_behavior, run_behavior
from rayrec.evaluation.policies import ModulePolicy
from rayrec.evaluation.simulate import evaluate
from rayrec.ope.lifetimes import LifetimeIndex, lifetime_index, padded_trajectories
from rayrec.ope.network_fqe import NetworkFQEConfig, fit_network_fqe
from rayrec.ope.slate import SlateLog
from rayrec.ope.step import StepLog
from rayrec.ope.trajectory import TrajectoryLog
from rayrec.sim import SimConfig
from rayrec.sim.catalog import world_catalog
from rayrec.specs import EnvSpec, SpecError, load_run_spec, load_yaml

__all__ = [
    "PEEKING",
    "SIM_POLICIES",
    "USER_ERRORS",
    "EvalPolicy",
    "SimLogs",
    "collect_with_step_truth",
    "ground_truth",
    "load_env",
    "load_sim_logs",
    "load_step_log",
    "make_eval_policy",
]

SIM_POLICIES = ("random", "popular", "heuristic")
"""Baselines evaluable from logs (they see only the observation)."""
PEEKING = ("greedy", "longterm")
USER_ERRORS = (LogError, SpecError)
"""Errors of rayrec internals that are the user's input (one line, exit 2)."""
WORLD_FIELDS = (
    "world_seed",
    "num_items",
    "embed_dim",
    "num_topics",
    "num_candidates",
    "slate_size",
    "history_len",
)
"""SimConfig fields that make a world: a checkpoint and a log must agree on all of them."""
CHUNK = 20_000


class _SlateSize:
    """What a baseline's ``act`` reads from the simulator besides the observation: the slate size
    (``config.slate_size``); the non-peeking baselines read nothing else."""

    def __init__(self, k: int) -> None:
        self.config = SimpleNamespace(slate_size=k)


@dataclass(frozen=True)
class EvalPolicy:
    """An evaluation policy on simulator observations."""

    name: str
    scores: Callable[[dict[str, np.ndarray]], np.ndarray] | None
    """(B, M) logits of a stochastic policy (softmax / Plackett-Luce); None for a deterministic one."""
    act: Callable[[dict[str, np.ndarray], Any], np.ndarray] | None
    """(B, k) slate of a deterministic policy; None for a stochastic one."""
    simulator_policy: Any
    """The same policy as rayrec.evaluation plays it (for the ground truth)."""

    def sequential_probs(self, obs: dict[str, np.ndarray], slate: np.ndarray, k: int) -> np.ndarray:
        """(B, k) probability of the logged item at j given the logged items above it."""
        mask = obs[Obs.ACTION_MASK].astype(bool).copy()
        rows = np.arange(len(slate))
        if self.act is not None:
            own = self.act(obs, _SlateSize(k))
            return np.cumprod(own == slate, axis=1).astype(np.float64)
        logits = np.asarray(self.scores(obs), dtype=np.float64)
        probs = np.empty(slate.shape)
        for j in range(k):
            masked = np.where(mask, logits, -np.inf)
            top = masked.max(axis=1, keepdims=True)
            weights = np.where(mask, np.exp(masked - top), 0.0)
            probs[:, j] = weights[rows, slate[:, j]] / weights.sum(axis=1)
            mask[rows, slate[:, j]] = False
        return probs

    def distribution(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(B, M) probability of every candidate as the single item of the decision."""
        mask = obs[Obs.ACTION_MASK].astype(bool)
        if self.act is not None:
            return np.eye(mask.shape[1])[self.act(obs, _SlateSize(1))[:, 0]]
        logits = np.where(mask, np.asarray(self.scores(obs), dtype=np.float64), -np.inf)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        return weights / weights.sum(axis=1, keepdims=True)


MODES = ("sample", "greedy")
"""How a checkpoint chooses: its softmax (Plackett-Luce for slates, as Serve's ``mode: sample``
and ``collect --behavior checkpoint:``) or its top k (as ``rayrec evaluate`` and ``mode: greedy``)."""


def make_eval_policy(
    name: str, config: SimConfig, seed: int = 0, mode: str = "sample"
) -> EvalPolicy:
    """The evaluation policy ``name``: a non-peeking baseline or a checkpoint path, which chooses
    by ``mode`` (:data:`MODES`; the baselines have one way to choose and refuse ``greedy`` unless
    they are deterministic already)."""
    if mode not in MODES:
        raise SpecError(f"--mode {mode!r}: unknown; known: {', '.join(MODES)}")
    if name == "random" and mode == "greedy":
        raise SpecError("--mode greedy: random has no top k (greedy applies to checkpoints)")
    if name in PEEKING:
        raise SpecError(
            f"--policy {name} peeks at the latent user state, which logs do not hold; "
            f"evaluable from logs: {', '.join(SIM_POLICIES)} or a checkpoint"
        )
    if name == "random":
        return EvalPolicy(
            name, lambda obs: np.zeros(obs[Obs.ACTION_MASK].shape), None, RandomPolicy(seed)
        )
    if name in ("popular", "heuristic"):
        policy = PopularPolicy() if name == "popular" else ObservedHeuristicPolicy()
        return EvalPolicy(name, None, policy.act, policy)
    path = Path(name)
    if not path.exists():
        raise SpecError(
            f"--policy {name!r}: neither a policy ({', '.join(SIM_POLICIES)}) nor a checkpoint"
        )
    _check_world(path, config)
    module = ModulePolicy.from_checkpoint(path)
    if mode == "greedy":
        return EvalPolicy(name, None, module.act, module)
    return EvalPolicy(
        name, module.scores, None, ModulePolicy(module.module, greedy=False, seed=seed)
    )


def _check_world(checkpoint: Path, config: SimConfig) -> None:
    run = find_run_dir(checkpoint.resolve())
    if run is None:
        raise SpecError(f"--policy {checkpoint}: no spec.yaml above it; cannot check its world")
    trained = load_run_spec(run)[0].config
    for field in WORLD_FIELDS:
        mine, theirs = getattr(trained, field), getattr(config, field)
        if mine != theirs:
            raise SpecError(
                f"--policy {checkpoint} comes from another world: {field} {mine} "
                f"(its run) against {theirs} (the log)"
            )


@dataclass(frozen=True)
class SimLogs:
    """A simulator log prepared for every level, and what is known about the truth."""

    config: SimConfig
    meta: dict[str, Any]
    step: StepLog | None
    """None when the log has slates (k > 1): use the slate level."""
    slate: SlateLog
    trajectory: TrajectoryLog
    q_values: tuple[np.ndarray, np.ndarray] | None = None
    """(Q, V), each (N, T), of the network FQE when asked for (``fqe`` and ``dr-rl`` use them)."""


def _features(obs: dict[str, np.ndarray]) -> np.ndarray:
    """(B, M, 4) observable action features: log-popularity, CTR and watch estimates, affinity.

    Affinity is the cosine of the item with the watch-weighted clicked history (the interest
    estimate of the ``heuristic`` baseline).
    """
    responses, hmask = obs[Obs.HISTORY_RESPONSES], obs[Obs.HISTORY_MASK]
    weight = responses[:, :, 0] * hmask * (0.5 + responses[:, :, 1])
    interest = np.einsum("bh,bhd->bd", weight, obs[Obs.HISTORY_FEATURES])
    interest /= np.maximum(np.linalg.norm(interest, axis=1, keepdims=True), 1e-6)
    affinity = np.einsum("bd,bmd->bm", interest, obs[Obs.CANDIDATE_FEATURES])
    scalars = obs[Obs.CANDIDATE_SCALARS][:, :, :3]
    return np.concatenate([scalars, affinity[:, :, None]], axis=2).astype(np.float32)


@dataclass(frozen=True)
class _Rows:
    """The logged rows of a simulator log with the evaluation policy computed on each."""

    config: SimConfig
    meta: dict[str, Any]
    columns: dict[str, Any]
    propensities: np.ndarray
    """(n, k) sequential behaviour probabilities."""
    action: np.ndarray
    """(n, k) logged candidate indices."""
    eval_seq: np.ndarray
    """(n, k) the evaluation policy's sequential probabilities of the logged slate."""
    dist: np.ndarray | None
    """(n, M) the evaluation policy's distribution over the candidates (k = 1 only)."""
    feats: np.ndarray
    """(n, M, 4) observable action features."""
    reward: np.ndarray
    context: np.ndarray
    obs: dict[str, np.ndarray] | None = None
    """Every row's observation (only when read with ``keep_obs``)."""

    @property
    def n(self) -> int:
        return len(self.reward)


def _read_rows(
    folder: str | Path,
    policy_name: str,
    seed: int,
    mode: str,
    max_rows: int | None = None,
    keep_obs: bool = False,
) -> tuple[_Rows, EvalPolicy, int]:
    """The log's rows (a seeded uniform sample of ``max_rows`` of them when it has more) with the
    evaluation policy on each; also the policy and the log's number of rows. ``keep_obs`` keeps
    every row's observation (``_Rows.obs``)."""
    table = read_log(folder)
    meta = read_log_meta(folder)
    config = SimConfig.from_dict(meta["env"]["config"])
    policy = make_eval_policy(policy_name, config, seed, mode)
    total = table.num_rows
    if max_rows is not None and total > max_rows:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A3]))
        table = table.take(np.sort(rng.choice(total, max_rows, replace=False)))
    catalog = world_catalog(config)
    k = config.slate_size
    columns = {name: table.column(name) for name in table.column_names}
    n = table.num_rows
    propensities = column_array(columns[Col.PROPENSITIES], n).astype(np.float64)
    if not np.all(np.isfinite(propensities)) or np.any(propensities <= 0):
        raise LogError(f"{folder}: rows without valid propensities (column {Col.PROPENSITIES!r})")
    action = column_array(columns[Col.ACTION], n).astype(np.int64)
    m = config.num_candidates
    eval_seq = np.empty((n, k))
    dist = np.empty((n, m)) if k == 1 else None
    feats = np.empty((n, m, 4), dtype=np.float32)
    kept: list[dict[str, np.ndarray]] = []
    for start in range(0, n, CHUNK):
        part = {name: col.slice(start, CHUNK) for name, col in columns.items()}
        obs = expand_observations(part, catalog, config)
        if keep_obs:
            kept.append(obs)
        stop = start + len(obs[Obs.ACTION_MASK])
        eval_seq[start:stop] = policy.sequential_probs(obs, action[start:stop], k)
        feats[start:stop] = _features(obs)
        if dist is not None:
            dist[start:stop] = policy.distribution(obs)
    reward = columns[Col.REWARD].to_numpy().astype(np.float64)
    context = column_array(columns[Col.CONTEXT], n).astype(np.float64)
    rows = _Rows(
        config, meta, columns, propensities, action, eval_seq, dist, feats, reward, context
    )
    if keep_obs:
        rows = replace(rows, obs={key: np.concatenate([o[key] for o in kept]) for key in kept[0]})
    return rows, policy, total


def _step_log(rows: _Rows) -> StepLog | None:
    """The step-level log of single-item decisions; None for slates (k > 1)."""
    if rows.dist is None:
        return None
    return StepLog(
        reward=rows.reward,
        pscore=rows.propensities[:, 0],
        action=rows.action[:, 0],
        eval_dist=rows.dist,
        context=rows.context,
        action_features=rows.feats,
    )


def load_sim_logs(
    folder: str | Path,
    policy_name: str,
    seed: int = 0,
    mode: str = "sample",
    network_fqe: NetworkFQEConfig | None = None,
    gamma: float = 1.0,
) -> tuple[SimLogs, EvalPolicy]:
    """Read a ``rayrec collect`` log and compute the evaluation policy (choosing by ``mode``) on
    every logged row. With ``network_fqe`` also fit FQE with rayrec's candidate Q network on the
    whole log (discount ``gamma``; single-item decisions only): ``SimLogs.q_values``."""
    rows, policy, _ = _read_rows(folder, policy_name, seed, mode, keep_obs=network_fqe is not None)
    n, k = rows.n, rows.config.slate_size
    responses_click = column_array(rows.columns[Col.CLICK_POSITION], n).reshape(n)
    per_position = np.zeros((n, k))
    clicked = responses_click >= 0
    per_position[np.flatnonzero(clicked), responses_click[clicked]] = rows.reward[clicked]
    slate = SlateLog(rewards=per_position, behavior_seq=rows.propensities, eval_seq=rows.eval_seq)
    index = lifetime_index(rows.columns[Col.EPISODE_ID].to_numpy(), rows.columns[Col.T].to_numpy())
    trajectory = padded_trajectories(
        index,
        n,
        rows.reward,
        rows.eval_seq.prod(axis=1),
        rows.propensities,
        rows.action,
        rows.feats,
        rows.dist,
        rows.context,
        rows.config,
    )
    q_values = None
    if network_fqe is not None:
        q, v = _network_q_values(rows, index, gamma, network_fqe)
        q_values = (index.pad(q), index.pad(v))
    return SimLogs(rows.config, rows.meta, _step_log(rows), slate, trajectory, q_values), policy


def fqe_network(config: SimConfig, seed: int = 0) -> Any:
    """The network FQE fits: rayrec's candidate Q network (DQN family: dueling, the gated
    history pool, the candidate context and the relation head of ``policies/apex_dqn.yaml``),
    initialised from ``seed``."""
    import torch

    from rayrec.contracts.model_config import ModelConfig
    from rayrec.envs.observation import observation_space
    from rayrec.models.q_module import CandidateQNetwork

    model = ModelConfig(encoder="gated", hidden=64, candidate_context=True, relations=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return CandidateQNetwork(observation_space(config), model, dueling=True, atoms=1)


def _network_q_values(
    rows: _Rows, index: LifetimeIndex, gamma: float, config: NetworkFQEConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(Q(s_i, a_i), V(s_i)) per logged row from the candidate Q network fitted by FQE."""
    if rows.dist is None or rows.obs is None:
        raise SpecError(
            f"network FQE needs single-item decisions; this log has slates of "
            f"{rows.config.slate_size}"
        )
    return fit_network_fqe(
        fqe_network(rows.config, config.seed),
        rows.obs,
        rows.action[:, 0],
        rows.reward,
        index.next_row,
        rows.dist,
        gamma,
        config,
    )


def load_step_log(
    folder: str | Path,
    policy_name: str,
    seed: int = 0,
    mode: str = "sample",
    max_rows: int | None = None,
) -> tuple[StepLog, int]:
    """The step-level log of a ``rayrec collect`` (or served) log for the evaluation policy, on a
    seeded uniform sample of ``max_rows`` rows when it has more; also its number of rows.

    Raises :class:`SpecError` for slates (k > 1: use :func:`load_sim_logs`' slate level) and the
    errors of :data:`USER_ERRORS` for logs without valid propensities and foreign checkpoints.
    """
    rows, _, total = _read_rows(folder, policy_name, seed, mode, max_rows)
    step = _step_log(rows)
    if step is None:
        raise SpecError(
            f"{folder} logs slates of {rows.config.slate_size}: no step-level estimates"
        )
    return step, total


def ground_truth(logs: SimLogs, policy: EvalPolicy) -> float:
    """Mean lifetime return of the policy played in the log's world, same seed, same user count.

    A served log (``rayrec data from-served``) records no simulator seed: its world is played with
    seed 0, other users than the log's."""
    result = evaluate(
        policy.simulator_policy,
        logs.config,
        users=int(logs.meta["episodes"]),
        seed=int(logs.meta.get("seed", 0)),
    )
    return float(result["return_mean"])


def load_env(path: str | Path) -> EnvSpec:
    """An environment spec (``envs/*.yaml``)."""
    return EnvSpec.from_dict(load_yaml(path), str(path))


class _RecordingBehavior:
    """A behaviour policy that, before acting, records every evaluation policy's expected
    immediate reward on the current states: sum_a pi_e(a | x) P(click | a, latent state)."""

    def __init__(self, inner: Any, policies: dict[str, EvalPolicy], reward_click: float) -> None:
        self.inner, self.policies, self.reward_click = inner, policies, reward_click
        self.name = inner.name
        self.keys: list[np.ndarray] = []
        self.values: dict[str, list[np.ndarray]] = {name: [] for name in policies}

    def act(self, obs: dict[str, np.ndarray], sim: Any) -> np.ndarray:
        click = sim.oracle_click_probability().astype(np.float64)
        key = sim.user_id.astype(np.int64) * 1_000_000 + sim.lifetime_steps.astype(np.int64)
        self.keys.append(key)
        for name, policy in self.policies.items():
            expected = (policy.distribution(obs) * click).sum(axis=1) * self.reward_click
            self.values[name].append(expected)
        slate = self.inner.act(obs, sim)
        self.last_propensities = self.inner.last_propensities
        self.last_propensity = self.inner.last_propensity
        return slate


def collect_with_step_truth(
    env: EnvSpec,
    behavior: str,
    users: int,
    out: str | Path,
    seed: int,
    policies: dict[str, EvalPolicy],
) -> dict[str, float]:
    """``rayrec collect`` that also returns each policy's true step-level value on the log.

    The step-level estimand is the evaluation policy's mean immediate reward on the logged
    states; the simulator knows it exactly while logging (the click probability of every
    candidate in the current latent state). Only for k = 1 and a click-only reward.
    """
    config = env.config
    if config.slate_size != 1:
        raise SpecError("the step-level truth needs slate_size 1")
    if any(getattr(config, f) != 0 for f in ("reward_watch", "reward_like", "reward_skip")):
        raise SpecError("the step-level truth needs a click-only reward")
    out = Path(out)
    recorder = _RecordingBehavior(
        parse_behavior(behavior, seed=seed), policies, config.reward_click
    )
    meta: dict[str, Any] = {"env": env.to_dict(), "behavior": behavior, "seed": seed}

    def fill(writer: LogWriter) -> dict[str, Any]:
        returns = run_behavior(recorder, config, users, seed, 1024, writer)
        return {"episodes": users, "behavior_return_mean": float(returns.mean())}

    write_log_folder(out, log_schema(config, meta), meta, fill)
    table = read_log(out, columns=[Col.EPISODE_ID, Col.T])
    logged = table.column(Col.EPISODE_ID).to_numpy() * 1_000_000 + table.column(Col.T).to_numpy()
    keys = np.concatenate(recorder.keys)
    order = np.argsort(keys, kind="stable")
    where = order[np.searchsorted(keys, logged, sorter=order)]
    return {
        name: float(np.concatenate(values)[where].mean())
        for name, values in recorder.values.items()
    }
