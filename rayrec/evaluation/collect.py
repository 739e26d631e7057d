"""``rayrec collect``: run a behaviour policy in the simulator and log every step with propensities.

Behaviour policies (``--behavior``):

=====================  =========================================================================
``random``             uniformly random valid candidates (without replacement in a slate)
``popular``            the most popular valid candidates (deterministic: propensity 1)
``greedy``             *peeking* greedy-myopic ranker (true click probabilities; deterministic)
``ctr``                a production-style CTR ranker: the highest observable CTR estimates
                       (no peeking; clickbait-prone, as CTR models are)
``heuristic``          the hand-written long-term scorer over the observation (the
                       ``heuristic`` baseline; deterministic): logs for warm starts
``epsilon-B:E``        base ranker B (greedy, ctr, popular or heuristic) with probability 1-E, a
                       uniformly random slate with probability E (``epsilon-greedy:0.2``,
                       ``epsilon-heuristic:0.2``)
``checkpoint:PATH``    a trained RLModule, sampling from the softmax of its scores
                       (Plackett-Luce, i.e. sequentially without replacement, for slates)
=====================  =========================================================================

``propensity`` is the probability of the whole logged slate; ``propensities[j]`` is the
probability of the item at position j given positions 0..j-1 (their product is ``propensity``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rayrec.contracts.errors import SpecError
from rayrec.contracts.observation import Obs
from rayrec.data.logs import LogWriter, write_log_folder
from rayrec.data.schema import Col, log_schema
from rayrec.envs.observation import observe
from rayrec.evaluation.baselines import ObservedHeuristicPolicy, top_k_valid
from rayrec.evaluation.policies import ModulePolicy
from rayrec.evaluation.simulate import ci95, refill_slots
from rayrec.sim import SessionSimulator
from rayrec.specs import EnvSpec

__all__ = ["BEHAVIORS", "BehaviorPolicy", "collect", "parse_behavior", "run_behavior"]

BEHAVIORS = (
    "random",
    "popular",
    "greedy",
    "ctr",
    "heuristic",
    "epsilon-B:E",
    "checkpoint:PATH",
)
_DETERMINISTIC = ("popular", "greedy", "ctr", "heuristic")


class BehaviorPolicy:
    """A logging policy that knows the probability of what it chose.

    After :meth:`act`, ``last_propensities`` (B, k) holds the sequential probabilities of the
    chosen slate and ``last_propensity`` (B,) their product.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        epsilon: float = 0.0,
        module_scores: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.kind = kind
        self.epsilon = epsilon
        self.module_scores = module_scores
        self.rng = np.random.default_rng(seed)
        self.last_propensities = np.zeros((0, 1))
        self.last_propensity = np.zeros(0)

    def act(self, obs: dict[str, np.ndarray], sim: SessionSimulator) -> np.ndarray:
        mask = obs[Obs.ACTION_MASK].astype(bool)
        k = sim.config.slate_size
        if self.kind == "checkpoint":
            slate, probs = self._sample_softmax(self.module_scores(obs), mask, k)
        elif self.kind == "random":
            slate = top_k_valid(self.rng.random(mask.shape), mask, k)
            probs = _uniform_sequential(mask, k)
        else:
            if self.kind == "greedy":
                scores = sim.oracle_click_probability()
            elif self.kind == "heuristic":  # the hand-written scorer over the observation
                scores = ObservedHeuristicPolicy().scores(obs)
            else:  # observable statistics: log-popularity (0) or the CTR estimate (1)
                scores = obs[Obs.CANDIDATE_SCALARS][:, :, 0 if self.kind == "popular" else 1]
            slate = top_k_valid(scores, mask, k)
            probs = np.ones(slate.shape)
            if self.epsilon > 0:
                slate, probs = self._mix_random(slate, mask, k)
        self.last_propensities = probs
        self.last_propensity = probs.prod(axis=1)
        return slate

    def _mix_random(
        self, greedy: np.ndarray, mask: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """With probability epsilon replace the greedy slate by a uniformly random one."""
        explore = self.rng.random(len(greedy)) < self.epsilon
        random_slate = top_k_valid(self.rng.random(mask.shape), mask, k)
        slate = np.where(explore[:, None], random_slate, greedy)
        # P(prefix_j) = (1-E) 1[prefix_j == greedy prefix] + E prod_{i<=j} 1/(n-i); the
        # sequential probability of position j is P(prefix_j) / P(prefix_{j-1}).
        matches = np.cumprod(slate == greedy, axis=1)
        uniform = np.cumprod(_uniform_sequential(mask, k), axis=1)
        prefix = (1.0 - self.epsilon) * matches + self.epsilon * uniform
        previous = np.concatenate([np.ones((len(slate), 1)), prefix[:, :-1]], axis=1)
        return slate, prefix / previous

    def _sample_softmax(
        self, scores: np.ndarray, mask: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Plackett-Luce sampling (Gumbel top-k) and the sequential probabilities of the pick."""
        logits = np.where(mask, scores.astype(np.float64), -np.inf)
        gumbel = -np.log(-np.log(self.rng.random(logits.shape).clip(1e-300, 1.0)))
        slate = top_k_valid(logits + gumbel, mask, k)
        probs = np.empty(slate.shape)
        remaining = logits.copy()
        rows = np.arange(len(slate))
        for j in range(k):
            top = remaining.max(axis=1, keepdims=True)
            weights = np.exp(remaining - top)
            chosen = weights[rows, slate[:, j]]
            probs[:, j] = chosen / weights.sum(axis=1)
            remaining[rows, slate[:, j]] = -np.inf
        return slate, probs


def _uniform_sequential(mask: np.ndarray, k: int) -> np.ndarray:
    """(B, k) sequential probabilities 1/(n-j) of a uniformly random slate among n valid."""
    n = mask.sum(axis=1, keepdims=True).astype(np.float64)
    return 1.0 / np.maximum(n - np.arange(k)[None, :], 1.0)


def parse_behavior(text: str, seed: int = 0) -> BehaviorPolicy:
    """The behaviour policy named by ``text`` (one of :data:`BEHAVIORS`)."""
    if text == "random" or text in _DETERMINISTIC:
        return BehaviorPolicy(text, text, seed=seed)
    base = text.split(":", 1)[0].removeprefix("epsilon-")
    if text.startswith("epsilon-") and ":" in text and base in _DETERMINISTIC:
        raw = text.split(":", 1)[1]
        try:
            epsilon = float(raw)
        except ValueError:
            epsilon = float("nan")
        if not 0.0 <= epsilon <= 1.0:
            raise SpecError(f"--behavior {text}: epsilon must be a number in [0, 1], got {raw!r}")
        return BehaviorPolicy(text, base, epsilon=epsilon, seed=seed)
    if text.startswith("checkpoint:"):
        path = Path(text.split(":", 1)[1])
        if not path.exists():
            raise SpecError(f"--behavior {text}: no such checkpoint {path}")
        module = ModulePolicy.from_checkpoint(path)
        return BehaviorPolicy(text, "checkpoint", module_scores=module.scores, seed=seed)
    raise SpecError(f"--behavior {text!r}: unknown behaviour policy; known: {', '.join(BEHAVIORS)}")


def _obs_columns(obs: dict[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
    b = len(obs[Obs.HISTORY_ITEMS])
    values = {
        Col.HISTORY_ITEMS: obs[Obs.HISTORY_ITEMS],
        Col.HISTORY_RESPONSES: obs[Obs.HISTORY_RESPONSES].reshape(b, -1),
        Col.CONTEXT: obs[Obs.CONTEXT],
        Col.CANDIDATE_ITEMS: obs[Obs.CANDIDATE_ITEMS],
        Col.ACTION_MASK: obs[Obs.ACTION_MASK],
    }
    return {prefix + name: value for name, value in values.items()}


def collect(
    env: EnvSpec,
    behavior: str,
    users: int,
    out: str | Path,
    seed: int = 0,
    batch_size: int = 1024,
    rows_per_file: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Log ``users`` complete lifetimes of ``behavior`` in ``env`` to the folder ``out``.

    The folder is built under a temporary name next to ``out`` and renamed when complete: an
    interrupted collect leaves no folder at ``out``. Returns the log's metadata (``log.json``).
    """
    out = Path(out)
    if users < 2:
        raise SpecError(f"--users ({users}) must be >= 2")
    if out.exists():
        raise SpecError(f"--out {out} already exists; logs are never overwritten")
    policy = parse_behavior(behavior, seed=seed)
    config = env.config
    meta: dict[str, Any] = {"env": env.to_dict(), "behavior": behavior, "seed": seed}

    def fill(writer: LogWriter) -> dict[str, Any]:
        returns = run_behavior(policy, config, users, seed, batch_size, writer, progress)
        return {
            "episodes": users,
            "behavior_return_mean": float(returns.mean()),
            "behavior_return_ci95": ci95(returns),
        }

    write_log_folder(out, log_schema(config, meta), meta, fill, rows_per_file)
    return meta


def run_behavior(
    policy: BehaviorPolicy,
    config: Any,
    users: int,
    seed: int,
    batch_size: int,
    writer: LogWriter,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Play ``users`` complete lifetimes of ``policy`` in the simulator of ``config`` (``batch_size``
    users at a time, a finished user's slot refilled with the next one) and append every step to
    ``writer``; returns the lifetime returns in the order the users finished.

    ``policy`` is a :class:`BehaviorPolicy` or anything with its ``act(obs, sim)``, ``name``,
    ``last_propensities`` and ``last_propensity``. ``progress(finished, users)`` is called as
    users finish.
    """
    b = min(users, batch_size)
    sim = SessionSimulator(config, b, seed=seed)
    sim.reset()
    active = np.ones(b, dtype=bool)
    started, finished = b, 0
    episode_return = np.zeros(b)
    returns: list[np.ndarray] = []
    obs = observe(sim)
    while active.any():
        rows = np.flatnonzero(active)
        before = {
            Col.EPISODE_ID: sim.user_id.copy(),
            Col.USER_ID: sim.user_id.copy(),
            Col.T: sim.lifetime_steps.astype(np.int32),
            Col.SESSION_INDEX: sim.session_index.astype(np.int32),
            Col.STEP_IN_SESSION: sim.step_in_session.astype(np.int32),
        }
        slate = policy.act(obs, sim)
        r = sim.step(slate)
        next_obs = observe(sim)
        now = np.full(b, time.time())
        columns = {
            **before,
            Col.REQUEST_ID: np.array([None] * b, dtype=object),
            Col.TIME: now,
            Col.POLICY: np.array([policy.name] * b, dtype=object),
            **_obs_columns(obs),
            Col.ACTION: slate.astype(np.int64),
            Col.SLATE_ITEMS: np.take_along_axis(obs[Obs.CANDIDATE_ITEMS], slate, 1),
            Col.PROPENSITY: policy.last_propensity,
            Col.PROPENSITIES: policy.last_propensities,
            Col.RESPONSES: np.stack([r.clicked, r.watch, r.like, r.skip], axis=1).astype(
                np.float32
            ),
            Col.CLICK_POSITION: r.click_position.astype(np.int32),
            Col.REWARD: r.reward.astype(np.float32),
            Col.TERMINATED: r.terminated,
            Col.TRUNCATED: r.truncated,
            **_obs_columns(next_obs, Col.NEXT),
        }
        writer.append({name: np.asarray(value)[rows] for name, value in columns.items()})
        episode_return += r.reward
        done = (r.terminated | r.truncated) & active
        if done.any():
            idx = np.flatnonzero(done)
            returns.append(episode_return[idx].copy())
            finished += idx.size
            refill, started = refill_slots(sim, idx, active, started, users)
            if refill.size:
                episode_return[refill] = 0.0
                next_obs = observe(sim)
            if progress is not None:
                progress(finished, users)
        obs = next_obs
    return np.concatenate(returns)
