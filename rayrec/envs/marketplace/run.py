"""``rayrec train`` for marketplace specs: a run folder with the marketplace's own metrics.

The folder follows the session runs' layout (spec.yaml, metrics.jsonl, checkpoints/final,
results.json); results.json holds the market metrics of the learned agents and, as the baseline,
of the game's scripted players on the same seeded episodes. Resuming is not supported yet.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rayrec.envs.marketplace.config import ROLES
from rayrec.envs.marketplace.metrics import MarketMetrics
from rayrec.envs.marketplace.training import evaluate_market, module_actor, scripted_actor

__all__ = ["train_marketplace"]


def train_marketplace(
    env: Any,
    policy: Any,
    options: Any,
    *,
    resume: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the marketplace's learning roles into ``options.out``; returns the results dict."""
    import ray

    from rayrec.experiment import build_config
    from rayrec.runner import (
        METRICS_FILE,
        RESULTS_FILE,
        SPEC_FILE,
        _versions,
        atomic_write_text,
        ensure_ray,
    )
    from rayrec.specs import SpecError

    log = log or (lambda msg: None if quiet else sys.stderr.write(msg + "\n"))
    run = Path(options.out)
    if resume:
        raise SpecError("--resume is not supported for marketplace runs yet")
    if (run / SPEC_FILE).exists():
        raise SpecError(f"{run} already holds a run; use another --out")
    config = build_config(env, policy, seed=options.seed)
    run.mkdir(parents=True, exist_ok=True)
    spec = {"env": env.to_dict(), "policy": policy.to_dict(), "run": options.to_dict()}
    spec["versions"] = _versions()
    atomic_write_text(run / SPEC_FILE, yaml.safe_dump(spec, sort_keys=False))
    started = ensure_ray(options.address)
    try:
        algo = config.build_algo()
        t0, iteration = time.time(), 0
        with (run / METRICS_FILE).open("a") as metrics:
            while options.iterations is None or iteration < options.iterations:
                if options.time_budget is not None and time.time() - t0 >= options.time_budget:
                    break
                result = algo.train()
                iteration += 1
                runners = result.get("env_runners", {})
                row = {
                    "iteration": iteration,
                    "env_steps": int(runners.get("num_env_steps_sampled_lifetime", 0)),
                    "wall_time_s": round(time.time() - t0, 1),
                    "agent_returns": {
                        k: float(v)
                        for k, v in runners.get("agent_episode_returns_mean", {}).items()
                    },
                }
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                log(f"iteration {iteration}: {row['agent_returns']}")
        algo.save_to_path(str((run / "checkpoints" / "final").resolve()))
        market = config.env_config["config"]
        from rayrec.envs.marketplace.config import MarketplaceConfig

        market = MarketplaceConfig.from_dict(market)
        modules = {mid: algo.get_module(mid) for mid in config.policies}
        users = max(options.eval_users // market.num_users, 2)
        results = {
            "policy": evaluate_market(market, module_actor(modules), users, options.eval_seed),
            "baselines": {
                "scripted": evaluate_market(market, scripted_actor, users, options.eval_seed)
            },
            "training": {"iterations": iteration, "wall_time_s": round(time.time() - t0, 1)},
            "learning_roles": [r for r in ROLES if r in market.learning_roles],
        }
        results["table"] = _table(results)
        algo.stop()
    finally:
        if started:
            ray.shutdown()
    atomic_write_text(run / RESULTS_FILE, json.dumps(results, indent=2))
    return results


def _table(results: dict[str, Any]) -> list[list[str]]:
    """Rows (header first): welfare per role, retention, ad load, revenue, exposure Gini."""
    keys = (*MarketMetrics.ROLE_KEYS, MarketMetrics.WELFARE_TOTAL, MarketMetrics.RETENTION)
    keys += (MarketMetrics.AD_LOAD, MarketMetrics.REVENUE, MarketMetrics.EXPOSURE_GINI)
    rows = [["policy", *(k.replace("welfare_", "W ") for k in keys)]]
    entries = [("trained", results["policy"]), *results["baselines"].items()]
    for name, m in entries:
        rows.append([name, *(f"{m[k]:.2f} ± {m[k + '_ci95']:.2f}" for k in keys)])
    return rows
