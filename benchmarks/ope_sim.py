"""Simulator study: off-policy estimates against the simulator's ground truth, over log seeds.

For each log seed s: ``rayrec collect`` of envs/session.yaml with ``epsilon-ctr:0.2`` (the
observable-CTR ranker, 20% uniformly random) over U user lifetimes (default 5,000), seed s. Each
evaluation policy (``heuristic``, ``random``, a trained checkpoint) is estimated from it:

- step level (a decision is one recommendation): the truth is the policy's mean immediate reward
  on the logged states, sum_a pi_e(a | x_t) P(click | a, latent state_t), which the simulator
  knows exactly while logging (``collect_with_step_truth``);
- trajectory level (a user lifetime): the truth is the policy's mean lifetime return played in
  the same world on the same seed and number of users (``rayrec.evaluation.evaluate``; itself a
  mean over U users, so it carries its own sampling noise).

Reported per policy, level and estimator, over the seeds: the mean relative error
|estimate - truth| / truth, the coverage of the 95% bootstrap interval (share of seeds whose
interval holds the truth), the mean ESS and how many seeds flagged the weights as degenerate.
Estimator settings are those of ``rayrec ope`` (1,000 bootstrap replicates, seeded by s; the
reward model and FQE refitted per replicate unless ``--no-refit``). Raw numbers go to ``--json``,
rewritten after every seed; ``--resume`` keeps the seeds already in it and runs only the missing
ones of ``--first-seed`` .. ``--first-seed + --seeds - 1`` (rows record ``refit``, ``users`` and
``behavior``; rows written before they did were rows-only intervals, ``refit`` false, and
``--resume`` refuses to mix the two kinds).

    python benchmarks/ope_sim.py --checkpoint runs/ppo_ope/checkpoints/final \\
        [--seeds 20] [--users 5000] [--out FILE.md] [--json FILE.json [--resume]] [--no-refit]
    python benchmarks/ope_sim.py --from-json FILE.json [--out FILE.md]   # table of a run so far
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from rayrec.ope import EstimatorConfig, estimate_step, estimate_trajectory
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
    parser.add_argument("--checkpoint", type=Path, help="a trained rayrec checkpoint (e.g. PPO)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--behavior", default="epsilon-ctr:0.2")
    parser.add_argument("--env", type=Path, default=ROOT / "envs" / "session.yaml")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--json", type=Path, help="write every seed's numbers here")
    parser.add_argument(
        "--from-json", type=Path, help="only summarise the numbers of an earlier --json run"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the seeds already in --json FILE and run only the missing ones",
    )
    parser.add_argument(
        "--no-refit",
        action="store_true",
        help="intervals with the models fitted once (as the study's first 17 seeds were run)",
    )
    parser.add_argument(
        "--network-fqe",
        action="store_true",
        help="also fqe and dr-rl with rayrec's candidate Q network (rows 'fqe (network)' and "
        "'dr-rl (network)'; minutes per policy and seed)",
    )
    args = parser.parse_args()
    if args.from_json is not None:
        table = summarise(json.loads(args.from_json.read_text()), args)
        print(table)
        if args.out:
            args.out.write_text(table + "\n")
        return
    env = load_env(args.env)
    names = {"heuristic": "heuristic", "random": "random"}
    if args.checkpoint is not None:
        names["ppo"] = str(args.checkpoint)
    refit = not args.no_refit
    rows = kept_rows(args, refit, parser) if args.resume else []
    done = {row["seed"] for row in rows}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if seed in done:
            continue
        start = time.perf_counter()
        policies = {label: make_eval_policy(n, env.config, seed) for label, n in names.items()}
        config = EstimatorConfig(seed=seed, refit=refit)
        with tempfile.TemporaryDirectory() as tmp:
            log_dir = Path(tmp) / "log"
            step_truth = collect_with_step_truth(
                env, args.behavior, args.users, log_dir, seed, policies
            )
            for label, name in names.items():
                network = NetworkFQEConfig(seed=seed) if args.network_fqe else None
                logs, policy = load_sim_logs(log_dir, name, seed, network_fqe=network)
                truth = {"step": step_truth[label], "trajectory": ground_truth(logs, policy)}
                found = {
                    "step": estimate_step(logs.step, config=config),
                    "trajectory": estimate_trajectory(logs.trajectory, config=config),
                }
                if network is not None:
                    found["trajectory"].update(
                        {
                            f"{key} (network)": e
                            for key, e in estimate_trajectory(
                                logs.trajectory, ("fqe", "dr-rl"), config, logs.q_values
                            ).items()
                        }
                    )
                for level, estimates in found.items():
                    for key, e in estimates.items():
                        rows.append(
                            {
                                "seed": seed,
                                "policy": label,
                                "level": level,
                                "estimator": key,
                                "value": e.value,
                                "ci95": list(e.ci95),
                                "ess": e.ess,
                                "n": e.n,
                                "degenerate": e.degenerate,
                                "truth": truth[level],
                                "refit": refit,
                                "users": args.users,
                                "behavior": args.behavior,
                            }
                        )
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    table = summarise(rows, args)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


def kept_rows(args: argparse.Namespace, refit: bool, parser: argparse.ArgumentParser) -> list[dict]:
    """The rows of an earlier run in ``--json`` that ``--resume`` keeps, checked to be of the same
    kind as the seeds about to run (refit, users, behaviour where the rows record them)."""
    if args.json is None or not args.json.exists():
        parser.error("--resume needs --json FILE of an earlier run")
    rows = json.loads(args.json.read_text())
    kinds = {bool(row.get("refit", False)) for row in rows}
    if kinds - {refit}:
        flag = "without --no-refit" if refit is False else "with --no-refit"
        parser.error(
            f"--resume: {args.json} holds intervals with refit={sorted(kinds)}; run {flag} "
            "to add seeds of the same kind (or rerun every seed)"
        )
    for field in ("users", "behavior"):
        seen = {row[field] for row in rows if field in row}
        if seen - {getattr(args, field)}:
            parser.error(f"--resume: {args.json} was run with {field} {sorted(seen)}")
    return rows


def summarise(rows: list[dict], args: argparse.Namespace) -> str:
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["policy"], row["level"], row["estimator"])].append(row)
    seeds = sorted({row["seed"] for row in rows})
    lines = [
        f"{len(seeds)} log seeds ({seeds[0]}..{seeds[-1]}), {args.users} users each, "
        f"behaviour {args.behavior}",
        "",
        "| policy | level | estimator | truth (mean) | estimate (mean) | mean rel. error "
        "| CI coverage | mean ESS / n | degenerate |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (policy, level, estimator), group in groups.items():
        truth = np.array([g["truth"] for g in group])
        value = np.array([g["value"] for g in group])
        covered = [g["ci95"][0] <= g["truth"] <= g["ci95"][1] for g in group]
        rel = np.abs(value - truth) / np.abs(truth)
        ess = np.mean([g["ess"] for g in group])
        n = np.mean([g["n"] for g in group])
        lines.append(
            f"| {policy} | {level} | {estimator} | {truth.mean():.4g} | {value.mean():.4g} "
            f"| {rel.mean():.3f} | {np.mean(covered):.2f} | {ess:.0f} / {n:.0f} "
            f"| {sum(g['degenerate'] for g in group)}/{len(group)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
