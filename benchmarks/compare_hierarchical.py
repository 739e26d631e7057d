"""Hierarchical PPO (one policy per level) against flat PPO on the niche-interest scenario.

Both agents use RLlib's default PPO modules over flattened observations (item-id keys dropped), so
they differ only in the hierarchy. Two budgets, each its own pair of runs:

- equal simulator steps (``--sim-steps``): the hierarchical agent's simulator steps are its low
  agent's steps (a high-level turn does not advance the simulator);
- equal wall time (``--time-budget`` seconds of training each).

Each trained agent plays ``--eval-users`` lifetimes (deterministic: the arg-max of the masked
logits) scored by the *flat* return (the simulator reward only, no shaping terms); the baselines
are evaluated by ``rayrec.evaluation.evaluate``. Mean ± 95% CI go to ``docs/results.json`` (key
``--key``) and ``docs/results.md``, whatever they show; ``--no-write`` prints them only.

The high level's discount is per option, the low level's per step (``levels`` of
``policies/hierarchical_ppo.yaml``): RLlib 2.60's PPO computes GAE with one gamma for every module,
so this script swaps in :class:`PerModuleGammaGAE`.

    python benchmarks/compare_hierarchical.py [--sim-steps 200000] [--time-budget 480]
    python benchmarks/compare_hierarchical.py --smoke   # tiny batches: checks the wiring only
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner  # noqa: E402
from ray.rllib.connectors.learner import GeneralAdvantageEstimation  # noqa: E402

from rayrec.envs.hierarchical import HIGH, LOW, HierInfo  # noqa: E402
from rayrec.envs.observation import Obs  # noqa: E402
from rayrec.results import update_results  # noqa: E402

# Raw item ids are labels, not magnitudes: an MLP over flattened observations must not see them.
DROP_KEYS = [Obs.HISTORY_ITEMS, Obs.CANDIDATE_ITEMS]


class PerModuleGammaGAE(GeneralAdvantageEstimation):
    """GAE with each module's own gamma (``config.get_config_for_module(mid).gamma``)."""

    def __init__(self, *args: Any, gammas: dict[str, float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gammas = gammas
        self.default_gamma = self.gamma

    def __call__(self, *, rl_module: Any, episodes: Any, batch: dict, **kwargs: Any) -> Any:
        for module_id in list(batch):
            self.gamma = self.gammas.get(module_id, self.default_gamma)
            # The parent writes advantages and value targets into batch[module_id] in place.
            super().__call__(
                rl_module=rl_module,
                episodes=episodes,
                batch={module_id: batch[module_id]},
                **kwargs,
            )
        self.gamma = self.default_gamma
        return batch


class PerModuleGammaPPOLearner(PPOTorchLearner):
    """PPO's torch learner with :class:`PerModuleGammaGAE` instead of the one-gamma GAE."""

    def build(self) -> None:
        super().build()
        if self._learner_connector is not None and self.config.is_multi_agent:
            gammas = {
                mid: self.config.get_config_for_module(mid).gamma for mid in self.config.policies
            }
            self._learner_connector.remove("GeneralAdvantageEstimation")
            self._learner_connector.append(
                PerModuleGammaGAE(
                    gamma=self.config.gamma, lambda_=self.config.lambda_, gammas=gammas
                )
            )


def _flatten_connector(space: Any, multi_agent: bool) -> Any:
    from ray.rllib.connectors.env_to_module import FlattenObservations

    # FlattenObservations needs its input space up front when it removes keys (RLlib 2.60).
    return lambda *a, **k: FlattenObservations(
        input_observation_space=space, multi_agent=multi_agent, keys_to_remove=DROP_KEYS
    )


def make_config(
    kind: str, env_spec: Any, policy: Any, seed: int, num_envs: int, smoke: bool = False
) -> Any:
    """The PPO AlgorithmConfig of the ``hier`` or ``flat`` agent."""
    import gymnasium as gym
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune.registry import register_env

    from rayrec.envs import SessionEnv
    from rayrec.envs.hierarchical import HierarchicalSessionEnv
    from rayrec.envs.observation import observation_space

    training = dict(policy.sections["training"])
    if smoke:
        training.update(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=1)
    sim = env_spec.config.to_dict()
    config = PPOConfig()
    if kind == "hier":
        env_config = {**sim, "hierarchy": env_spec.hierarchy.to_dict()}
        space = gym.spaces.Dict(HierarchicalSessionEnv(env_config).observation_spaces)
        register_env("rayrec-hier", lambda cfg: HierarchicalSessionEnv(cfg))
        config.environment("rayrec-hier", env_config=env_config)
        levels = policy.levels or {}
        config.multi_agent(
            policies={HIGH, LOW}, policy_mapping_fn=lambda agent_id, *a, **k: agent_id
        )
        config.rl_module(
            rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={HIGH: RLModuleSpec(), LOW: RLModuleSpec()}
            ),
            algorithm_config_overrides_per_module={
                level: dict(levels.get(level, {}).get("training", {})) for level in (HIGH, LOW)
            },
        )
        training["learner_class"] = PerModuleGammaPPOLearner
    else:
        space = observation_space(env_spec.config)
        register_env("rayrec-flat", lambda cfg: SessionEnv(**cfg))
        config.environment("rayrec-flat", env_config=sim)
    config.env_runners(
        num_env_runners=0,
        num_envs_per_env_runner=num_envs,
        env_to_module_connector=_flatten_connector(space, kind == "hier"),
    )
    config.training(**training)
    config.debugging(seed=seed)
    return config


def _steps(result: dict, kind: str) -> int:
    """Simulator steps sampled so far: env steps (flat) or the low agent's steps (hier)."""
    runners = result["env_runners"]
    if kind == "flat":
        return int(runners["num_env_steps_sampled_lifetime"])
    return int(runners["num_agent_steps_sampled_lifetime"][LOW])


def train(config: Any, kind: str, sim_steps: int | None, seconds: float | None) -> tuple:
    """Train until ``sim_steps`` simulator steps or ``seconds`` of wall time."""
    algo = config.build_algo()
    start, iterations = time.perf_counter(), 0
    while True:
        result = algo.train()
        iterations += 1
        steps = _steps(result, kind)
        elapsed = time.perf_counter() - start
        if (sim_steps is not None and steps >= sim_steps) or (
            seconds is not None and elapsed >= seconds
        ):
            return algo, {"sim_steps": steps, "iterations": iterations, "wall_time_s": elapsed}


def _act(module: Any, obs: dict, space: Any) -> int:
    """Arg-max of the module's logits over the valid actions of ``obs``."""
    import torch
    from ray.rllib.utils.numpy import flatten_inputs_to_1d_tensor
    from ray.rllib.utils.spaces.space_utils import get_base_struct_from_space

    kept = {k: v for k, v in obs.items() if k not in DROP_KEYS}
    struct = get_base_struct_from_space(space)
    struct = {k: v for k, v in struct.items() if k not in DROP_KEYS}
    x = flatten_inputs_to_1d_tensor(kept, spaces_struct=struct, batch_axis=False)
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(x[None], dtype=torch.float32)})
    logits = out["action_dist_inputs"][0].numpy()
    logits = np.where(obs[Obs.ACTION_MASK].astype(bool), logits, -np.inf)
    return int(np.argmax(logits))


