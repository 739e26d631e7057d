"""Simulator evaluation of a two-level (options) agent on the *flat* return.

The agent plays ``HierarchicalSessionEnv`` lifetimes; each is scored with the flat ``SessionEnv``
reward only (the info's ``flat_reward``, no following or long-term terms), so the result compares
directly with :func:`rayrec.evaluation.evaluate` of flat policies and baselines. ``batch_size``
environments advance in lock-step so the actor sees batched observations.

User ``i`` is the env reset with seed ``seed + i``: agents evaluated with one seed meet exactly the
same users; the batched :func:`evaluate` draws its users differently (same distribution).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rayrec.contracts.observation import HIGH, LOW
from rayrec.envs.hierarchical.config import HierarchyConfig, HierInfo
from rayrec.evaluation.simulate import _summarise
from rayrec.sim import SimConfig

__all__ = ["LevelActor", "evaluate_hierarchical"]

LevelActor = Callable[[str, dict[str, np.ndarray]], np.ndarray]
"""``actor(level, obs)``: actions (B,) or (B, k) for a batched observation of that level."""


def _stack(observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([o[key] for o in observations]) for key in observations[0]}


def evaluate_hierarchical(
    actor: LevelActor,
    config: SimConfig,
    hierarchy: HierarchyConfig,
    users: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Long-term metrics (the keys of :class:`rayrec.contracts.keys.Metrics`) of a two-level agent over
    ``users`` lifetimes, on the flat return."""
    from rayrec.envs.hierarchical.env import HierarchicalSessionEnv

    if users < 2:
        raise ValueError(f"users ({users}) must be >= 2 to give a confidence interval")
    b = min(users, batch_size)
    envs = [HierarchicalSessionEnv({**config.to_dict(), "hierarchy": hierarchy}) for _ in range(b)]
    catalog = envs[0].sim.catalog
    names = ("ret", "clicks", "steps", "watch", "bait", "div_t", "div_s")
    acc = {name: np.zeros(b) for name in names}
    prev_emb = np.zeros((b, config.embed_dim), dtype=np.float32)
    topics = np.zeros((b, config.num_topics), dtype=bool)
    seen = np.zeros(config.num_items, dtype=bool)
    done_rows: dict[str, list[float]] = {name: [] for name in (*names, "sessions", "topics")}
    obs: list[dict[str, Any] | None] = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    started = b

    while any(o is not None for o in obs):
        for level in (HIGH, LOW):
            slots = [i for i, o in enumerate(obs) if o is not None and level in o]
            if not slots:
                continue
            actions = actor(level, _stack([obs[i][level] for i in slots]))
            for i, action in zip(slots, actions, strict=True):
                env = envs[i]
                o, _, terms, truncs, infos = env.step({level: action})
                if level == HIGH:
                    obs[i] = o
                    continue
                # The step that ends an option reports to the high level only.
                r, info = env.last_result, infos.get(LOW) or infos[HIGH]
                assert r is not None
                acc["ret"][i] += info[HierInfo.FLAT_REWARD]
                acc["clicks"][i] += bool(r.clicked[0])
                acc["steps"][i] += 1
                acc["watch"][i] += float(r.watch[0])
                item = int(r.item[0])
                if r.clicked[0]:
                    acc["bait"][i] += bool(catalog.clickbait[item])
                    topics[i, catalog.topic[item]] = True
                shown = r.slate_items[0][r.shown[0]]
                seen[shown] = True
                lead = catalog.embedding[shown[0]] if shown.size else np.zeros_like(prev_emb[i])
                if acc["steps"][i] > 1:
                    acc["div_t"][i] += 1.0 - float(lead @ prev_emb[i])
                prev_emb[i] = lead
                if shown.size > 1:
                    emb = catalog.embedding[shown]
                    gram = emb @ emb.T
                    pairs = shown.size * (shown.size - 1)
                    acc["div_s"][i] += 1.0 - (gram.sum() - np.trace(gram)) / pairs
                if not (terms["__all__"] or truncs["__all__"]):
                    obs[i] = o
                    continue
                for name, values in acc.items():
                    done_rows[name].append(float(values[i]))
                    values[i] = 0.0
                done_rows["sessions"].append(float(env.sim.session_index[0] + 1))
                done_rows["topics"].append(float(topics[i].sum()))
                topics[i] = False
                if started < users:
                    obs[i] = env.reset(seed=seed + started)[0]
                    started += 1
                else:
                    obs[i] = None
    per_user = {name: np.asarray(values) for name, values in done_rows.items()}
    return _summarise(per_user, seen, config)
