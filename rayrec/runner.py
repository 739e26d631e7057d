"""Training runs: the run folder, the training loop, checkpoints, resume, evaluation and results.

Run folder layout (documented in the README)::

    RUN/spec.yaml            resolved env + policy + run options; the run can be rebuilt from it
    RUN/metrics.jsonl        one JSON line per training iteration
    RUN/checkpoints/latest   last periodic checkpoint (RLlib Algorithm checkpoint)
    RUN/checkpoints/best     checkpoint with the best training return so far
    RUN/checkpoints/final    checkpoint at the end of training
    RUN/checkpoints/selected with evaluation.select_every: the checkpoint with the best return on
                             the validation users (other users than the final evaluation's)
    RUN/tensorboard/         TensorBoard event files
    RUN/learning_curve.png   mean episode return over env steps
    RUN/results.json         {"policy": metrics, "baselines": {name: metrics}, ...}
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rayrec.envs.hierarchical.config import LOW
from rayrec.keys import Metrics
from rayrec.specs import MARKETPLACE_ENV_ID, EnvSpec, PolicySpec, SpecError

__all__ = [
    "DEFAULT_BASELINES",
    "RunOptions",
    "atomic_write_text",
    "ensure_ray",
    "evaluate_checkpoint",
    "load_run_spec",
    "train",
]

DEFAULT_BASELINES = ("random", "popular", "greedy")
SPEC_FILE = "spec.yaml"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"


# Validation users (checkpoint selection) are drawn from eval_seed + this: other users.
VALIDATION_SEED_OFFSET = 7_777_777


@dataclass
class RunOptions:
    """How long to train and where; command-line flags override the policy spec's ``stop``."""

    out: Path
    seed: int = 0
    iterations: int | None = None
    time_budget: float | None = None
    stop_return: float | None = None
    checkpoint_every: int = 5
    eval_users: int = 1000
    eval_seed: int = 12345
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    address: str | None = None
    data: Path | None = None
    """Log folder of an offline run (``rayrec collect``); None for online training."""
    select_every: int | None = None
    """Evaluate the policy on ``select_users`` validation users every this many iterations and
    report the best of those checkpoints (``checkpoints/selected``) instead of the last one."""
    select_users: int = 500

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": None if self.data is None else str(Path(self.data).resolve()),
            "seed": self.seed,
            "iterations": self.iterations,
            "time_budget": self.time_budget,
            "stop_return": self.stop_return,
            "checkpoint_every": self.checkpoint_every,
            "eval_users": self.eval_users,
            "eval_seed": self.eval_seed,
            "baselines": list(self.baselines),
            "select_every": self.select_every,
            "select_users": self.select_users,
        }

    @property
    def select_seed(self) -> int:
        """Seed of the validation users: never the final evaluation's users."""
        return self.eval_seed + VALIDATION_SEED_OFFSET


def selection_options(policy: PolicySpec) -> dict[str, Any]:
    """The RunOptions fields of the policy spec's checkpoint selection (``evaluation.select_*``)."""
    evaluation = policy.evaluation
    return {
        "select_every": evaluation.get("select_every"),
        "select_users": evaluation.get("select_users", 500),
    }


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _swap_dir(tmp: Path, target: Path) -> None:
    """Replace directory ``target`` by ``tmp``; a crash leaves ``target`` or ``target.old``."""
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)


def _existing_checkpoint(run: Path, name: str = "latest") -> Path | None:
    for candidate in (run / "checkpoints" / name, run / "checkpoints" / f"{name}.old"):
        if candidate.is_dir():
            return candidate
    return None


