"""Env steps per second of one PPO env runner against the number of vectorised envs it steps.

One local RLlib env runner (no learner, no Ray cluster) samples the default session env through
``SessionVectorEnv`` (the ``vector_entry_point``) with batched RLModule inference, as PPO's env
runners do, two ways, alternately within each repeat:

- rayrec's ``VectorEnvRunner`` (the default): the batched observation goes straight to the
  module and episodes are built once per ``sample()`` call from arrays;
- RLlib's own ``SingleAgentEnvRunner`` loop, which handles every sub-env separately after every
  step (episode appends, connectors), as the baseline.

Both return the same episodes (tests/envs/test_vector_runner.py). Part of the cost is per vector
step (one module call, one simulator step), part per env step, so env steps/s grow with the envs
per runner. Prints the median of ``--repeats`` and the speedup, and stores the table in
``docs/results.json`` (key ``sampling``) and ``docs/results.md`` (``--no-write`` to only print).

    python benchmarks/bench_sampling.py [--envs 16,64,256,1024] [--seconds 5] [--repeats 3]
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
# Env steps per sample() call: PPO's train batch (policies/ppo.yaml).
PER_CALL = 4096


def main() -> None:
    from benchmarks.results_page import update_results
    from rayrec.experiment import sampling_rate
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=str(ROOT / "envs" / "session.yaml"))
    parser.add_argument("--policy", default=str(ROOT / "policies" / "ppo.yaml"))
    parser.add_argument("--envs", default="16,64,256,1024", help="envs per runner, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="sampling time per repeat")
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
    rates: dict[int, tuple[float, float]] = {}
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
        fast, base = [], []
        for _ in range(args.repeats):
            base.append(
                sampling_rate(env, policy, args.seconds, rllib_loop=True, per_call=PER_CALL)
            )
            fast.append(sampling_rate(env, policy, args.seconds, per_call=PER_CALL))
        rates[n] = (statistics.median(fast), statistics.median(base))
        print(
            f"{n} envs: {rates[n][0]:,.0f} env steps/s (RLlib's loop {rates[n][1]:,.0f})",
            file=sys.stderr,
            flush=True,
        )

    print(
        f"\n{Path(args.policy).name} on {Path(args.env).name}, one env runner, "
        f"{os.cpu_count()} CPUs, {PER_CALL} env steps per sample() call, "
        f"median of {args.repeats} x {args.seconds:g} s\n"
    )
    print("| envs per runner | RLlib's loop | rayrec's batched loop | speedup |")
    print("|---|---|---|---|")
    for n, (fast, base) in sorted(rates.items()):
        mark = " (preset)" if n == preset else ""
        print(f"| {n}{mark} | {base:,.0f} | {fast:,.0f} | {fast / base:.2f}x |")
    if not args.no_write:
        record = {
            "env": Path(args.env).name,
            "policy": Path(args.policy).name,
            "preset_envs": preset,
            "seconds": args.seconds,
            "per_call": PER_CALL,
            "repeats": args.repeats,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "date": time.strftime("%Y-%m-%d"),
            "rates": [
                {"envs": n, "env_steps_per_s": fast, "rllib_loop_steps_per_s": base}
                for n, (fast, base) in sorted(rates.items())
            ],
        }
        update_results("sampling", record)


if __name__ == "__main__":
    main()