def evaluate_agent(algo: Any, kind: str, env_spec: Any, users: int, seed: int) -> np.ndarray:
    """(users,) flat returns of the trained agent, deterministic actions, user i seeded seed + i."""
    from rayrec.envs import SessionEnv
    from rayrec.envs.hierarchical import HierarchicalSessionEnv

    sim = env_spec.config.to_dict()
    out = np.zeros(users)
    if kind == "hier":
        env = HierarchicalSessionEnv({**sim, "hierarchy": env_spec.hierarchy})
        modules = {agent: algo.get_module(agent) for agent in (HIGH, LOW)}
        for i in range(users):
            obs, _ = env.reset(seed=seed + i)
            while True:
                agent = next(iter(obs))
                action = _act(modules[agent], obs[agent], env.observation_spaces[agent])
                obs, _, terms, truncs, infos = env.step({agent: action})
                info = infos.get(LOW) or infos.get(HIGH) or {}
                out[i] += info.get(HierInfo.FLAT_REWARD, 0.0)
                if terms["__all__"] or truncs["__all__"]:
                    break
    else:
        env = SessionEnv(**sim)
        module = algo.get_module()
        for i in range(users):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(
                    _act(module, obs, env.observation_space)
                )
                out[i] += reward
                done = terminated or truncated
    return out


