"""Marketplace results: a learned platform vs the scripted ones, and an exploitability estimate.

Trains the platform with PPO (``policies/marketplace_ppo.yaml``) on ``envs/marketplace.yaml``
against scripted creators and advertisers and simulator users, evaluates it and the scripted
greedy and balanced platforms on the same seeded episodes, then freezes the learned platform and
trains a best response for one role (advertisers by default) and reports its gain. Writes the
``marketplace`` key of docs/results.json (and docs/results.md).

    python benchmarks/marketplace_results.py [--iterations 15] [--role advertiser]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.results_page
from benchmarks.results_page import update_results
from rayrec.contracts.keys import MarketMetrics
from rayrec.run.marketplace_study import exploitability, learner_state, platform_study
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--br-iterations", type=int, default=10)
    parser.add_argument("--role", default="advertiser", choices=["creator", "advertiser", "user"])
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--user-floor", type=float, default=None)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "marketplace.yaml"))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / "marketplace_ppo.yaml"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        record, algo = platform_study(
            env, policy, args.iterations, args.episodes, args.seed,
            user_welfare_floor=args.user_floor,
        )  # fmt: skip
        state = learner_state(algo, "platform")
        algo.stop()
        record["exploitability"] = exploitability(
            env, policy, state, args.role, args.br_iterations, args.episodes, args.seed
        )
    finally:
        ray.shutdown()
    record.update(
        env="envs/marketplace.yaml",
        policy="policies/marketplace_ppo.yaml",
        episodes=args.episodes,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        date=datetime.date.today().isoformat(),
    )
    keys = (
        MarketMetrics.WELFARE_PLATFORM,
        MarketMetrics.WELFARE_USERS,
        MarketMetrics.WELFARE_TOTAL,
        MarketMetrics.RETENTION,
        MarketMetrics.AD_LOAD,
        MarketMetrics.REVENUE,
        MarketMetrics.EXPOSURE_GINI,
    )
    rows = [("learned", record["learned_platform"])]
    rows += [(f"scripted {k}", v) for k, v in record["scripted_platform"].items()]
    rows.append(("random", record["random_platform"]))
    print("platform        " + "  ".join(f"{k:>22}" for k in keys))
    for name, r in rows:
        cells = "  ".join(f"{r[k]:>12.2f} ± {r[k + '_ci95']:>7.2f}" for k in keys)
        print(f"{name:<15} {cells}")
    e = record["exploitability"]
    print(
        f"exploitability ({e['role']}): scripted {e['scripted_return_per_agent']:.2f}, "
        f"best response {e['best_response_return_per_agent']:.2f}, gain {e['gain_per_agent']:.2f}"
    )
    if not args.no_write:
        update_results("marketplace", record)


if __name__ == "__main__":
    main()
