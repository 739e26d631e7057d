"""Seconds the step-level estimators take on 10^6 logged rows, on one core.

A synthetic log of n = 10^6 decisions among A = 20 candidates, shaped like a ``rayrec collect``
log of envs/session.yaml: 5 context features, 4 features per candidate and row (the adapter's
observable action features), an epsilon-greedy behaviour policy (epsilon 0.2) with its
propensities, a softmax evaluation policy, Bernoulli clicks. Each estimator is timed alone (its
point estimate, ESS and 1,000-replicate bootstrap interval; DM/DR family including the 2-fold
cross-fitted ridge reward model), then all six together as ``rayrec ope`` runs them (one reward
model and one shared set of bootstrap resamples). numpy runs single-threaded (the BLAS thread
variables are set to 1 before numpy is imported). The target is <= 30 s for all six.

With ``--baseline REV`` it times instead all six together with the working tree's code and with
the ``rayrec/ope`` of git revision REV (loaded from ``git show`` as a separate package), in one
process, alternating which goes first, ``--repeats`` times each: on a shared machine only their
ratio means much. It also says whether the two give the same estimates and intervals.

    python benchmarks/bench_ope.py [--rows N] [--bootstrap B] [--out FILE.md]
    python benchmarks/bench_ope.py --baseline main [--repeats 3] [--rows N] [--bootstrap B]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402 - after the thread variables
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

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


def baseline_step(revision: str) -> ModuleType:
    """``rayrec.ope.step`` as it was at a git revision, imported as ``_ope_baseline.step``."""
    root = Path(__file__).resolve().parents[1]
    package = Path(tempfile.mkdtemp(prefix="bench_ope_")) / "_ope_baseline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("estimate", "reward_model", "step"):
        source = subprocess.run(
            ["git", "show", f"{revision}:rayrec/ope/{name}.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (package / f"{name}.py").write_text(source.replace("rayrec.ope.", "_ope_baseline."))
    sys.path.insert(0, str(package.parent))
    return importlib.import_module("_ope_baseline.step")


def compare(log: StepLog, args: argparse.Namespace) -> list[str]:
    """Wall and CPU seconds of all six with REV's code and the working tree's, interleaved."""
    old = baseline_step(args.baseline)
    old_log = old.StepLog(**{f.name: getattr(log, f.name) for f in dataclasses.fields(log)})
    codes = {
        args.baseline: lambda: old.estimate_step(
            old_log, STEP_ESTIMATORS, old.EstimatorConfig(n_bootstrap=args.bootstrap)
        ),
        "working tree": lambda: estimate_step(
            log, STEP_ESTIMATORS, EstimatorConfig(n_bootstrap=args.bootstrap)
        ),
    }
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in codes}
    answers = {}
    for repeat in range(args.repeats):
        for name in list(codes)[:: 1 if repeat % 2 == 0 else -1]:
            wall, cpu = time.perf_counter(), time.process_time()
            answers[name] = codes[name]()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times[name].append((wall, cpu, os.getloadavg()[0]))
            print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU, load {times[name][-1][2]:.1f}")
    lines = [
        f"| all six together (n = {args.rows:,}, {args.bootstrap} bootstrap replicates) "
        "| wall s | CPU s | load (1 min) after each | median wall s | median CPU s |",
        "| --- | --- | --- | --- | ---: | ---: |",
    ]
    medians = {}
    for name, runs in times.items():
        wall, cpu, load = zip(*runs, strict=True)
        medians[name] = float(np.median(wall)), float(np.median(cpu))
        lines.append(
            f"| {name} | {', '.join(f'{t:.1f}' for t in wall)} "
            f"| {', '.join(f'{t:.1f}' for t in cpu)} | {', '.join(f'{x:.1f}' for x in load)} "
            f"| {medians[name][0]:.1f} | {medians[name][1]:.1f} |"
        )
    before, after = medians[args.baseline], medians["working tree"]
    lines.append(
        f"\nmedian ratio {args.baseline} / working tree: {before[0] / after[0]:.2f} (wall), "
        f"{before[1] / after[1]:.2f} (CPU); {os.cpu_count()} CPUs\n"
    )
    lines += ["| estimator | same value | same interval | largest interval change / width |"]
    lines += ["| --- | --- | --- | ---: |"]
    for name in STEP_ESTIMATORS:
        a, b = answers[args.baseline][name], answers["working tree"][name]
        change = max(abs(x - y) for x, y in zip(a.ci95, b.ci95, strict=True))
        width = a.ci95[1] - a.ci95[0]
        lines.append(
            f"| {name} | {a.value == b.value} | {a.ci95 == b.ci95} | {change / width:.1e} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--baseline", help="git revision to time against (e.g. main)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    log = synthetic_log(args.rows)
    print(f"built the log of {args.rows:,} rows in {time.perf_counter() - start:.1f} s")
    if args.baseline:
        table = "\n".join(compare(log, args))
        print(table)
        if args.out:
            args.out.write_text(table + "\n")
        return
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
