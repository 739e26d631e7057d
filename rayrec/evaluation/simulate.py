"""Simulator evaluation: run a policy over a fixed number of user lifetimes, report long-term metrics.

Exactly ``users`` lifetimes are played, each to its end (churn or the session bound), so long and
short lifetimes are counted alike. Per-user metrics are averaged with 95% normal confidence
intervals (1.96 standard errors).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rayrec.contracts.keys import Metrics
from rayrec.envs.observation import observe
from rayrec.evaluation.baselines import Policy
from rayrec.sim import SessionSimulator, SimConfig, StepResult

__all__ = ["ci95", "evaluate", "lifetimes", "refill_slots"]


def ci95(values: np.ndarray) -> float:
    """Half-width of the 95% normal confidence interval of the mean."""
    n = len(values)
    if n < 2:
        return float("nan")
    return float(1.96 * np.std(values, ddof=1) / math.sqrt(n))


def refill_slots(
    sim: SessionSimulator, idx: np.ndarray, active: np.ndarray, started: int, users: int
) -> tuple[np.ndarray, int]:
    """Slots ``idx`` finished a lifetime: start new users in as many as remain to be played
    (``users - started``) and retire the rest (``active`` is updated in place).

    Returns the refilled slots and the new count of started users.
    """
    n_new = min(idx.size, users - started)
    refill, retire = idx[:n_new], idx[n_new:]
    active[retire] = False
    if refill.size:
        mask = np.zeros(len(active), dtype=bool)
        mask[refill] = True
        sim.reset_users(mask)
    return refill, started + n_new


def evaluate(
    policy: Policy,
    config: SimConfig,
    users: int = 1000,
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Long-term metrics of ``policy`` over ``users`` simulated lifetimes.

    Args:
        policy: anything with ``act(obs, sim) -> (B, k)`` (see :class:`Policy`).
        config: the simulator configuration (the world comes from ``config.world_seed``).
        users: number of user lifetimes to play.
        seed: seeds the users and dynamics; the same seed gives the same result.
        batch_size: user slots stepped together.

    Returns:
        A dict with the keys of :class:`rayrec.contracts.keys.Metrics`.
    """
    if users < 2:
        raise ValueError(f"users ({users}) must be >= 2 to give a confidence interval")
    per_user, seen = lifetimes(policy, config, users, seed, batch_size)
    return _summarise(per_user, seen, config)


def lifetimes(
    policy: Policy,
    config: SimConfig,
    users: int,
    seed: int = 0,
    batch_size: int = 1024,
    on_step: Callable[[SessionSimulator, StepResult, np.ndarray], None] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Play ``users`` lifetimes of ``policy`` (as :func:`evaluate`) and return what each earned.

    ``on_step(sim, result, active)`` sees every step before finished users are replaced (``active``:
    (B,) bool, the slots that play a counted lifetime), e.g. to record what was clicked.

    Returns:
        Per-user arrays in the order the lifetimes ended: ``user_id`` (the simulator's, in the order
        the users started: 0, 1, ...), ``ret`` (return), ``clicks``, ``steps``, ``sessions``,
        ``watch``, ``bait``, ``topics``, ``div_t``, ``div_s``; and the (N,) bool items ever shown.
    """
    b = min(users, batch_size)
    sim = SessionSimulator(config, b, seed=seed)
    sim.reset()
    cat = sim.catalog
    active = np.ones(b, dtype=bool)
    started = b
    acc = {
        name: np.zeros(b) for name in ("ret", "clicks", "steps", "watch", "bait", "div_t", "div_s")
    }
    prev_emb = np.zeros((b, config.embed_dim), dtype=np.float32)
    topics = np.zeros((b, config.num_topics), dtype=bool)
    seen = np.zeros(config.num_items, dtype=bool)
    done_rows: dict[str, list[np.ndarray]] = {
        name: [] for name in (*acc, "sessions", "topics", "user_id")
    }
    k = config.slate_size

    while active.any():
        obs = observe(sim)
        r = sim.step(policy.act(obs, sim))
        if on_step is not None:
            on_step(sim, r, active)
        shown_items = np.where(r.shown, r.slate_items, 0)
        seen[r.slate_items[r.shown & active[:, None]]] = True
        lead = cat.embedding[shown_items[:, 0]] * r.shown[:, :1]
        first = sim.lifetime_steps == 1
        acc["div_t"] += np.where(first, 0.0, 1.0 - np.einsum("bd,bd->b", lead, prev_emb))
        prev_emb = lead
        if k > 1:
            emb = cat.embedding[shown_items] * r.shown[:, :, None]
            gram = np.einsum("bkd,bjd->bkj", emb, emb)
            n_shown = r.shown.sum(axis=1)
            pairs = np.maximum(n_shown * (n_shown - 1), 1)
            off_diag = gram.sum(axis=(1, 2)) - np.einsum("bkk->b", gram)
            acc["div_s"] += np.where(n_shown > 1, 1.0 - off_diag / pairs, 0.0)
        acc["ret"] += r.reward
        acc["clicks"] += r.clicked
        acc["steps"] += 1
        acc["watch"] += r.watch
        acc["bait"] += r.clicked & cat.clickbait[np.maximum(r.item, 0)]
        rows = np.flatnonzero(r.clicked)
        topics[rows, cat.topic[r.item[rows]]] = True

        done = (r.terminated | r.truncated) & active
        if not done.any():
            continue
        idx = np.flatnonzero(done)
        for name, values in acc.items():
            done_rows[name].append(values[idx].copy())
        done_rows["sessions"].append(sim.session_index[idx] + 1.0)
        done_rows["topics"].append(topics[idx].sum(axis=1).astype(float))
        done_rows["user_id"].append(sim.user_id[idx].copy())
        refill, started = refill_slots(sim, idx, active, started, users)
        if refill.size:
            for values in acc.values():
                values[refill] = 0.0
            topics[refill] = False

    return {name: np.concatenate(parts) for name, parts in done_rows.items()}, seen


def _summarise(u: dict[str, np.ndarray], seen: np.ndarray, config: SimConfig) -> dict[str, Any]:
    steps = u["steps"]
    clicks = u["clicks"]
    return {
        Metrics.USERS: len(steps),
        Metrics.RETURN_MEAN: float(u["ret"].mean()),
        Metrics.RETURN_CI95: ci95(u["ret"]),
        Metrics.CLICKS_MEAN: float(clicks.mean()),
        Metrics.CLICKS_CI95: ci95(clicks),
        Metrics.CLICK_RATE: float(clicks.sum() / steps.sum()),
        Metrics.STEPS_MEAN: float(steps.mean()),
        Metrics.SESSION_LENGTH_MEAN: float((steps / u["sessions"]).mean()),
        Metrics.SESSIONS_PER_USER: float(u["sessions"].mean()),
        Metrics.SESSIONS_CI95: ci95(u["sessions"]),
        Metrics.RETURN_RATE: float((u["sessions"] - 1).sum() / max(u["sessions"].sum(), 1.0)),
        Metrics.WATCH_MEAN: float(u["watch"].sum() / max(clicks.sum(), 1.0)),
        Metrics.CLICKBAIT_SHARE: float(u["bait"].sum() / max(clicks.sum(), 1.0)),
        Metrics.DIVERSITY_TEMPORAL: float((u["div_t"] / np.maximum(steps - 1, 1)).mean()),
        Metrics.DIVERSITY_SLATE: (
            float((u["div_s"] / steps).mean()) if config.slate_size > 1 else None
        ),
        Metrics.TOPICS_PER_USER: float(u["topics"].mean()),
        Metrics.COVERAGE: float(seen.mean()),
    }
