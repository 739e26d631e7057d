"""Studies of the marketplace: a learned platform against scripted ones, and exploitability.

Used by the learning test (tests/learning/test_marketplace_learns.py) and by
``benchmarks/marketplace_results.py``, which writes docs/results.{json,md}. Ray must be running.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rayrec.contracts.keys import MarketMetrics
from rayrec.envs.marketplace.config import ROLES, MarketplaceConfig
from rayrec.envs.marketplace.env import role_agents
from rayrec.evaluation.marketplace import evaluate_market, module_actor, scripted_actor
from rayrec.experiment import build_config
from rayrec.run.loop import iterations as train_iterations
from rayrec.specs import EnvSpec

__all__ = ["exploitability", "learner_state", "platform_study", "random_actor", "train_market"]


def _with(env_spec: Any, **changes: Any) -> Any:
    """A copy of a marketplace EnvSpec with some config fields changed."""
    values = env_spec.config.to_dict()
    values.update(changes)
    return EnvSpec(id=env_spec.id, config=MarketplaceConfig.from_dict(values))


def train_market(
    env_spec: Any,
    policy: Any,
    iterations: int,
    seed: int = 0,
    frozen: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build and train an algorithm for ``iterations``; returns it (not stopped) and a summary.

    ``frozen`` maps module ids to RLModule states loaded before training and kept fixed (they are
    left out of ``policies_to_train``): the others' strategies in a best-response run.
    """
    config = build_config(env_spec, policy, seed=seed)
    if frozen:
        trainable = sorted(set(config.policies) - set(frozen))
        config.multi_agent(policies_to_train=trainable)
    algo = config.build_algo()
    if frozen:
        algo.learner_group.set_state({"learner": {"rl_module": dict(frozen)}})
        algo.env_runner_group.sync_weights(
            from_worker_or_learner_group=algo.learner_group, inference_only=True
        )
        for module_id, state in frozen.items():
            _check_loaded(learner_state(algo, module_id), state, module_id)
    t0 = time.time()
    results = [result for _, result, _ in train_iterations(algo, iterations, None)]
    runners = results[-1].get("env_runners", {}) if results else {}
    summary = {
        "iterations": iterations,
        "env_steps": int(runners.get("num_env_steps_sampled_lifetime", 0)),
        "wall_time_s": round(time.time() - t0, 1),
    }
    return algo, summary


def learner_state(algo: Any, module_id: str) -> dict[str, Any]:
    """The learner's weights of a module (env runners hold only the actor's synced copy)."""
    return algo.learner_group.get_weights(module_ids=[module_id])[module_id]


def _check_loaded(loaded: dict[str, Any], state: dict[str, Any], module_id: str) -> None:
    """Raise if the weights ``loaded`` are not those of ``state`` (a frozen strategy)."""
    for name, value in state.items():
        if not np.allclose(np.asarray(loaded[name]), np.asarray(value)):
            raise RuntimeError(f"frozen module {module_id!r}: weights {name!r} were not loaded")


def random_actor(seed: int = 0) -> Any:
    """Agents act uniformly at random (seeded); for reference levels in the results."""
    rng = np.random.default_rng(seed)

    def act(obs: dict[str, Any], env: Any) -> dict[str, Any]:
        out = scripted_actor(obs, env)
        for aid in obs:
            space = env.action_spaces[aid]
            if hasattr(space, "nvec"):
                out[aid] = rng.integers(0, space.nvec)
            else:
                out[aid] = int(rng.integers(0, space.n))
        return out

    return act


def _learner_module(algo: Any, module_id: str) -> Any:
    """The trained module (the local learner's copy: PPO with ``num_learners: 0``)."""
    return algo.get_module(module_id)


def platform_study(
    env_spec: Any,
    policy: Any,
    iterations: int,
    episodes: int = 30,
    seed: int = 0,
    eval_seed: int = 12345,
    user_welfare_floor: float | None = None,
) -> tuple[dict[str, Any], Any]:
    """Train the platform (others scripted), evaluate it against the scripted platforms.

    ``user_welfare_floor``: the users' welfare the learned platform must keep (None: what users
    get under the scripted greedy platform). Returns the record and the trained algorithm (for an
    exploitability run; ``stop`` it afterwards).
    """
    env_spec = _with(env_spec, learning_roles=["platform"])
    algo, summary = train_market(env_spec, policy, iterations, seed)
    module = _learner_module(algo, "platform")
    config = env_spec.config
    learned = evaluate_market(config, module_actor({"platform": module}), episodes, eval_seed)
    scripted = {}
    for name in ("greedy", "balanced"):
        other = _with(env_spec, scripted_platform=name).config
        scripted[name] = evaluate_market(other, scripted_actor, episodes, eval_seed)
    # Reference level: a platform acting uniformly at random.
    record_random = evaluate_market(config, random_actor(seed), episodes, eval_seed)
    users = MarketMetrics.WELFARE_USERS
    floor = scripted["greedy"][users] if user_welfare_floor is None else user_welfare_floor
    record = {
        "training": summary,
        "learned_platform": learned,
        "scripted_platform": scripted,
        "random_platform": record_random,
        "user_welfare_floor": floor,
        "user_welfare_above_floor": learned[users] >= floor,
    }
    return record, algo


def exploitability(
    env_spec: Any,
    policy: Any,
    platform_state: dict[str, Any],
    role: str,
    iterations: int,
    episodes: int = 30,
    seed: int = 0,
    eval_seed: int = 12345,
) -> dict[str, Any]:
    """Best response of ``role`` against the learned platform (frozen) and the scripted others.

    Exploitability estimate: the role's mean return per agent under its best response minus that
    under its scripted strategy, the others' strategies being the same (the learned platform,
    scripted creators/advertisers, simulator users). A positive gain is what the role can win by
    deviating; with a short best-response budget it is a lower bound.
    """
    if role == "platform" or role not in ROLES:
        raise ValueError(f"role ({role!r}) must be one of creator, advertiser, user")
    env_spec = _with(env_spec, learning_roles=["platform", role])
    algo, summary = train_market(
        env_spec, policy, iterations, seed, frozen={"platform": platform_state}
    )
    try:
        modules = {"platform": _learner_module(algo, "platform"), role: _learner_module(algo, role)}
        frozen_only = {"platform": modules["platform"]}
        config = env_spec.config
        best = evaluate_market(config, module_actor(modules), episodes, eval_seed)
        base = evaluate_market(config, module_actor(frozen_only), episodes, eval_seed)
    finally:
        algo.stop()
    agents = role_agents(config, role)

    def per_agent(result: dict[str, Any]) -> float:
        return sum(result["returns"][a] for a in agents) / len(agents)

    keys = (MarketMetrics.WELFARE_PLATFORM, MarketMetrics.WELFARE_USERS, MarketMetrics.REVENUE)
    return {
        "role": role,
        "training": summary,
        "scripted_return_per_agent": per_agent(base),
        "best_response_return_per_agent": per_agent(best),
        "gain_per_agent": per_agent(best) - per_agent(base),
        "others_under_best_response": {k: best[k] for k in keys},
        "others_under_scripted": {k: base[k] for k in keys},
    }