def load_run_spec(run: Path) -> tuple[EnvSpec, PolicySpec, dict[str, Any]]:
    """Rebuild the env spec, policy spec and run options saved in a run folder."""
    from rayrec.specs import load_yaml

    data = load_yaml(run / SPEC_FILE)
    for key in ("env", "policy"):
        if not isinstance(data.get(key), dict):
            raise SpecError(f"{run / SPEC_FILE}: missing section {key!r}")
    env = EnvSpec.from_dict(data["env"], f"{run / SPEC_FILE} (env)")
    policy = PolicySpec.from_dict(data["policy"], f"{run / SPEC_FILE} (policy)")
    return env, policy, dict(data.get("run") or {})


def find_run_dir(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint lives in (the nearest parent holding spec.yaml)."""
    for parent in (checkpoint, *checkpoint.parents):
        if (parent / SPEC_FILE).is_file():
            return parent
    return None


class _Progress:
    """A live progress bar on a terminal, plain lines elsewhere (CI logs)."""

    def __init__(self, total: int | None, budget: float | None, quiet: bool) -> None:
        self.total, self.budget, self.quiet = total, budget, quiet
        self.tty = sys.stderr.isatty() and not quiet
        self._bar = None
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("iter {task.completed:>4}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task("train", total=total, info="")
            self._bar.start()

    def update(self, iteration: int, row: dict[str, Any], elapsed: float) -> None:
        ret = row.get("episode_return_mean")
        trained, loss = (
            row.get("train/num_module_steps_trained_lifetime"),
            row.get("train/total_loss"),
        )
        if not row["env_steps"] and trained is not None:  # offline: no env, rows from the log
            info = f"rows trained {int(trained):>10,}" + (
                "" if loss is None else f"  loss {loss:.4g}"
            )
        else:
            info = (
                f"steps {row['env_steps']:>9,}  return {ret if ret is None else round(ret, 2)!s:>7}"
                f"  {row['env_steps_per_s']:,.0f} steps/s"
            )
        if self.budget:
            info += f"  {elapsed:,.0f}/{self.budget:,.0f}s"
        if self._bar is not None:
            self._bar.update(self._task, completed=iteration, info=info)
        elif not self.quiet:
            sys.stderr.write(f"iter {iteration:>4}  {info}\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _numbers(values: dict[str, Any], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


STALL_ITERATIONS = 10
STALL_SECONDS = 120.0
"""An online run that samples no env step for STALL_ITERATIONS iterations in a row lasting at
least STALL_SECONDS is broken."""


class SamplingWatch:
    """Fails an online run whose env runners sample nothing, instead of "training" on nothing.

    RLlib restarts failed env runners and carries on; if every restart fails again (say, a module
    that no longer loads its synchronised weights), iterations keep coming with zero new env steps
    and the run would end with an untrained policy and a results.json that looks normal.
    """

    def __init__(self, limit: int = STALL_ITERATIONS, seconds: float = STALL_SECONDS) -> None:
        self.limit, self.seconds = limit, seconds
        self.last = 0
        self.idle = 0
        self.idle_since = 0.0

    def update(self, iteration: int, steps_lifetime: int, now: float) -> None:
        if steps_lifetime > self.last or self.idle == 0:
            self.idle_since = now
        self.idle = 0 if steps_lifetime > self.last else self.idle + 1
        self.last = max(self.last, steps_lifetime)
        if self.idle >= self.limit and now - self.idle_since >= self.seconds:
            raise RuntimeError(
                f"no env steps sampled in the last {self.idle} iterations "
                f"({now - self.idle_since:.0f} s, up to iteration "
                f"{iteration}, {self.last:,} steps in all): every env runner keeps failing; "
                "see the env runners' errors in the Ray worker logs (/tmp/ray/session_latest/logs)"
            )


def _metrics_row(result: dict[str, Any], iteration: int, seconds: float, steps0: int) -> dict:
    """One metrics.jsonl line. Multi-agent (hierarchical) runs add per-agent returns and steps
    (``agent_returns``, ``sim_steps`` = the low level's steps) and learner stats per module
    (``train/<module>/...``); their ``episode_return_mean`` adds both levels' returns."""
    runners = result.get("env_runners", {})
    steps = int(runners.get("num_env_steps_sampled_lifetime", 0) or 0)
    learners = result.get("learners", {})
    ret = runners.get("episode_return_mean")
    row = {
        "iteration": iteration,
        "env_steps": steps,
        "episode_return_mean": None if ret is None or math.isnan(ret) else float(ret),
        "episode_len_mean": runners.get("episode_len_mean"),
        "num_episodes": runners.get("num_episodes"),
        "env_steps_per_s": (steps - steps0) / max(seconds, 1e-9),
        "time_total_s": result.get("time_total_s"),
    }
    if "default_policy" in learners or not learners:
        row.update(_numbers(learners.get("default_policy", {}), "train/"))
        return row
    agent_steps = runners.get("num_agent_steps_sampled_lifetime") or {}
    if LOW in agent_steps:
        row["sim_steps"] = int(agent_steps[LOW])
    row["agent_returns"] = _numbers(runners.get("agent_episode_returns_mean") or {}, "")
    for module_id, stats in learners.items():
        if module_id != "__all_modules__" and isinstance(stats, dict):
            row.update(_numbers(stats, f"train/{module_id}/"))
    return row


def _iterate(
    algo: Any, options: RunOptions, start_iteration: int, t0: float
) -> Iterator[tuple[int, dict[str, Any]]]:
    iteration = start_iteration
    while True:
        if options.iterations is not None and iteration >= options.iterations:
            return
        if options.time_budget is not None and time.time() - t0 >= options.time_budget:
            return
        yield iteration + 1, algo.train()
        iteration += 1


def ensure_ray(address: str | None) -> bool:
    """Start Ray in-process, or join ``address`` (or ``RAY_ADDRESS``, set inside a Ray job by
    ``rayrec submit``); nothing if Ray is already up. Returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return True


def train(
    env: EnvSpec,
    policy: PolicySpec,
    options: RunOptions,
    *,
    resume: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``policy`` on ``env`` into ``options.out``; returns the results dict.

    With ``resume`` the run continues from ``out/checkpoints/latest`` (iteration count and env
    steps carry on) using the spec saved in the folder.
    """
    import ray

    from rayrec.experiment import build_config

    if env.id == MARKETPLACE_ENV_ID:  # multi-agent marketplace (issue #10): its own run
        from rayrec.envs.marketplace.run import train_marketplace

        return train_marketplace(env, policy, options, resume=resume, quiet=quiet, log=log)
    log = log or (lambda msg: None if quiet else sys.stderr.write(msg + "\n"))
    run = Path(options.out)
    latest = _existing_checkpoint(run) if resume else None
    if resume and latest is None:
        raise SpecError(f"--resume: {run} has no checkpoint to resume from")
    if not resume and (run / SPEC_FILE).exists():
        raise SpecError(f"{run} already holds a run; use --resume or another --out")
    config = build_config(env, policy, seed=options.seed, data=options.data)
    run.mkdir(parents=True, exist_ok=True)
    spec = {
        "env": env.to_dict(),
        "policy": policy.to_dict(),
        "run": options.to_dict(),
        "versions": _versions(),
    }
    atomic_write_text(run / SPEC_FILE, yaml.safe_dump(spec, sort_keys=False))

    started_ray = ensure_ray(options.address)
    try:
        algo = config.build_algo()
        start_iteration = 0
        if latest is not None:
            algo.restore_from_path(str(latest.resolve()))
            start_iteration = int(algo.iteration)
            _truncate_metrics(run / METRICS_FILE, start_iteration)
            log(f"resumed {run} at iteration {start_iteration}")
        results = _train_loop(algo, run, options, start_iteration, quiet, log)
        algo.stop()
        # Offline runs hold Ray Data iterators whose finalizers report to Ray: collect them
        # while Ray is still up (otherwise they print tracebacks after the shutdown).
        del algo
        gc.collect()
    finally:
        if started_ray:
            ray.shutdown()
    return results


def _train_loop(
    algo: Any,
    run: Path,
    options: RunOptions,
    start_iteration: int,
    quiet: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from tensorboardX import SummaryWriter

    ckpt_dir = run / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    best_file = ckpt_dir / "best.json"
    best = json.loads(best_file.read_text())["return"] if best_file.exists() else -math.inf
    selection = _Selection(run, options) if options.select_every else None
    writer = SummaryWriter(str(run / "tensorboard"))
    progress = _Progress(options.iterations, options.time_budget, quiet)
    t0 = time.time()
    last_t, last_steps = t0, None
    row: dict[str, Any] = {}
    watch = SamplingWatch() if options.data is None else None
    try:
        with (run / METRICS_FILE).open("a") as metrics:
            for iteration, result in _iterate(algo, options, start_iteration, t0):
                now = time.time()
                steps_now = int(
                    result.get("env_runners", {}).get("num_env_steps_sampled_lifetime", 0)
                )
                row = _metrics_row(result, iteration, now - last_t, last_steps or 0)
                if last_steps is None:
                    row["env_steps_per_s"] = None
                last_t, last_steps = now, steps_now
                if watch is not None:
                    watch.update(iteration, steps_now, now)
                metrics.write(json.dumps(row, default=_builtin) + "\n")
                metrics.flush()
                for key, value in row.items():
                    if (
                        isinstance(value, int | float)
                        and math.isfinite(value)
                        and key != "iteration"
                    ):
                        writer.add_scalar(key if "/" in key else f"env/{key}", value, iteration)
                progress.update(
                    iteration, {**row, "env_steps_per_s": row["env_steps_per_s"] or 0}, now - t0
                )
                ret = row["episode_return_mean"]
                if ret is not None and ret > best:
                    best = ret
                    _save(algo, ckpt_dir, "best")
                    atomic_write_text(
                        best_file, json.dumps({"return": best, "iteration": iteration})
                    )
                if iteration % options.checkpoint_every == 0:
                    _save(algo, ckpt_dir, "latest")
                if selection is not None and iteration % options.select_every == 0:
                    selection.consider(algo, iteration, log)
                if (
                    options.stop_return is not None
                    and ret is not None
                    and ret >= options.stop_return
                ):
                    break
    finally:
        progress.close()
        writer.close()
    _save(algo, ckpt_dir, "latest")
    _save(algo, ckpt_dir, "final")
    chosen = "final"
    if selection is not None:
        if selection.last != int(algo.iteration):
            selection.consider(algo, int(algo.iteration), log)
        chosen = "selected"
    log(f"trained to iteration {algo.iteration}; evaluating over {options.eval_users} users")
    _plot_curve(run)
    # Evaluate what the learner trained, read back from the checkpoint exactly as
    # `rayrec evaluate` does: with remote learners (IMPALA, APPO) the driver's own copy of the
    # module is never synchronised, so algo.get_module() would be the untrained one.
    env_spec, policy_spec, _ = load_run_spec(run)
    policy = load_policy(policy_spec, ckpt_dir / chosen, algo.config.algo_class.__name__)
    results = compare(policy, env_spec, options.eval_users, options.eval_seed, options.baselines)
    if selection is not None:
        results["selection"] = selection.summary()
    if options.data is not None:
        results["data"] = _behavior_results(options, env_spec)
        results["baselines"]["behavior"] = results["data"].pop("metrics")
    results["training"] = {
        "iterations": int(algo.iteration),
        "env_steps": row.get("env_steps"),
        "wall_time_s": round(time.time() - t0, 1),
        "best_train_return": None if best == -math.inf else best,
    }
    atomic_write_text(run / RESULTS_FILE, json.dumps(results, indent=2, default=_builtin))
    return results


def load_policy(policy_spec: PolicySpec, checkpoint: Path, name: str) -> Any:
    """The evaluation policy of a checkpoint trained with ``policy_spec``: its RLModule, or both
    levels' of a hierarchical agent."""
    from rayrec.experiment import ModulePolicy

    if policy_spec.levels is not None:
        from rayrec.algorithms.hierarchical import HierarchicalPolicy

        return HierarchicalPolicy.from_checkpoint(checkpoint, name=name)
    return ModulePolicy.from_checkpoint(checkpoint, name=name)


class _Selection:
    """Checkpoint selection on validation users: every ``select_every`` iterations the current
    policy plays ``select_users`` users drawn from another seed than the final evaluation's, and
    the best so far is kept in ``checkpoints/selected`` (with ``selected.json``, so that a
    resumed run goes on comparing against it)."""

    def __init__(self, run: Path, options: RunOptions) -> None:
        self.options = options
        self.env, self.policy, _ = load_run_spec(run)
        self.dir = run / "checkpoints"
        self.file = self.dir / "selected.json"
        saved = json.loads(self.file.read_text()) if self.file.exists() else {}
        self.value = saved.get("return", -math.inf)
        self.iteration = saved.get("iteration")
        self.history: list[list[float]] = saved.get("history", [])

    @property
    def last(self) -> int | None:
        """The last iteration evaluated on the validation users."""
        return int(self.history[-1][0]) if self.history else None

    def consider(self, algo: Any, iteration: int, log: Callable[[str], None]) -> None:
        _save(algo, self.dir, "candidate")
        policy = load_policy(self.policy, self.dir / "candidate", algo.config.algo_class.__name__)
        users, seed = self.options.select_users, self.options.select_seed
        value = float(compare(policy, self.env, users, seed, ())["policy"]["return_mean"])
        self.history.append([iteration, value])
        if value > self.value:
            self.value, self.iteration = value, iteration
            _swap_dir(self.dir / "candidate", self.dir / "selected")
            log(f"iteration {iteration}: validation return {value:.2f} (best so far, selected)")
        else:
            shutil.rmtree(self.dir / "candidate")
            log(f"iteration {iteration}: validation return {value:.2f} (best {self.value:.2f})")
        atomic_write_text(self.file, json.dumps(self.summary()))

    def summary(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "return": self.value,
            "users": self.options.select_users,
            "seed": self.options.select_seed,
            "history": self.history,
        }


def _behavior_results(options: RunOptions, env: EnvSpec) -> dict[str, Any]:
    """The log an offline run learned from, and its behaviour policy evaluated like the rest."""
    from rayrec.data import parse_behavior, read_log_meta
    from rayrec.evaluation import evaluate

    meta = read_log_meta(options.data)
    behavior = parse_behavior(meta["behavior"], seed=options.eval_seed)
    return {
        "path": str(Path(options.data).resolve()),
        "behavior": meta["behavior"],
        "rows": meta.get("rows"),
        "episodes": meta.get("episodes"),
        "logged_return_mean": meta.get("behavior_return_mean"),
        "logged_return_ci95": meta.get("behavior_return_ci95"),
        "metrics": evaluate(behavior, env.config, users=options.eval_users, seed=options.eval_seed),
    }


def _builtin(value: Any) -> Any:
    """JSON fallback for NumPy scalars and arrays that RLlib's result dicts carry."""
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _truncate_metrics(path: Path, iteration: int) -> None:
    """Drop log lines past the restored checkpoint: they are about to be trained again."""
    if not path.exists():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("iteration", 0) <= iteration
    ]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _save(algo: Any, ckpt_dir: Path, name: str) -> None:
    tmp = ckpt_dir / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    algo.save_to_path(str(tmp.resolve()))
    _swap_dir(tmp, ckpt_dir / name)


def compare(
    policy: Any, env: EnvSpec, users: int, seed: int, baselines: tuple[str, ...]
) -> dict[str, Any]:
    """Evaluate ``policy`` and the named baselines on the same users (same seed)."""
    from rayrec.evaluation import evaluate, make_baseline

    # A two-level agent plays HierarchicalSessionEnv and is scored on the flat return.
    evaluate_self = getattr(policy, "evaluate_on", None)
    out: dict[str, Any] = {
        "policy": (
            evaluate_self(env, users, seed)
            if evaluate_self is not None
            else evaluate(policy, env.config, users=users, seed=seed)
        ),
        "baselines": {},
        "evaluation": {"users": users, "seed": seed},
    }
    for name in baselines:
        out["baselines"][name] = evaluate(make_baseline(name), env.config, users=users, seed=seed)
    return out


def evaluate_checkpoint(
    checkpoint: Path,
    env: EnvSpec | None,
    users: int,
    seed: int,
    baselines: tuple[str, ...] | None,
) -> dict[str, Any]:
    """Load the RLModule of ``checkpoint`` alone and compare it with baselines.

    ``env`` None means the run's own environment; ``baselines`` None the run's own
    ``evaluation.baselines`` (DEFAULT_BASELINES without a run folder), so that the training
    run's table is reproduced.
    """
    from rayrec.experiment import ModulePolicy

    if not checkpoint.exists():
        raise SpecError(f"--checkpoint {checkpoint}: no such directory")
    saved = None
    if env is None or baselines is None:
        run = find_run_dir(checkpoint)
        saved = load_run_spec(run) if run is not None else None
    if env is None:
        if saved is None:
            raise SpecError(f"--checkpoint {checkpoint}: no spec.yaml above it; pass --env")
        env = saved[0]
    if baselines is None:
        own = saved[1].evaluation.get("baselines") if saved is not None else None
        baselines = tuple(own) if own else DEFAULT_BASELINES
    if env.hierarchy is not None and _is_hierarchical(checkpoint):
        from rayrec.algorithms.hierarchical import HierarchicalPolicy

        policy: Any = HierarchicalPolicy.from_checkpoint(checkpoint)
    else:
        policy = ModulePolicy.from_checkpoint(checkpoint)
    return compare(policy, env, users, seed, baselines)


def _is_hierarchical(checkpoint: Path) -> bool:
    """The checkpoint holds one module per level (``high`` and ``low``)."""
    roots = (checkpoint / "learner_group" / "learner" / "rl_module", checkpoint / "rl_module")
    return any((root / LOW).is_dir() for root in (*roots, checkpoint))


def comparison_table(results: dict[str, Any]) -> list[list[str]]:
    """Rows (header first) of the policy-vs-baselines table."""
    if "table" in results:  # marketplace runs bring their own rows (rayrec.envs.marketplace.run)
        return results["table"]
    header = ["policy", "return (95% CI)", "clicks", "session len", "sessions/user", "coverage"]
    rows = [header]
    entries = [("trained", results["policy"]), *results["baselines"].items()]
    for name, m in entries:
        rows.append(
            [
                name,
                f"{m[Metrics.RETURN_MEAN]:.2f} ± {m[Metrics.RETURN_CI95]:.2f}",
                f"{m[Metrics.CLICKS_MEAN]:.2f}",
                f"{m[Metrics.SESSION_LENGTH_MEAN]:.1f}",
                f"{m[Metrics.SESSIONS_PER_USER]:.2f}",
                f"{m[Metrics.COVERAGE]:.3f}",
            ]
        )
    return rows


def _plot_curve(run: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines() if line]
    xs = [r["env_steps"] for r in rows if r.get("episode_return_mean") is not None]
    ys = [r["episode_return_mean"] for r in rows if r.get("episode_return_mean") is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean episode return (training)")
    ax.set_title(run.name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = run / ".learning_curve.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, run / "learning_curve.png")


def _versions() -> dict[str, str]:
    import ray
    import torch

    import rayrec

    return {"rayrec": rayrec.__version__, "ray": ray.__version__, "torch": str(torch.__version__)}
