"""The ``rayrec`` command: train, collect, evaluate, tune, serve, submit, jobs, info.

Usage errors and bad specs print one line on stderr and exit with code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from rayrec.data.schema import LogError
from rayrec.datasets import cli as data_cli
from rayrec.ope import cli as ope_cli
from rayrec.runner import DEFAULT_BASELINES
from rayrec.specs import SpecError

__all__ = ["main"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as a single line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _number(cast: type, ok: Any, what: str) -> Any:
    """An argparse type: ``cast`` the text and require ``ok(value)``, else name what is allowed."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_positive_float = _number(float, lambda v: 0 < v < math.inf, "a positive number")
_finite_float = _number(float, math.isfinite, "a finite number")
_int = _number(int, lambda v: True, "an integer")


def _baselines(text: str) -> tuple[str, ...]:
    from rayrec.evaluation import BASELINES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in BASELINES:
            raise argparse.ArgumentTypeError(
                f"unknown baseline {name!r}; known: {', '.join(BASELINES)}"
            )
    return names


def _parser() -> _Parser:
    p = _Parser(prog="rayrec", description="Deep RL for sequential recommendation on Ray.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a policy on an environment")
    t.add_argument("--env", type=Path, help="environment spec (envs/*.yaml)")
    t.add_argument("--policy", type=Path, help="policy spec (policies/*.yaml)")
    t.add_argument("--iterations", type=_positive_int, help="train until this iteration")
    t.add_argument("--time-budget", type=_positive_float, help="stop after this many seconds")
    t.add_argument("--stop-return", type=_finite_float, help="stop at this mean training return")
    t.add_argument("--out", type=Path, help="run folder (default runs/ALGO-TIMESTAMP)")
    t.add_argument("--seed", type=_int, default=0, help="seed of the run (default 0)")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field: training.lr=0.0005, model.encoder=gru, env.num_items=1000",
    )
    t.add_argument(
        "--profile",
        help="resource profile: a name in profiles/ (local, cluster-cpu, cluster-gpu) or a YAML file",
    )
    t.add_argument("--address", help="Ray cluster address (default: start Ray in-process)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--checkpoint-every", type=_positive_int, default=5, metavar="N")
    t.add_argument("--eval-users", type=_positive_int, default=None, metavar="N")
    t.add_argument("--baselines", type=_baselines, default=None, metavar="LIST")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument(
        "--data",
        type=Path,
        help="log folder (rayrec collect) for offline algorithms: DiscreteCQL, BC, MARWIL",
    )

    c = sub.add_parser("collect", help="log a behaviour policy's sessions to parquet")
    c.add_argument("--env", type=Path, required=True, help="environment spec (envs/*.yaml)")
    c.add_argument(
        "--behavior",
        required=True,
        help="random | popular | greedy | ctr | epsilon-B:E (B: greedy, ctr, popular) | checkpoint:PATH",
    )
    c.add_argument("--users", type=_positive_int, required=True, help="user lifetimes to log")
    c.add_argument("--out", type=Path, required=True, help="log folder (must not exist)")
    c.add_argument("--seed", type=_int, default=0)
    c.add_argument("--set", action="append", default=[], metavar="env.FIELD=VALUE")
    c.add_argument("--rows-per-file", type=_positive_int, default=50_000, metavar="N")

    e = sub.add_parser("evaluate", help="compare a checkpoint with baselines in the simulator")
    e.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    e.add_argument("--env", type=Path, help="environment spec (default: the run's own)")
    e.add_argument("--users", type=_positive_int, default=1000)
    e.add_argument("--seed", type=_int, default=12345)
    e.add_argument(
        "--baselines",
        type=_baselines,
        default=None,
        help="comma-separated (default: the run's own evaluation.baselines)",
    )
    e.add_argument("--json", action="store_true", help="print the results as JSON")

    s = sub.add_parser("serve", help="serve a checkpoint over HTTP with Ray Serve")
    s.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory (model A)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=_number(int, lambda v: 1 <= v <= 65535, "a port"), default=8000)
    s.add_argument("--replicas", type=_positive_int, default=1, help="Serve replicas (default 1)")
    s.add_argument("--log-dir", type=Path, help="impression log folder (default: no log)")
    s.add_argument("--ab", type=Path, metavar="CHECKPOINT_B", help="serve a second checkpoint")
    s.add_argument(
        "--split",
        type=_number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        help="share of users (stable hash of the user id) served by --ab (default 0.5)",
    )
    s.add_argument("--env", type=Path, help="environment spec (default: the run's own)")
    s.add_argument("--num-cpus", type=_positive_float, default=0.5, help="CPUs per replica")
    s.add_argument("--address", help="Ray cluster address (default: start Ray in-process)")
    s.add_argument(
        "--direct-port",
        type=_number(int, lambda v: 1024 <= v <= 65435, "a port in [1024, 65435]"),
        help="also let each replica answer HTTP itself, from this port up (Ray Serve direct "
        "ingress: skips the proxy hop, about half the latency; in-process Ray only)",
    )

    sub.add_parser("info", help="environments, policy presets and resources")

    h = sub.add_parser("tune", help="hyperparameter search with Ray Tune over a search space")
    h.add_argument("--env", type=Path, help="environment spec (envs/*.yaml)")
    h.add_argument("--policy", type=Path, help="policy spec (policies/*.yaml)")
    h.add_argument("--space", type=Path, help="search space (tune/*.yaml)")
    h.add_argument("--samples", type=_positive_int, help="trials to sample (default: the space's)")
    h.add_argument("--out", type=Path, help="sweep folder (default runs/tune-ALGO-TIMESTAMP)")
    h.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as in train")
    h.add_argument("--profile", help="resource profile, as in train")
    h.add_argument("--address", help="Ray cluster address (default: start Ray in-process)")
    h.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    h.add_argument("--quiet", action="store_true", help="no Tune progress output")

    s = sub.add_parser("submit", help="run a rayrec command as a Ray job on a cluster")
    s.add_argument("--address", help="dashboard URL http://HOST:8265 (default $RAY_ADDRESS)")
    s.add_argument("--no-wait", action="store_true", help="print the job id and return")
    s.add_argument("--working-dir", type=Path, help="project folder to upload (default: this one)")
    s.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS", help="e.g. -- train")
    j = sub.add_parser("jobs", help="list the cluster's jobs, print a job's log, stop a job")
    j.add_argument("action", choices=("list", "logs", "stop"))
    j.add_argument("job_id", nargs="?", metavar="ID")
    j.add_argument("--address", help="dashboard URL http://HOST:8265 (default $RAY_ADDRESS)")
    j.add_argument("--follow", action="store_true", help="logs: follow until the job ends")
    ope_cli.add_parser(sub)
    data_cli.add_parser(sub)
    return p


