"""Offline RL from logs, compared honestly: discrete CQL, BC and MARWIL against the logging policy.

A behaviour policy (default ``epsilon-greedy:0.2``: the peeking greedy-myopic ranker with 20%
uniformly random slates) logs ``--users`` lifetimes with ``rayrec collect``; each preset then
trains from those logs only (no environment interaction) for ``--iterations`` and is evaluated in
the simulator on the same users as the behaviour policy and the baselines.

The numbers go to ``docs/results.json`` (key ``--key``, default ``offline``) and
``docs/results.md``.

    python benchmarks/compare_offline.py [--users 20000] [--iterations 150] [--presets cql,bc,marwil]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_page import update_results  # noqa: E402


def main() -> None:
    import ray

    from rayrec.contracts.keys import Metrics
    from rayrec.evaluation.collect import collect
    from rayrec.run import RunOptions, train
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=str(ROOT / "envs" / "session.yaml"))
    parser.add_argument("--behavior", default="epsilon-greedy:0.2")
    parser.add_argument("--users", type=int, default=20_000, help="logged user lifetimes")
    parser.add_argument("--presets", default="cql,bc,marwil")
    parser.add_argument("--iterations", type=int, default=150, help="training iterations each")
    parser.add_argument("--eval-users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="policy overrides for all")
    parser.add_argument("--key", default="offline", help="results.json key (offline*)")
    args = parser.parse_args()

    env_raw = load_yaml(args.env)
    env = EnvSpec.from_dict(env_raw, args.env)
    rows, baselines, log_meta = [], None, None
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "log"
            t = time.perf_counter()
            log_meta = collect(env, args.behavior, args.users, data, seed=args.seed + 1)
            log_meta["collect_s"] = round(time.perf_counter() - t, 1)
            for name in args.presets.split(","):
                _, policy_raw = apply_overrides(
                    env_raw, load_yaml(ROOT / "policies" / f"{name}.yaml"), args.set
                )
                policy = PolicySpec.from_dict(policy_raw, name)
                options = RunOptions(
                    out=Path(tmp) / name,
                    seed=args.seed,
                    iterations=args.iterations,
                    eval_users=args.eval_users,
                    baselines=("random", "popular", "greedy", "heuristic")
                    if baselines is None
                    else (),
                    checkpoint_every=10_000,
                    data=data,
                )
                results = train(env, policy, options, quiet=True)
                baselines = baselines or results["baselines"]
                m, tr = results["policy"], results["training"]
                rows.append(
                    {
                        "algorithm": name,
                        "return_mean": m[Metrics.RETURN_MEAN],
                        "return_ci95": m[Metrics.RETURN_CI95],
                        "clicks_mean": m[Metrics.CLICKS_MEAN],
                        "sessions_per_user": m[Metrics.SESSIONS_PER_USER],
                        "return_rate": m[Metrics.RETURN_RATE],
                        "watch_mean": m[Metrics.WATCH_MEAN],
                        "clickbait_share": m[Metrics.CLICKBAIT_SHARE],
                        "iterations": tr["iterations"],
                        "wall_time_s": tr["wall_time_s"],
                        "overrides": args.set,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    except BaseException:
        ray.shutdown()
        raise
    record = {
        "env": str(Path(args.env).resolve().relative_to(ROOT))
        if str(Path(args.env).resolve()).startswith(str(ROOT))
        else args.env,
        "behavior": args.behavior,
        "seed": args.seed,
        "logged_users": args.users,
        "logged_rows": log_meta["rows"],
        "logged_return_mean": log_meta["behavior_return_mean"],
        "eval_users": args.eval_users,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "algorithms": rows,
        "baselines": {name: _summary(b) for name, b in baselines.items()},
    }
    update_results(args.key, record)
    print(f"wrote docs/results.json ({args.key}): {len(rows)} algorithms", flush=True)
    # Only now: an object collected after ray.shutdown() can make Ray end the process on the spot.
    ray.shutdown()


def _summary(m: dict) -> dict:
    keys = ("return_mean", "return_ci95", "clicks_mean", "sessions_per_user", "return_rate")
    return {k: m[k] for k in keys}


if __name__ == "__main__":
    main()
