"""Hierarchical PPO (one policy per level) against flat PPO on the niche-interest scenario.

Both agents are what ``rayrec train`` builds (``rayrec.experiment.build_config``): the flat agent
is ``policies/hierarchical_flat_ppo.yaml`` (rayrec's candidate scorer), the hierarchical one
``policies/hierarchical_ppo.yaml`` (the same scorer conditioned on the option at the low level, an
option policy at the high level, per-level gamma through ``PerModuleGammaGAE``). Two budgets, each
its own pair of runs:

- equal simulator steps (``--sim-steps``): the hierarchical agent's simulator steps are its low
  agent's steps (a high-level turn does not advance the simulator);
- equal wall time (``--time-budget`` seconds of training each).

Every agent is evaluated deterministically (arg-max of the masked logits) on the *flat* return
(the simulator reward only, no shaping terms) over ``--eval-users`` users, as ``rayrec train``
evaluates its runs; so are the baselines. Mean ± 95% CI go to ``docs/results.json`` (key
``--key``) and ``docs/results.md``, whatever they show; ``--no-write`` prints them only.

    python benchmarks/compare_hierarchical.py [--sim-steps 60000] [--time-budget 180]
    python benchmarks/compare_hierarchical.py --smoke   # tiny batches: checks the wiring only
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_page import update_results  # noqa: E402
from rayrec.contracts.keys import Metrics  # noqa: E402
from rayrec.envs.hierarchical import LOW  # noqa: E402

KEEP = (
    Metrics.RETURN_MEAN,
    Metrics.RETURN_CI95,
    Metrics.CLICKS_MEAN,
    Metrics.SESSIONS_PER_USER,
    Metrics.TOPICS_PER_USER,
)


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
            stats = {"sim_steps": steps, "iterations": iterations, "wall_time_s": round(elapsed, 1)}
            return algo, stats


def evaluate_agent(algo: Any, kind: str, env_spec: Any, users: int, seed: int) -> dict:
    """Metrics of the trained agent, read back from a checkpoint as `rayrec train` does."""
    from rayrec.evaluation import evaluate
    from rayrec.evaluation.policies import HierarchicalPolicy, ModulePolicy

    with tempfile.TemporaryDirectory() as tmp:
        algo.save_to_path(tmp)
        if kind == "hier":
            return HierarchicalPolicy.from_checkpoint(tmp).evaluate_on(env_spec, users, seed)
        return evaluate(ModulePolicy.from_checkpoint(tmp), env_spec.config, users=users, seed=seed)


def main() -> None:
    import ray
    import torch

    from rayrec.evaluation import evaluate, make_baseline
    from rayrec.experiment import build_config

    # Both agents' learners run in this process: one torch thread each, as the hierarchical
    # learner sets for itself (docs/hierarchical.md), so the flat agent is not slowed by torch's
    # default threads on shared cores.
    torch.set_num_threads(1)
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=str(ROOT / "envs" / "hierarchical.yaml"))
    parser.add_argument("--policy", default=str(ROOT / "policies" / "hierarchical_ppo.yaml"))
    parser.add_argument(
        "--flat-policy", default=str(ROOT / "policies" / "hierarchical_flat_ppo.yaml")
    )
    parser.add_argument("--sim-steps", type=int, default=60_000, help="equal-steps budget")
    parser.add_argument("--time-budget", type=float, default=180.0, help="equal-time budget, s")
    parser.add_argument("--eval-users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key", default="hierarchical", help="results.json key")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs/")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny batches (checks the wiring; implies --no-write)"
    )
    args = parser.parse_args()
    args.no_write |= args.smoke
    smoke = ["training.train_batch_size_per_learner=256", "training.minibatch_size=128"]
    smoke += ["training.num_epochs=1", "env_runners.num_envs_per_env_runner=8"]

    env_raw = load_yaml(args.env)
    env_spec = EnvSpec.from_dict(env_raw, args.env)
    if env_spec.hierarchy is None:
        raise SystemExit(f"{args.env}: needs a 'hierarchy' section")
    policies = {}
    for kind, path in (("hier", args.policy), ("flat", args.flat_policy)):
        _, raw = apply_overrides(env_raw, load_yaml(path), smoke if args.smoke else [])
        policies[kind] = PolicySpec.from_dict(raw, path)
    eval_seed = 10_000 + args.seed
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for budget in ("equal_sim_steps", "equal_wall_time"):
            for kind in ("hier", "flat"):
                config = build_config(env_spec, policies[kind], seed=args.seed)
                steps = args.sim_steps if budget == "equal_sim_steps" else None
                seconds = args.time_budget if budget == "equal_wall_time" else None
                algo, stats = train(config, kind, steps, seconds)
                metrics = evaluate_agent(algo, kind, env_spec, args.eval_users, eval_seed)
                algo.stop()
                row = {"budget": budget, "agent": kind, **{k: metrics[k] for k in KEEP}, **stats}
                rows.append(row)
                print(row, flush=True)
    finally:
        ray.shutdown()
    baselines = {}
    for name in ("random", "popular", "greedy", "longterm"):
        m = evaluate(make_baseline(name), env_spec.config, users=args.eval_users, seed=eval_seed)
        baselines[name] = {k: m[k] for k in KEEP}
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
        "note": "flat agents and baselines play the batched evaluate() users of eval seed "
        "10000 + seed; the hierarchical agent plays HierarchicalSessionEnv users seeded "
        "eval seed + i (the same distribution, other draws), scored on the flat return",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "date": time.strftime("%Y-%m-%d"),
    }
    if not args.no_write:
        update_results(args.key, record)


if __name__ == "__main__":
    main()
