"""Network FQE against its budget: one simulator log, one seed, the trajectory-level truth.

Collects the simulator study's log (``epsilon-ctr:0.2`` over 5,000 users of envs/session.yaml, log
seed S) and, for each evaluation policy asked for, fits the candidate Q network with K phases of
U Adam steps (``rayrec.ope.network_fqe``), then prints the truth (the policy played in the log's
world), WPDIS, the linear FQE / DR-RL and the network FQE / DR-RL with the fit's wall time:

    python benchmarks/ope_fqe_budget.py --phases 200 --updates 12 --seed 0 \\
        --policies heuristic,ppo --checkpoint runs/ppo_ope/checkpoints/final
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rayrec.ope import EstimatorConfig, estimate_trajectory
from rayrec.ope.network_fqe import NetworkFQEConfig
from rayrec.ope.policies import (
    collect_with_step_truth,
    ground_truth,
    load_env,
    load_sim_logs,
    make_eval_policy,
)

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=NetworkFQEConfig.phases)
    parser.add_argument("--updates", type=int, default=NetworkFQEConfig.updates)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--policies", default="heuristic,random,ppo")
    parser.add_argument("--checkpoint", type=Path, help="the PPO checkpoint (policy 'ppo')")
    args = parser.parse_args()
    env = load_env(ROOT / "envs" / "session.yaml")
    names = {"heuristic": "heuristic", "random": "random", "ppo": str(args.checkpoint)}
    wanted = args.policies.split(",")
    unknown = [p for p in wanted if p not in names]
    if unknown or ("ppo" in wanted and args.checkpoint is None):
        parser.error(f"--policies: heuristic, random or ppo (with --checkpoint), got {unknown}")
    names = {k: v for k, v in names.items() if k in wanted}
    policies = {k: make_eval_policy(v, env.config, args.seed) for k, v in names.items()}
    config = EstimatorConfig(seed=args.seed, n_bootstrap=200)
    network = NetworkFQEConfig(phases=args.phases, updates=args.updates, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log"
        collect_with_step_truth(env, "epsilon-ctr:0.2", args.users, log, args.seed, policies)
        for label, name in names.items():
            start = time.perf_counter()
            logs, policy = load_sim_logs(log, name, args.seed, network_fqe=network)
            fit = time.perf_counter() - start
            truth = ground_truth(logs, policy)
            linear = estimate_trajectory(logs.trajectory, ("fqe", "dr-rl", "wpdis"), config)
            net = estimate_trajectory(logs.trajectory, ("fqe", "dr-rl"), config, logs.q_values)
            print(
                f"{label}: truth {truth:.3f} | wpdis {linear['wpdis'].value:.3f} "
                f"linear fqe {linear['fqe'].value:.3f} dr {linear['dr-rl'].value:.3f} "
                f"| net fqe {net['fqe'].value:.3f} [{net['fqe'].ci95[0]:.2f}, "
                f"{net['fqe'].ci95[1]:.2f}] dr {net['dr-rl'].value:.3f} "
                f"| {args.phases} x {args.updates} | fit {fit:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