def main() -> None:
    import ray

    from rayrec.evaluation import evaluate, make_baseline
    from rayrec.evaluation.simulate import ci95
    from rayrec.keys import Metrics
    from rayrec.specs import EnvSpec, PolicySpec, load_yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=str(ROOT / "envs" / "hierarchical.yaml"))
    parser.add_argument("--policy", default=str(ROOT / "policies" / "hierarchical_ppo.yaml"))
    parser.add_argument(
        "--flat-policy", default=str(ROOT / "policies" / "hierarchical_flat_ppo.yaml")
    )
    parser.add_argument("--sim-steps", type=int, default=200_000, help="equal-steps budget")
    parser.add_argument("--time-budget", type=float, default=480.0, help="equal-time budget, s")
    parser.add_argument("--num-envs", type=int, default=8, help="envs per env runner")
    parser.add_argument("--eval-users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key", default="hierarchical", help="results.json key")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs/")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny batches (checks the wiring; implies --no-write)"
    )
    args = parser.parse_args()
    args.no_write |= args.smoke

    env_spec = EnvSpec.from_dict(load_yaml(args.env), args.env)
    if env_spec.hierarchy is None:
        raise SystemExit(f"{args.env}: needs a 'hierarchy' section")
    policies = {
        "hier": PolicySpec.from_dict(load_yaml(args.policy), args.policy),
        "flat": PolicySpec.from_dict(load_yaml(args.flat_policy), args.flat_policy),
    }
    eval_seed = 10_000 + args.seed
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for budget in ("equal_sim_steps", "equal_wall_time"):
            for kind in ("hier", "flat"):
                config = make_config(
                    kind, env_spec, policies[kind], args.seed, args.num_envs, args.smoke
                )
                steps = args.sim_steps if budget == "equal_sim_steps" else None
                seconds = args.time_budget if budget == "equal_wall_time" else None
                algo, stats = train(config, kind, steps, seconds)
                returns = evaluate_agent(algo, kind, env_spec, args.eval_users, eval_seed)
                algo.stop()
                row = {
                    "budget": budget,
                    "agent": kind,
                    "return_mean": float(returns.mean()),
                    "return_ci95": ci95(returns),
                    **stats,
                }
                rows.append(row)
                print(row, flush=True)
    finally:
        ray.shutdown()
    baselines = {}
    for name in ("random", "greedy", "longterm"):
        m = evaluate(make_baseline(name), env_spec.config, users=args.eval_users, seed=eval_seed)
        baselines[name] = {
            "return_mean": m[Metrics.RETURN_MEAN],
            "return_ci95": m[Metrics.RETURN_CI95],
        }
        print(name, baselines[name], flush=True)
    record = {
        "env": os.path.relpath(args.env, ROOT),
        "policies": [os.path.relpath(args.policy, ROOT), os.path.relpath(args.flat_policy, ROOT)],
        "sim_steps_budget": args.sim_steps,
        "time_budget_s": args.time_budget,
        "eval_users": args.eval_users,
        "seed": args.seed,
        "runs": rows,
        "baselines": baselines,
        "note": "agents play users seeded eval_seed + i one by one; baselines play the batched "
        "evaluate() users of the same seed: agents compare exactly, baselines in distribution",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
    }
    if not args.no_write:
        update_results(args.key, record)


if __name__ == "__main__":
    main()
