"""Evaluating marketplace players: scripted rules, learned RLModules, metrics with CIs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns

from rayrec.envs.marketplace.config import MarketplaceConfig
from rayrec.envs.marketplace.env import MarketplaceEnv, agent_role
from rayrec.envs.marketplace.metrics import episode_metrics

__all__ = ["Actor", "evaluate_market", "module_actor", "scripted_actor"]

Actor = Callable[[dict[str, np.ndarray], MarketplaceEnv], dict[str, Any]]
"""Maps the agents' observations (and the env, for scripted play) to their actions."""


def scripted_actor(obs: dict[str, np.ndarray], env: MarketplaceEnv) -> dict[str, Any]:
    """Every agent plays the game's scripted rule of its role (greedy platform by default)."""
    game, cfg = env.game, env.config
    creators, bids = game.scripted_creators(), game.scripted_bids()
    out: dict[str, Any] = {}
    for aid in obs:
        role = agent_role(aid)
        i = int(aid.rsplit("_", 1)[1]) if role != "platform" else 0
        if role == "platform":
            out[aid] = game.scripted_platform()
        elif role == "creator":
            out[aid] = creators[i]
        elif role == "advertiser":
            out[aid] = int(bids[i])
        else:
            out[aid] = cfg.pickiness_levels // 2
    return out


def module_actor(
    modules: dict[str, Any], fallback: Actor = scripted_actor, greedy: bool = True
) -> Actor:
    """Actions from RLModules ({module id: module}, ids by role or agent); agents without a
    module play ``fallback``. Greedy takes each sub-action's argmax."""

    def act(obs: dict[str, np.ndarray], env: MarketplaceEnv) -> dict[str, Any]:
        out = fallback(obs, env)
        for aid, o in obs.items():
            module = modules.get(aid) or modules.get(agent_role(aid))
            if module is None:
                continue
            batch = {Columns.OBS: torch.from_numpy(o[None].astype(np.float32))}
            with torch.no_grad():
                logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS][0]
            space = env.action_spaces[aid]
            nvec = list(space.nvec) if hasattr(space, "nvec") else [space.n]
            parts = torch.split(logits, [int(n) for n in nvec])
            if greedy:
                choice = [int(p.argmax()) for p in parts]
            else:
                choice = [int(torch.multinomial(torch.softmax(p, -1), 1)) for p in parts]
            out[aid] = np.array(choice) if hasattr(space, "nvec") else choice[0]
        return out

    return act


def evaluate_market(
    config: MarketplaceConfig, actor: Actor, episodes: int, seed: int = 12345
) -> dict[str, Any]:
    """Mean and 95% CI over ``episodes`` seeded episodes of every market metric, plus the mean
    return of each agent. Episode e uses seed ``seed + e`` (the same users for every actor)."""
    env = MarketplaceEnv(config.to_dict())
    rows, returns = [], {aid: [] for aid in env.possible_agents}
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        total = dict.fromkeys(env.possible_agents, 0.0)
        done = False
        while not done:
            obs, rew, _, trunc, _ = env.step(actor(obs, env))
            for aid, r in rew.items():
                total[aid] += r
            done = trunc["__all__"]
        rows.append(episode_metrics(env.totals, config.welfare_weights))
        for aid, r in total.items():
            returns[aid].append(r)
    out: dict[str, Any] = {"episodes": episodes}
    for key in rows[0]:
        values = np.array([r[key] for r in rows])
        out[key] = float(values.mean())
        out[key + "_ci95"] = float(1.96 * values.std(ddof=1) / np.sqrt(episodes))
    out["returns"] = {aid: float(np.mean(v)) for aid, v in returns.items()}
    return out
