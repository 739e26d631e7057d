"""A trained checkpoint against baselines on the same simulated users, for every env kind: the
evaluation hook of training runs, ``rayrec evaluate`` and Tune trials.

Results dicts (``results.json``) hold ``policy`` (metrics), ``baselines`` ({name: metrics}) and
``evaluation`` ({users, seed}); marketplace results add ``table`` (rows of their own metrics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rayrec.contracts.errors import SpecError
from rayrec.contracts.keys import MarketMetrics, Metrics
from rayrec.contracts.layout import find_run_dir, is_hierarchical, module_ids
from rayrec.data.from_served import SERVED_SOURCE
from rayrec.data.logs import read_log_meta
from rayrec.envs.marketplace import MARKETPLACE_ENV_ID
from rayrec.envs.marketplace.config import ROLES, training_market_config, validate_multi_agent
from rayrec.evaluation.baselines import make_baseline
from rayrec.evaluation.collect import parse_behavior
from rayrec.evaluation.marketplace import evaluate_market, module_actor, scripted_actor
from rayrec.evaluation.policies import load_module, load_policy
from rayrec.evaluation.simulate import evaluate
from rayrec.specs import EnvSpec, PolicySpec, load_run_spec

__all__ = [
    "DEFAULT_BASELINES",
    "behavior_results",
    "compare",
    "comparison_table",
    "evaluate_checkpoint",
    "evaluate_run_checkpoint",
    "headline",
]

DEFAULT_BASELINES = ("random", "popular", "greedy")


def compare(
    policy: Any, env: EnvSpec, users: int, seed: int, baselines: tuple[str, ...]
) -> dict[str, Any]:
    """Evaluate ``policy`` and the named baselines on the same users (same seed)."""
    # A two-level agent plays HierarchicalSessionEnv and is scored on the flat return.
    evaluate_self = getattr(policy, "evaluate_on", None)
    out: dict[str, Any] = {
        "policy": (
            evaluate_self(env, users, seed)
            if evaluate_self is not None
            else evaluate(policy, env.config, users=users, seed=seed)
        ),
        "baselines": {},
        "evaluation": {"users": users, "seed": seed},
    }
    for name in baselines:
        out["baselines"][name] = evaluate(make_baseline(name), env.config, users=users, seed=seed)
    return out


def _market_modules(checkpoint: Path) -> dict[str, Any]:
    """Every RLModule of a marketplace checkpoint, by module id (a role or an agent id)."""
    ids = module_ids(Path(checkpoint).resolve())
    if not ids:
        raise SpecError(f"{checkpoint}: no marketplace RLModules found in the checkpoint")
    return {module_id: load_module(checkpoint, module_id) for module_id in ids}


def evaluate_market_checkpoint(
    checkpoint: Path, env: EnvSpec, policy: PolicySpec, users: int, seed: int
) -> dict[str, Any]:
    """The marketplace's learned agents against the game's scripted players, on the same seeded
    episodes; ``users`` simulated users make ``users // num_users`` episodes (at least 2)."""
    multi = policy.multi_agent or validate_multi_agent(None, policy.algorithm)
    market = training_market_config(env.config, multi)
    episodes = max(users // market.num_users, 2)
    modules = _market_modules(checkpoint)
    results: dict[str, Any] = {
        "policy": evaluate_market(market, module_actor(modules), episodes, seed),
        "baselines": {"scripted": evaluate_market(market, scripted_actor, episodes, seed)},
        "evaluation": {"users": users, "episodes": episodes, "seed": seed},
        "learning_roles": [r for r in ROLES if r in market.learning_roles],
    }
    results["table"] = _market_table(results)
    return results


def evaluate_run_checkpoint(
    checkpoint: Path,
    env: EnvSpec,
    policy: PolicySpec,
    users: int,
    seed: int,
    baselines: tuple[str, ...],
) -> dict[str, Any]:
    """The results dict of a checkpoint trained with ``policy`` on ``env``, any env kind."""
    if env.id == MARKETPLACE_ENV_ID:
        return evaluate_market_checkpoint(checkpoint, env, policy, users, seed)
    return compare(load_policy(checkpoint, seed=seed), env, users, seed, baselines)


def headline(results: dict[str, Any]) -> tuple[str, float]:
    """The one number a results dict is ranked by (checkpoint selection, Tune's default): the
    long-term return, or the marketplace's total welfare."""
    policy = results["policy"]
    key = MarketMetrics.WELFARE_TOTAL if "table" in results else Metrics.RETURN_MEAN
    return key, float(policy[key])


def evaluate_checkpoint(
    checkpoint: Path,
    env: EnvSpec | None,
    users: int,
    seed: int,
    baselines: tuple[str, ...] | None,
) -> dict[str, Any]:
    """``rayrec evaluate``: a checkpoint against baselines.

    ``env`` None means the run's own environment; ``baselines`` None the run's own
    ``evaluation.baselines`` (DEFAULT_BASELINES without a run folder), so that the training
    run's table is reproduced.
    """
    if not checkpoint.exists():
        raise SpecError(f"--checkpoint {checkpoint}: no such directory")
    run = find_run_dir(checkpoint.resolve())
    saved = load_run_spec(run) if run is not None else None
    if env is None:
        if saved is None:
            raise SpecError(f"--checkpoint {checkpoint}: no spec.yaml above it; pass --env")
        env = saved[0]
    if baselines is None:
        own = saved[1].evaluation.get("baselines") if saved is not None else None
        baselines = tuple(own) if own else DEFAULT_BASELINES
    if env.id == MARKETPLACE_ENV_ID:
        if saved is None:
            raise SpecError(
                f"--checkpoint {checkpoint}: a marketplace checkpoint needs its run folder"
            )
        return evaluate_market_checkpoint(checkpoint, env, saved[1], users, seed)
    if is_hierarchical(checkpoint.resolve()) and env.hierarchy is None:
        raise SpecError(
            f"--checkpoint {checkpoint}: a hierarchical checkpoint needs an env spec with a "
            "'hierarchy' section"
        )
    return compare(load_policy(checkpoint), env, users, seed, baselines)


def comparison_table(results: dict[str, Any]) -> list[list[str]]:
    """Rows (header first) of the policy-vs-baselines table."""
    if "table" in results:  # marketplace results bring their own rows
        return results["table"]
    header = ["policy", "return (95% CI)", "clicks", "session len", "sessions/user", "coverage"]
    rows = [header]
    entries = [("trained", results["policy"]), *results["baselines"].items()]
    for name, m in entries:
        rows.append(
            [
                name,
                f"{m[Metrics.RETURN_MEAN]:.2f} ± {m[Metrics.RETURN_CI95]:.2f}",
                f"{m[Metrics.CLICKS_MEAN]:.2f}",
                f"{m[Metrics.SESSION_LENGTH_MEAN]:.1f}",
                f"{m[Metrics.SESSIONS_PER_USER]:.2f}",
                f"{m[Metrics.COVERAGE]:.3f}",
            ]
        )
    return rows


def _market_table(results: dict[str, Any]) -> list[list[str]]:
    """Rows (header first): welfare per role, retention, ad load, revenue, exposure Gini."""
    keys = (*MarketMetrics.ROLE_KEYS, MarketMetrics.WELFARE_TOTAL, MarketMetrics.RETENTION)
    keys += (MarketMetrics.AD_LOAD, MarketMetrics.REVENUE, MarketMetrics.EXPOSURE_GINI)
    rows = [["policy", *(k.replace("welfare_", "W ") for k in keys)]]
    entries = [("trained", results["policy"]), *results["baselines"].items()]
    for name, m in entries:
        rows.append([name, *(f"{m[k]:.2f} ± {m[k + '_ci95']:.2f}" for k in keys)])
    return rows


def behavior_results(data: Path, env: EnvSpec, users: int, seed: int) -> dict[str, Any]:
    """The log an offline run learned from, and its behaviour policy evaluated like the rest
    (``metrics``; None for a served log, whose behaviour cannot be replayed in the simulator)."""
    meta = read_log_meta(data)
    served = meta.get("source") == SERVED_SOURCE
    behavior = None if served else parse_behavior(meta["behavior"], seed=seed)
    return {
        "path": str(Path(data).resolve()),
        "behavior": meta["behavior"],
        "rows": meta.get("rows"),
        "episodes": meta.get("episodes"),
        "logged_return_mean": meta.get("behavior_return_mean"),
        "logged_return_ci95": meta.get("behavior_return_ci95"),
        "metrics": None if behavior is None else evaluate(behavior, env.config, users, seed=seed),
    }
