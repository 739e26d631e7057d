"""Env steps per second of one PPO env runner against the number of vectorised envs it steps.

One local RLlib ``SingleAgentEnvRunner`` (no learner, no Ray cluster) samples the default session
env through ``SessionVectorEnv`` (the ``vector_entry_point``) with batched RLModule inference, as
PPO's env runners do. Part of the cost is per vector step (one module call, connector calls), part
per env step (episode bookkeeping), so env steps/s per runner grow with the envs per runner until
the per-env part dominates. Prints the
median of ``--repeats`` and the ratio against ``policies/ppo.yaml``'s own setting, measured in the
same run, and stores the table in ``docs/results.json`` (key ``sampling``) and ``docs/results.md``
(``--no-write`` to only print).

    python benchmarks/bench_sampling.py [--envs 16,64,256,1024] [--seconds 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    from rayrec.experiment import sampling_rate
    from rayrec.results import update_results
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=str(ROOT / "envs" / "session.yaml"))
    parser.add_argument("--policy", default=str(ROOT / "policies" / "ppo.yaml"))
    parser.add_argument("--envs", default="16,64,256,1024", help="envs per runner, comma-separated")
    parser.add_argument("--seconds", type=float, default=6.0, help="sampling time per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only, keep docs/ as is")
    args = parser.parse_args()
    counts = [int(n) for n in args.envs.split(",") if n]
    if not counts or min(counts) < 1 or args.repeats < 1 or args.seconds <= 0:
        parser.error("--envs must be positive integers, --repeats >= 1, --seconds > 0")

    env_raw, policy_raw = load_yaml(args.env), load_yaml(args.policy)
    preset = policy_raw["env_runners"]["num_envs_per_env_runner"]
    if preset not in counts:
        counts.append(preset)
    env = EnvSpec.from_dict(env_raw, args.env)
    rates = {}
    for n in sorted(counts):
        _, raw = apply_overrides(
            env_raw,
            policy_raw,
            [
                f"env_runners.num_envs_per_env_runner={n}",
                "env_runners.rollout_fragment_length=auto",
            ],
        )
        policy = PolicySpec.from_dict(raw, args.policy)
        rates[n] = statistics.median(
            sampling_rate(env, policy, args.seconds) for _ in range(args.repeats)
        )
        print(f"{n} envs: {rates[n]:,.0f} env steps/s", file=sys.stderr, flush=True)

    print(
        f"\n{Path(args.policy).name} on {Path(args.env).name}, one env runner, "
        f"{os.cpu_count()} CPUs, median of {args.repeats} x {args.seconds:g} s\n"
    )
    print("| envs per runner | env steps/s | vs preset |")
    print("|---|---|---|")
    for n in sorted(rates):
        mark = " (preset)" if n == preset else ""
        print(f"| {n}{mark} | {rates[n]:,.0f} | {rates[n] / rates[preset]:.2f}x |")
    if not args.no_write:
        record = {
            "env": Path(args.env).name,
            "policy": Path(args.policy).name,
            "preset_envs": preset,
            "seconds": args.seconds,
            "repeats": args.repeats,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "date": time.strftime("%Y-%m-%d"),
            "rates": [{"envs": n, "env_steps_per_s": rates[n]} for n in sorted(rates)],
        }
        update_results("sampling", record)


if __name__ == "__main__":
    main()
