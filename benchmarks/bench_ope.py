"""Seconds the step-level estimators take on 10^6 logged rows, on one core.

A synthetic log of n = 10^6 decisions among A = 20 candidates, shaped like a ``rayrec collect``
log of envs/session.yaml: 5 context features, 4 features per candidate and row (the adapter's
observable action features), an epsilon-greedy behaviour policy (epsilon 0.2) with its
propensities, a softmax evaluation policy, Bernoulli clicks. Each estimator is timed alone (its
point estimate, ESS and 1,000-replicate bootstrap interval; DM/DR family including the 2-fold
cross-fitted ridge reward model), then all six together as ``rayrec ope`` runs them (one reward
model and one shared set of bootstrap resamples). numpy runs single-threaded (the BLAS thread
variables are set to 1 before numpy is imported). The target is <= 30 s for all six.

    python benchmarks/bench_ope.py [--rows N] [--bootstrap B] [--out FILE.md]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402 - after the thread variables
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from rayrec.ope import STEP_ESTIMATORS, EstimatorConfig, StepLog, estimate_step  # noqa: E402


def synthetic_log(n: int, num_actions: int = 20, seed: int = 0) -> StepLog:
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, 5)).astype(np.float32)
    features = rng.normal(size=(n, num_actions, 4)).astype(np.float32)
    utility = features @ np.array([0.8, -0.5, 0.3, 0.2], dtype=np.float32)
    greedy = utility.argmax(axis=1)
    explore = rng.random(n) < 0.2
    action = np.where(explore, rng.integers(0, num_actions, n), greedy)
    pscore = np.where(action == greedy, 0.8 + 0.2 / num_actions, 0.2 / num_actions)
    logits = 0.7 * utility
    eval_dist = np.exp(logits - logits.max(axis=1, keepdims=True))
    eval_dist /= eval_dist.sum(axis=1, keepdims=True)
    click_p = 1 / (1 + np.exp(-(utility[np.arange(n), action] - 2.0)))
    reward = (rng.random(n) < click_p).astype(np.float64)
    return StepLog(reward, pscore, action, eval_dist.astype(np.float64), context, features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    start = time.perf_counter()
    log = synthetic_log(args.rows)
    print(f"built the log of {args.rows:,} rows in {time.perf_counter() - start:.1f} s")
    config = EstimatorConfig(n_bootstrap=args.bootstrap)
    lines = [
        f"| estimators (n = {args.rows:,}, {args.bootstrap} bootstrap replicates) "
        "| wall s | CPU s | estimate |",
        "| --- | ---: | ---: | ---: |",
    ]
    for names in [(name,) for name in STEP_ESTIMATORS] + [STEP_ESTIMATORS]:
        wall, cpu = time.perf_counter(), time.process_time()
        estimates = estimate_step(log, names, config)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        value = f"{estimates[names[0]].value:.4f}" if len(names) == 1 else ""
        label = names[0] if len(names) == 1 else "all six together"
        lines.append(f"| {label} | {wall:.1f} | {cpu:.1f} | {value} |")
        print(lines[-1], flush=True)
    load = os.getloadavg()
    lines.append(f"\nload average during the run: {load[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