def _table(rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for column in rows[0]:
        justify = "left" if column in ("policy", "trial", "status") else "right"
        table.add_column(column, justify=justify, overflow="fold")
    for row in rows[1:]:
        table.add_row(*row)
    Console(width=120).print(table)


def _cmd_train(args: argparse.Namespace) -> int:
    from rayrec.runner import RunOptions, load_run_spec, selection_options, train
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

    saved_run: dict[str, Any] = {}
    if args.resume:
        if args.out is None:
            raise SpecError("--resume needs --out RUN (the run folder to continue)")
        env_spec, policy_spec, saved_run = load_run_spec(args.out)
        if args.set or args.profile:
            raise SpecError("--resume continues the saved spec; --set/--profile are not allowed")
    else:
        if args.policy is None or (args.env is None and args.data is None):
            raise SpecError("train needs --env SPEC and --policy SPEC (or --resume --out RUN)")
        overrides = [*_profile_overrides(args.profile), *args.set]
        env_raw = load_yaml(args.env) if args.env else _log_env(args.data).to_dict()
        env_raw, policy_raw = apply_overrides(env_raw, load_yaml(args.policy), overrides)
        env_spec = EnvSpec.from_dict(env_raw, str(args.env))
        policy_spec = PolicySpec.from_dict(policy_raw, str(args.policy))
    from rayrec.experiment import validate_sections

    validate_sections(policy_spec, str(args.policy or args.out))
    stop = policy_spec.stop
    evaluation = policy_spec.evaluation
    iterations = args.iterations or saved_run.get("iterations") or stop.get("iterations")
    budget = args.time_budget or (None if args.resume else stop.get("time_budget"))
    if iterations is None and budget is None:
        iterations = 10
    out = args.out or Path("runs") / f"{policy_spec.algorithm.lower()}-{_stamp()}"
    options = RunOptions(
        out=out,
        seed=saved_run.get("seed", args.seed) if args.resume else args.seed,
        iterations=iterations,
        time_budget=budget,
        stop_return=args.stop_return if args.stop_return is not None else stop.get("return"),
        checkpoint_every=args.checkpoint_every,
        eval_users=args.eval_users or evaluation.get("users", 1000),
        eval_seed=evaluation.get("seed", 12345),
        baselines=args.baselines or tuple(evaluation.get("baselines", DEFAULT_BASELINES)),
        address=args.address,
        data=Path(saved_run["data"]) if saved_run.get("data") else args.data,
        **selection_options(policy_spec),
    )
    if options.data is not None:
        import logging

        # Ray Data logs its pipeline's progress every few seconds; the progress line is ours.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    results = train(env_spec, policy_spec, options, resume=args.resume, quiet=args.quiet)
    from rayrec.runner import comparison_table

    _table(comparison_table(results))
    print(f"run folder: {out}")
    return 0


def _log_env(data: Path) -> Any:
    from rayrec.data.offline import log_env

    return log_env(data)


def _cmd_collect(args: argparse.Namespace) -> int:
    from rayrec.data import collect
    from rayrec.specs import EnvSpec, apply_overrides, load_yaml

    bad = [o for o in args.set if not o.startswith("env.")]
    if bad:
        raise SpecError(f"collect --set takes env.FIELD=VALUE only, got {bad[0]!r}")
    env_raw, _ = apply_overrides(load_yaml(args.env), {}, args.set)
    env = EnvSpec.from_dict(env_raw, str(args.env))

    def progress(done: int, total: int) -> None:
        print(f"\rlogged {done}/{total} users", end="", file=sys.stderr, flush=True)

    meta = collect(
        env,
        args.behavior,
        args.users,
        args.out,
        seed=args.seed,
        rows_per_file=args.rows_per_file,
        progress=progress,
    )
    print(file=sys.stderr)
    print(
        f"{args.out}: {meta['rows']} rows, {meta['episodes']} users, {meta['files']} file(s); "
        f"behaviour return {meta['behavior_return_mean']:.2f} ± {meta['behavior_return_ci95']:.2f}"
    )
    return 0


def _profile_overrides(profile: str | None) -> list[str]:
    """``--set``-style overrides from a resource profile (profiles/NAME.yaml or a path)."""
    from rayrec.specs import load_yaml

    if profile is None:
        return []
    path = Path(profile)
    if not path.suffix:
        # By name: profiles/ under the working directory, else the one of this checkout.
        folders = [Path("profiles"), Path(__file__).resolve().parents[1] / "profiles"]
        folder = next((f for f in folders if (f / f"{profile}.yaml").is_file()), folders[0])
        path = folder / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise SpecError(f"--profile {profile}: no such profile; known: {', '.join(known)}")
    data = load_yaml(path)
    out = []
    for key, value in data.items():
        if not isinstance(key, str) or "." not in key or key.split(".")[0] == "env":
            raise SpecError(f"{path}: keys must be SECTION.KEY of a policy spec, got {key!r}")
        out.append(f"{key}={json.dumps(value)}")
    return out


def _cmd_tune(args: argparse.Namespace) -> int:
    from rayrec.tuning.sweep import SweepFailed, SweepInterrupted, plan_sweep, run_sweep

    plan = None
    if args.resume:
        if args.out is None:
            raise SpecError("--resume needs --out DIR (the sweep folder to continue)")
        if args.env or args.policy or args.space or args.set or args.profile or args.samples:
            raise SpecError("--resume continues the saved sweep; only --out/--address are allowed")
    else:
        if args.env is None or args.policy is None or args.space is None:
            raise SpecError("tune needs --env SPEC, --policy SPEC and --space SPACE")
        overrides = [*_profile_overrides(args.profile), *args.set]
        plan = plan_sweep(args.env, args.policy, args.space, overrides, args.samples)
    out = args.out or Path("runs") / f"tune-{plan.policy['algorithm'].lower()}-{_stamp()}"
    try:
        summary = run_sweep(plan, out, resume=args.resume, address=args.address, quiet=args.quiet)
    except SweepInterrupted as e:
        print(f"rayrec: {e}", file=sys.stderr)
        return 130
    except SweepFailed as e:
        print(f"rayrec: error: {e}", file=sys.stderr)
        return 1
    _table(summary.rows)
    print(f"best trial: {summary.best_trial} ({summary.best_value:.4g}) {summary.best_params}")
    print(f"sweep folder: {out}  (best.yaml, best_checkpoint/, trials.csv, metric_over_time.png)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from rayrec.runner import comparison_table, evaluate_checkpoint
    from rayrec.specs import EnvSpec, load_yaml

    env = EnvSpec.from_dict(load_yaml(args.env), str(args.env)) if args.env else None
    results = evaluate_checkpoint(args.checkpoint, env, args.users, args.seed, args.baselines)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _table(comparison_table(results))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.split is not None and args.ab is None:
        raise SpecError("--split needs --ab CHECKPOINT_B")
    from rayrec.serve.service import ServiceSettings

    settings = {
        "checkpoint": str(args.checkpoint),
        "ab_checkpoint": None if args.ab is None else str(args.ab),
        "split": 0.5 if args.split is None else args.split,
        "env": None if args.env is None else str(args.env),
        "log_dir": None if args.log_dir is None else str(args.log_dir),
    }
    ServiceSettings(**settings).check()  # fails fast, before Ray Serve is even imported
    from rayrec.serve.app import serve_forever

    options = {"replicas": args.replicas, "num_cpus": args.num_cpus}
    if args.direct_port is not None and args.address:
        raise SpecError("--direct-port needs the in-process Ray: it cannot be used with --address")
    serve_forever(
        {**settings, **options},
        host=args.host,
        port=args.port,
        address=args.address,
        direct_port=args.direct_port,
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import rayrec
    from rayrec.specs import ALGORITHMS, ENV_IDS

    root = Path.cwd()
    print(f"rayrec {rayrec.__version__}")
    print("environments (gymnasium ids): " + ", ".join(i for i in ENV_IDS if i in gym.registry))
    for folder in ("envs", "policies", "profiles", "tune"):
        files = (
            sorted(p.name for p in (root / folder).glob("*.yaml"))
            if (root / folder).is_dir()
            else []
        )
        print(f"{folder}/: {', '.join(files) if files else '(none here)'}")
    print("algorithms: " + ", ".join(ALGORITHMS))
    print(f"this machine: {os.cpu_count()} CPUs, GPUs: {_gpu_count()}")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        import ray

        ray.init(address=address, log_to_driver=False)
        print(f"cluster at {address}: {ray.cluster_resources()}")
        ray.shutdown()
    return 0


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # torch without CUDA support
        return 0


def _cmd_jobs(args: argparse.Namespace) -> int:
    from rayrec import jobs

    job_id = getattr(args, "job_id", None)
    try:
        if args.command == "submit":
            command = args.job[1:] if args.job[:1] == ["--"] else args.job
            jobs.entrypoint(command)
            _parser().parse_args(command)  # usage errors before anything is uploaded
            if jobs.relative_out(command):
                print(
                    "rayrec: warning: without an absolute --out the run folder is written in the "
                    "job's temporary working dir on the head node",
                    file=sys.stderr,
                )
            env = jobs.runtime_env(args.working_dir or jobs.project_root())
            client = jobs.connect(args.address)
            job_id = jobs.submit(client, command, env)
            print(f"rayrec: submitted {job_id}", file=sys.stderr, flush=True)
            if args.no_wait:
                print(job_id)
                return 0
        else:
            if args.action == "list":
                _table(jobs.job_rows(jobs.connect(args.address)))
                return 0
            if args.job_id is None:
                raise jobs.JobsError(f"jobs {args.action} needs a job ID (see rayrec jobs list)")
            client, job_id = jobs.connect(args.address), args.job_id
            if args.action == "stop":
                stopped = jobs.call(client.stop_job, job_id)
                print(f"{job_id}: {'stop requested' if stopped else 'already ended'}")
                return 0
            if not args.follow:
                print(jobs.call(client.get_job_logs, job_id), end="")
                return 0
        outcome = jobs.follow(client, job_id, lambda text: print(text, end="", flush=True))
    except jobs.JobsError as e:
        print(f"rayrec: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if job_id is not None:
            print(f"rayrec: stopped following; {job_id} runs on (jobs stop ID)", file=sys.stderr)
        return 130
    if outcome.exit_code != 0:
        print(f"rayrec: job {job_id} {outcome.status}: {outcome.message}", file=sys.stderr)
        print("\n".join(outcome.tail), file=sys.stderr)
    else:
        print(f"rayrec: job {job_id} {outcome.status}", file=sys.stderr)
    return outcome.exit_code


def _stamp() -> str:
    import time

    return time.strftime("%Y%m%d-%H%M%S")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "train": _cmd_train,
        "collect": _cmd_collect,
        "evaluate": _cmd_evaluate,
        "info": _cmd_info,
        "tune": _cmd_tune,
        "serve": _cmd_serve,
        "submit": _cmd_jobs,
        "jobs": _cmd_jobs,
        "ope": ope_cli.run,
        "data": data_cli.run,
    }
    try:
        return commands[args.command](args)
    except (SpecError, LogError) as e:
        print(f"rayrec: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rayrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
