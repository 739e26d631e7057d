"""What each ``rayrec`` subcommand does (the parser is :mod:`rayrec.cli.parser`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from rayrec.cli.parser import EXIT_USAGE, build_parser
from rayrec.contracts.errors import SpecError
from rayrec.run import DEFAULT_BASELINES

__all__ = ["COMMANDS"]


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
    from rayrec.evaluation.compare import comparison_table
    from rayrec.experiment import validate_sections
    from rayrec.run import Interrupted, RunOptions, selection_options, train
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_run_spec, load_yaml

    saved_run: dict[str, Any] = {}
    if args.resume:
        if args.out is None:
            raise SpecError("--resume needs --out RUN (the run folder to continue)")
        env_spec, policy_spec, saved_run = load_run_spec(args.out)
        if args.set or args.profile or args.init_from or args.critic_warmup:
            raise SpecError(
                "--resume continues the saved spec; --set/--profile/--init-from/--critic-warmup "
                "are not allowed"
            )
    else:
        if args.policy is None or (args.env is None and args.data is None):
            raise SpecError("train needs --env SPEC and --policy SPEC (or --resume --out RUN)")
        overrides = [*_profile_overrides(args.profile), *args.set]
        env_raw = load_yaml(args.env) if args.env else _log_env(args.data).to_dict()
        env_raw, policy_raw = apply_overrides(env_raw, load_yaml(args.policy), overrides)
        env_spec = EnvSpec.from_dict(env_raw, str(args.env))
        policy_spec = PolicySpec.from_dict(policy_raw, str(args.policy))
    if args.critic_warmup and not args.init_from:
        raise SpecError("--critic-warmup needs --init-from CHECKPOINT (a warm-started policy)")
    validate_sections(policy_spec, str(args.policy or args.out))
    stop = policy_spec.stop
    evaluation = policy_spec.evaluation
    if args.resume and args.iterations is None and args.time_budget is None:
        # Continue to the run's own stop: the iteration, or what is left of its time budget.
        iterations, budget = saved_run.get("iterations"), saved_run.get("time_budget")
    elif args.resume:
        iterations, budget = args.iterations, args.time_budget
    else:
        iterations = args.iterations or stop.get("iterations")
        budget = args.time_budget or stop.get("time_budget")
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
        init_from=_init_from(args.init_from) if not args.resume else None,
        critic_warmup=(
            int(saved_run.get("critic_warmup") or 0) if args.resume else args.critic_warmup or 0
        ),
    )
    if options.data is not None:
        import logging

        # Ray Data logs its pipeline's progress every few seconds; the progress line is ours.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        results = train(env_spec, policy_spec, options, resume=args.resume, quiet=args.quiet)
    except Interrupted as e:
        # Saved: checkpoints/final and results.json of what was trained; still a failed run.
        if e.results is not None:
            _table(comparison_table(e.results))
        print(
            f"rayrec: {e}; run folder: {out} (final checkpoint and results saved)", file=sys.stderr
        )
        return 128 + e.signum
    _table(comparison_table(results))
    print(f"run folder: {out}")
    return 0


def _init_from(path: Path | None) -> Path | None:
    """``--init-from``: a folder holding RLModule state (checked before Ray starts)."""
    from rayrec.contracts.layout import module_dir, module_ids

    if path is None:
        return None
    if not path.is_dir():
        raise SpecError(f"--init-from {path}: no such directory")
    if module_dir(path) is None and not module_ids(path):
        raise SpecError(f"--init-from {path}: not an rayrec/RLlib checkpoint (no RLModule state)")
    return path


def _log_env(data: Path) -> Any:
    from rayrec.data.offline import log_env

    return log_env(data)


def _cmd_collect(args: argparse.Namespace) -> int:
    from rayrec.evaluation.collect import collect
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


PROFILES = resources.files("rayrec") / "profiles"
"""The resource profiles shipped with rayrec (rayrec/profiles/*.yaml, package data)."""


def _profile_path(profile: str) -> Path:
    """A profile by path, or by name: ``profiles/NAME.yaml`` under the working directory (a
    user's own), else the shipped one."""
    path = Path(profile)
    if path.suffix:
        if not path.is_file():
            raise SpecError(f"--profile {profile}: no such file")
        return path
    own = Path("profiles") / f"{profile}.yaml"
    if own.is_file():
        return own
    shipped = PROFILES / f"{profile}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    known = sorted(
        {p.name.removesuffix(".yaml") for p in PROFILES.iterdir() if p.name.endswith(".yaml")}
    )
    raise SpecError(f"--profile {profile}: no such profile; known: {', '.join(known)}")


def _profile_overrides(profile: str | None) -> list[str]:
    """``--set``-style overrides from a resource profile (see :func:`_profile_path`)."""
    from rayrec.specs import load_yaml

    if profile is None:
        return []
    path = _profile_path(profile)
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
    from rayrec.evaluation.compare import comparison_table, evaluate_checkpoint
    from rayrec.specs import EnvSpec, load_yaml

    env = EnvSpec.from_dict(load_yaml(args.env), str(args.env)) if args.env else None
    results = evaluate_checkpoint(args.checkpoint, env, args.users, args.seed, args.baselines)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _table(comparison_table(results))
    return 0


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


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
        "api_key_file": None if args.api_key_file is None else str(args.api_key_file),
        "request_id_key_file": (
            None if args.request_id_key_file is None else str(args.request_id_key_file)
        ),
        "explore_budget": args.explore_budget,
        "propensity_floor": args.propensity_floor,
        "fallback": args.fallback,
    }
    ServiceSettings(**settings).check()  # fails fast, before Ray Serve is even imported
    if args.host not in LOOPBACK_HOSTS:
        auth = "API key required" if args.api_key_file else "no authentication: add --api-key-file"
        print(
            f"rayrec serve: warning: --host {args.host} exposes the service beyond this machine "
            f"({auth}; requests are not encrypted: put TLS in front)",
            file=sys.stderr,
        )
    from rayrec.serve.app import DIRECT_PORT_SPAN, free_direct_port, serve_forever

    options = {
        "replicas": args.replicas,
        "num_cpus": args.num_cpus,
        "max_queued_requests": args.max_queued,
    }
    ingress = args.ingress or ("proxy" if args.address else "direct")
    if ingress == "direct" and args.address:
        raise SpecError(
            "--ingress direct needs the in-process Ray (its processes read the setting when they "
            "start): use --ingress proxy with --address, or see docs/serving.md for a cluster"
        )
    if ingress == "proxy" and args.proxy_port is not None:
        raise SpecError("--proxy-port is for --ingress direct; with proxy, --port is the proxy's")
    proxy_port, direct_port = args.port, None
    if ingress == "direct":
        if not 1024 <= args.port <= 65535 - DIRECT_PORT_SPAN:
            raise SpecError(
                f"--port ({args.port}) must be in [1024, {65535 - DIRECT_PORT_SPAN}] for direct "
                "ingress (replicas take the ports from it up); use --ingress proxy for a low port"
            )
        direct_port = args.port
        proxy_port = args.proxy_port or free_direct_port(args.port + DIRECT_PORT_SPAN + 1)
    serve_forever(
        {**settings, **options},
        host=args.host,
        port=proxy_port,
        address=args.address,
        direct_port=direct_port,
        request_timeout_s=args.request_timeout,
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import rayrec
    from rayrec.specs import ALGORITHMS, ENV_IDS

    root = Path.cwd()
    print(f"rayrec {rayrec.__version__}")
    print("environments (gymnasium ids): " + ", ".join(i for i in ENV_IDS if i in gym.registry))
    for folder in ("envs", "policies", "tune"):
        files = (
            sorted(p.name for p in (root / folder).glob("*.yaml"))
            if (root / folder).is_dir()
            else []
        )
        print(f"{folder}/: {', '.join(files) if files else '(none here)'}")
    shipped = sorted(
        p.name.removesuffix(".yaml") for p in PROFILES.iterdir() if p.name.endswith(".yaml")
    )
    print(f"profiles (--profile NAME): {', '.join(shipped)}")
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
            build_parser().parse_args(command)  # usage errors before anything is uploaded
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


COMMANDS = {
    "train": _cmd_train,
    "collect": _cmd_collect,
    "evaluate": _cmd_evaluate,
    "info": _cmd_info,
    "tune": _cmd_tune,
    "serve": _cmd_serve,
    "submit": _cmd_jobs,
    "jobs": _cmd_jobs,
}
