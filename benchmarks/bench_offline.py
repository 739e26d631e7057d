"""Offline data throughput: rows/s written by ``rayrec collect`` and CQL learner updates/s from parquet.

Collect: median over ``--repeats`` of logging ``--users`` lifetimes per behaviour policy (parquet,
zstd, atomic parts), as rows/s. Learning: discrete CQL trained from the log through RLlib's offline
data API (Ray Data reading parquet, the rayrec prelearner decoding rows into observations), as
learner updates/s and rows/s after a warm-up iteration; the baseline in the same run is the same
learner updating on one batch already in memory, so the ratio is the cost of reading and decoding.

    python benchmarks/bench_offline.py [--users 5000] [--iterations 5] [--batch 512]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _collect_rates(env, users: int, repeats: int, tmp: Path) -> list[tuple[str, float, int]]:
    from rayrec.evaluation.collect import collect

    rows = []
    for behavior in ("random", "greedy", "epsilon-greedy:0.2"):
        rates, n = [], 0
        for r in range(repeats):
            out = tmp / f"collect-{r}"
            t = time.perf_counter()
            meta = collect(env, behavior, users, out, seed=r)
            rates.append(meta["rows"] / (time.perf_counter() - t))
            n = meta["rows"]
            shutil.rmtree(out)
        rows.append((behavior, statistics.median(rates), n))
    return rows


def _learner_rates(env, data: Path, iterations: int, batch: int) -> tuple[float, float]:
    from ray.rllib.core.learner.training_data import TrainingData

    from rayrec.experiment import build_config
    from rayrec.specs import PolicySpec, apply_overrides, load_yaml

    _, policy_raw = apply_overrides(
        {},
        load_yaml(ROOT / "policies" / "cql.yaml"),
        [f"training.train_batch_size_per_learner={batch}"],
    )
    policy = PolicySpec.from_dict(policy_raw, "cql")
    algo = build_config(env, policy, data=data).build_algo()
    updates_per_iter = algo.config.dataset_num_iters_per_learner
    algo.train()  # warm-up: starts the Ray Data pipeline and its decoding actor
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        algo.train()
        times.append(time.perf_counter() - t)
    from_parquet = updates_per_iter / statistics.median(times)
    # Baseline: the same learner on one batch already in memory.
    batch_in_memory = algo.offline_data.sample(num_samples=batch, num_shards=0)
    group = algo.learner_group
    times = []
    for i in range(iterations):
        t = time.perf_counter()
        for _ in range(updates_per_iter):
            group.update(
                training_data=TrainingData(batch=batch_in_memory),
                minibatch_size=batch,
                num_iters=1,
                timesteps={"num_env_steps_sampled_lifetime": (i + 1) * batch},
            )
        times.append(time.perf_counter() - t)
    in_memory = updates_per_iter / statistics.median(times)
    algo.stop()
    return from_parquet, in_memory


def main() -> None:
    import ray

    from rayrec.evaluation.collect import collect
    from rayrec.specs import EnvSpec, load_yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=str(ROOT / "envs" / "session.yaml"))
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    env = EnvSpec.from_dict(load_yaml(args.env), args.env)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"collect: {args.users} lifetimes, median of {args.repeats}")
        print(f"{'behaviour':<22}{'rows':>10}{'rows/s':>12}")
        for behavior, rate, n in _collect_rates(env, args.users, args.repeats, tmp):
            print(f"{behavior:<22}{n:>10}{rate:>12.0f}")
        data = tmp / "log"
        collect(env, "epsilon-greedy:0.2", args.users, data, seed=0)
        ray.init(include_dashboard=False, log_to_driver=False)
        try:
            parquet, memory = _learner_rates(env, data, args.iterations, args.batch)
        finally:
            ray.shutdown()
    print(f"\nCQL learner, batch {args.batch}, median of {args.iterations} iterations")
    print(f"{'input':<22}{'updates/s':>12}{'rows/s':>12}{'ratio':>8}")
    print(f"{'in-memory batch':<22}{memory:>12.1f}{memory * args.batch:>12.0f}{1.0:>8.2f}")
    print(
        f"{'parquet (Ray Data)':<22}{parquet:>12.1f}{parquet * args.batch:>12.0f}"
        f"{parquet / memory:>8.2f}"
    )


if __name__ == "__main__":
    main()
