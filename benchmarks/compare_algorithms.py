"""Train every algorithm preset under the same wall-clock budget and compare them honestly.

Each preset in ``--presets`` is trained on ``--env`` (default envs/session.yaml) for ``--budget``
seconds on this machine with its own resources (``--profile`` may override them), then evaluated
in the simulator on the same users as the baselines: random, most-popular, greedy-myopic (peeks at
the true click probabilities), the hand-written non-peeking heuristic (what the observation alone
earns without learning) and the long-term oracle (peeks too; an upper reference, not a
competitor). Sampling throughput per env runner is measured separately for each preset's env-runner
settings.

Rows are presets (``--presets``) or labelled variants (``--run LABEL PRESET KEY=VALUE ...``, the
``--set`` overrides of ``rayrec train``), e.g. the myopic twin of PPO (``training.gamma=0``: the
same module and budget trained on the immediate reward only, a contextual bandit) or one history
encoder per row.

The numbers go to ``docs/results.json`` (key ``--key``, default ``online``) and the table to
``docs/results.md``; both are produced here, never edited by hand.

    python benchmarks/compare_algorithms.py [--budget 300] [--presets ppo,impala,appo,apex_dqn]
    python benchmarks/compare_algorithms.py --presets ppo --seeds 0,1,2 --budget preset \
        --keep runs/curves    # run folders for benchmarks/learning_curves.py
    python benchmarks/compare_algorithms.py --env envs/session-recall.yaml --key online_encoders \
        --run mean ppo model.encoder=mean --run gru ppo model.encoder=gru --baselines random
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_page import update_results  # noqa: E402
from rayrec.contracts.keys import Metrics  # noqa: E402


def main() -> None:
    import ray

    from rayrec.experiment import sampling_rate
    from rayrec.run import RunOptions, selection_options, train
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=str(ROOT / "envs" / "session.yaml"))
    parser.add_argument("--presets", default=None, help="comma-separated presets (policies/)")
    parser.add_argument(
        "--run",
        nargs="+",
        action="append",
        default=[],
        metavar="LABEL PRESET [KEY=VALUE",
        help="a labelled row: preset name and --set overrides (repeatable)",
    )
    parser.add_argument("--baselines", default="random,popular,greedy,heuristic,longterm")
    parser.add_argument("--key", default="online", help="results.json key (online...)")
    parser.add_argument("--title", default=None, help="section title in docs/results.md")
    parser.add_argument("--note", default=None, help="a paragraph under the title")
    parser.add_argument(
        "--budget",
        default="300",
        help="training seconds per row, or 'preset': each preset's own stop section",
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds", default=None, help="comma-separated training seeds: one row per seed"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep each row's run folder as KEEP/LABEL-seedN (for benchmarks/learning_curves.py); "
        "a finished run already kept there is reused, so an interrupted comparison resumes",
    )
    args = parser.parse_args()
    try:
        budget = None if args.budget == "preset" else float(args.budget)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    except ValueError:
        parser.error(f"--budget ({args.budget!r}) must be seconds or 'preset'; --seeds integers")
    if budget is not None and budget <= 0:
        parser.error(f"--budget ({args.budget!r}) must be positive")
    if not args.key.startswith("online"):
        parser.error(f"--key ({args.key!r}) must start with 'online'")
    runs = [(name, name, []) for name in (args.presets or "").split(",") if name]
    for item in args.run:
        if len(item) < 2:
            parser.error(f"--run needs LABEL PRESET [KEY=VALUE ...], got {' '.join(item)!r}")
        if any(text.startswith("env.") for text in item[2:]):
            parser.error("--run overrides are policy fields; every row shares --env")
        runs.append((item[0], item[1], item[2:]))
    if not runs:
        runs = [(name, name, []) for name in ("ppo", "impala", "appo", "apex_dqn")]
    wanted_baselines = tuple(b for b in args.baselines.split(",") if b)

    env_raw = load_yaml(args.env)
    env = EnvSpec.from_dict(env_raw, args.env)
    rows, baselines = [], None
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        for (label, name, overrides), seed in itertools.product(runs, seeds):
            _, policy_raw = apply_overrides(
                env_raw, load_yaml(ROOT / "policies" / f"{name}.yaml"), overrides
            )
            policy = PolicySpec.from_dict(policy_raw, name)
            stop = policy.stop if budget is None else {"time_budget": budget}
            folder = f"{label}-seed{seed}".replace("/", "_").replace(" ", "_")
            kept = finished_run(args.keep / folder, stop, args.users) if args.keep else None
            with tempfile.TemporaryDirectory() as tmp:
                options = RunOptions(
                    out=(args.keep / folder) if args.keep else Path(tmp) / name,
                    seed=seed,
                    iterations=stop.get("iterations"),
                    time_budget=stop.get("time_budget"),
                    eval_users=args.users,
                    baselines=wanted_baselines if baselines is None else (),
                    checkpoint_every=10_000,
                    **selection_options(policy),
                )
                if kept is not None:
                    print(f"{folder}: reusing the finished run kept in {args.keep}", flush=True)
                results = kept or train(env, policy, options, quiet=True)
            baselines = baselines or results["baselines"] or None
            m, tr = results["policy"], results["training"]
            rows.append(
                {
                    "algorithm": label,
                    "preset": name,
                    "overrides": list(overrides),
                    "seed": seed,
                    "return_mean": m[Metrics.RETURN_MEAN],
                    "return_ci95": m[Metrics.RETURN_CI95],
                    "clicks_mean": m[Metrics.CLICKS_MEAN],
                    "sessions_per_user": m[Metrics.SESSIONS_PER_USER],
                    "return_rate": m[Metrics.RETURN_RATE],
                    **{key: m.get(key) for key in EXTRA_METRICS},
                    "env_steps": tr["env_steps"],
                    "wall_time_s": tr["wall_time_s"],
                    "env_steps_per_s": (tr["env_steps"] or 0) / max(tr["wall_time_s"], 1e-9),
                    "sampling_steps_per_s_per_runner": sampling_rate(env, policy),
                    "num_env_runners": policy.sections["env_runners"].get("num_env_runners"),
                    "num_envs_per_env_runner": policy.sections["env_runners"].get(
                        "num_envs_per_env_runner"
                    ),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    except BaseException:
        ray.shutdown()
        raise
    record = {
        "env": args.env
        if not args.env.startswith(str(ROOT))
        else str(Path(args.env).relative_to(ROOT)),
        "budget_s": budget if budget is not None else "preset",
        **({"title": args.title} if args.title else {}),
        **({"note": args.note} if args.note else {}),
        "users": args.users,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "algorithms": rows,
        "baselines": {
            k: {
                key: v[key]
                for key in (
                    Metrics.RETURN_MEAN,
                    Metrics.RETURN_CI95,
                    Metrics.CLICKS_MEAN,
                    Metrics.SESSIONS_PER_USER,
                    Metrics.RETURN_RATE,
                    *EXTRA_METRICS,
                )
                if key in v
            }
            for k, v in baselines.items()
        },
    }
    update_results(args.key, record)
    print((ROOT / "docs" / "results.md").read_text(), flush=True)
    # Only now: an object collected after ray.shutdown() can make Ray end the process on the spot.
    ray.shutdown()


# Kept in docs/results.json beside the table's columns: what a policy's users watched, how much of
# what they clicked was clickbait, and lifetime length in steps (docs/scaling.md reads steps_mean).
EXTRA_METRICS = (Metrics.WATCH_MEAN, Metrics.CLICKBAIT_SHARE, Metrics.STEPS_MEAN)


def finished_run(folder: Path, stop: dict, users: int) -> dict | None:
    """The results of a kept run that finished its whole budget (iterations, or seconds for a
    preset that stops on time) and was evaluated on ``users`` users, else None (the row trains
    again from scratch: a partial folder is replaced)."""
    path = folder / "results.json"
    if not path.is_file():
        if folder.exists():
            shutil.rmtree(folder)
        return None
    results = json.loads(path.read_text())
    training = results.get("training", {})
    evaluated = results.get("evaluation", {}).get("users")
    if "time_budget" in stop:
        same_budget = training.get("time_budget") == stop["time_budget"]
    else:
        same_budget = training.get("iterations") == stop.get("iterations")
    if training.get("interrupted") or not same_budget or evaluated != users:
        shutil.rmtree(folder)
        return None
    return results


if __name__ == "__main__":
    main()
