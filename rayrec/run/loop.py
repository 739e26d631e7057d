"""The one training loop, for every env kind (session, hierarchical, marketplace) and for online
and offline algorithms: build, (resume,) train until a stop condition, checkpoint, select,
evaluate against baselines, write results.json.

Stops: ``iterations`` (the iteration to reach), ``time_budget`` (training seconds of the whole
run, resumes included: a resumed run trains what is left), ``stop_return`` (mean training
return), or an interrupt: Ctrl-C or SIGTERM (what a cluster or a container stop sends) ends the
iteration loop, saves ``final``, evaluates it, writes results.json and then raises
:class:`Interrupted`, so the command exits non-zero with nothing lost.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rayrec.contracts.files import atomic_write_text, swap_dir
from rayrec.contracts.keys import Metrics
from rayrec.contracts.layout import RunFolder
from rayrec.evaluation.compare import behavior_results, evaluate_run_checkpoint, headline
from rayrec.experiment import build_config, env_kind
from rayrec.ope.report import training_log_estimates
from rayrec.run.folder import (
    copy_checkpoint,
    json_default,
    plot_curve,
    read_progress,
    restore_checkpoint,
    save_checkpoint,
    trim_metrics,
    write_spec,
)
from rayrec.run.options import RunOptions
from rayrec.run.progress import Progress, SamplingWatch, metrics_row
from rayrec.run.warm import hold_policy, warm_start
from rayrec.specs import EnvSpec, PolicySpec, SpecError, load_run_spec

__all__ = ["Interrupted", "ensure_ray", "iterations", "train"]

Log = Callable[[str], None]


class Interrupted(Exception):
    """Training was stopped by SIGINT or SIGTERM after saving what it had; ``signum`` says which."""

    def __init__(self, signum: int, results: dict[str, Any] | None = None) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.results = results


@contextmanager
def _sigterm_as_interrupt() -> Iterator[dict[str, int]]:
    """Within the block, SIGTERM interrupts like Ctrl-C: the handler raises KeyboardInterrupt
    (the one exception Ray's blocking calls pass through cleanly; another one raised inside
    ``ray.wait`` comes out as a SystemError) and records the signal in the yielded dict. The
    previous handler comes back afterwards."""
    received: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        received["signum"] = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def iterations(
    algo: Any,
    stop_iteration: int | None,
    time_budget: float | None,
    spent: float = 0.0,
) -> Iterator[tuple[int, dict[str, Any], float]]:
    """``algo.train()`` until iteration ``stop_iteration`` or until the run has trained
    ``time_budget`` seconds (``spent`` of them before this call); yields (iteration, result,
    training seconds so far). Training runs and Tune trials both step through this."""
    t0, seconds = time.time(), spent
    while True:
        iteration = int(algo.iteration)
        if stop_iteration is not None and iteration >= stop_iteration:
            return
        # Against the seconds recorded with the last iteration, not the clock now: the caller's
        # work after an iteration (checkpoints, selection) counts in the next iteration's seconds,
        # and a run never stops with its recorded training seconds short of its budget.
        if time_budget is not None and seconds >= time_budget:
            return
        result = algo.train()
        seconds = spent + time.time() - t0
        yield int(algo.iteration), result, seconds


def _nothing_left(options: RunOptions, iteration: int, spent: float) -> str | None:
    """Why a resumed run would train nothing (its stop is reached already), or None."""
    if options.iterations is not None and iteration >= options.iterations:
        return (
            f"the run is at iteration {iteration} already (its stop: {options.iterations}); "
            "pass --iterations N with N above it, or --time-budget S"
        )
    if options.time_budget is not None and spent >= options.time_budget:
        return (
            f"the run has trained {spent:.0f} s of its {options.time_budget:.0f} s time "
            "budget; pass a larger --time-budget (seconds in all) or --iterations N"
        )
    return None


def train(
    env: EnvSpec,
    policy: PolicySpec,
    options: RunOptions,
    *,
    resume: bool = False,
    quiet: bool = False,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train ``policy`` on ``env`` into ``options.out``; returns the results dict.

    With ``resume`` the run continues from ``out/checkpoints/latest`` (iteration count, env steps
    and the time spent carry on) using the spec saved in the folder. Raises
    :class:`Interrupted` (after saving ``final`` and writing results.json) on Ctrl-C or SIGTERM.
    """
    import ray

    log = log or (lambda msg: None if quiet else sys.stderr.write(msg + "\n"))
    # Warnings (a torn metrics line, a checkpoint that does not load) print even when quiet.
    warn = log if not quiet else (lambda msg: sys.stderr.write(msg + "\n"))
    folder = RunFolder(Path(options.out))
    if resume:
        latest = folder.existing_checkpoint("latest")
        if not latest:
            raise SpecError(f"--resume: {folder.root} has no checkpoint to resume from")
        saved = read_progress(latest[0])
        reason = _nothing_left(options, int(saved.get("iteration", 0)), saved.get("seconds", 0.0))
        if saved and reason is not None:
            raise SpecError(f"--resume: {reason}")
    elif folder.spec.exists():
        raise SpecError(f"{folder.root} already holds a run; use --resume or another --out")
    config = build_config(env, policy, seed=options.seed, data=options.data)
    folder.root.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_spec(folder, env, policy, options.to_dict())

    started_ray = ensure_ray(options.address)
    try:
        algo = config.build_algo()
        spent = 0.0
        if resume:
            used = restore_checkpoint(algo, folder, "latest", warn)
            spent = float(read_progress(used).get("seconds", 0.0))
            rows = trim_metrics(folder.metrics, int(algo.iteration), warn)
            if not spent and rows:  # a checkpoint from before the progress sidecar
                spent = float(rows[-1].get("train_seconds") or 0.0)
            reason = _nothing_left(options, int(algo.iteration), spent)
            if reason is not None:
                raise SpecError(f"--resume: {reason}")
            log(f"resumed {folder.root} at iteration {algo.iteration} ({spent:.0f} s trained)")
        elif options.init_from is not None:
            warm_start(algo, options.init_from, warn)
        if options.critic_warmup > int(algo.iteration):
            held = hold_policy(algo, held=True)
            warn(f"critic warm-up: {held} policy tensors held to iteration {options.critic_warmup}")
        try:
            results = _train_loop(algo, folder, env, policy, options, spent, quiet, log)
        finally:
            algo.stop()
            # Offline runs hold Ray Data iterators whose finalizers report to Ray: collect them
            # while Ray is still up (otherwise they print tracebacks after the shutdown).
            del algo
            gc.collect()
    finally:
        if started_ray:
            ray.shutdown()
    if results.get("interrupted"):
        raise Interrupted(results["interrupted"], results)
    return results


def _keep_if_best(
    folder: RunFolder,
    best_file: Path,
    best: float,
    ret: float | None,
    iteration: int,
    source: str,
) -> float:
    """Copy checkpoint ``source`` (just saved) to ``best`` when its mean training return beats
    the best kept so far; returns the best. Only checkpointed iterations (every
    ``checkpoint_every`` and the last) are candidates: saving an IMPALA/APPO algorithm at every
    new best took 5-10 s each, half of a 480 s budget."""
    if ret is None or not ret > best:
        return best
    copy_checkpoint(folder, source, "best")
    atomic_write_text(best_file, json.dumps({"return": ret, "iteration": iteration}))
    return ret


def _train_loop(
    algo: Any,
    folder: RunFolder,
    env: EnvSpec,
    policy: PolicySpec,
    options: RunOptions,
    spent: float,
    quiet: bool,
    log: Log,
) -> dict[str, Any]:
    from tensorboardX import SummaryWriter

    folder.checkpoints.mkdir(exist_ok=True)
    best_file = folder.checkpoints / "best.json"
    best = json.loads(best_file.read_text())["return"] if best_file.exists() else -math.inf
    selection = _Selection(folder, options) if options.select_every else None
    writer = SummaryWriter(str(folder.tensorboard))
    progress = Progress(options.iterations, options.time_budget, quiet)
    t0 = time.time()
    last_t, last_steps = t0, None
    row: dict[str, Any] = {}
    seconds = spent
    interrupted: int | None = None
    received: dict[str, int] = {}
    watch = SamplingWatch() if options.data is None else None
    try:
        with _sigterm_as_interrupt() as received, folder.metrics.open("a") as metrics:
            steps = iterations(algo, options.iterations, options.time_budget, spent)
            for iteration, result, seconds in steps:
                now = time.time()
                steps_now = int(
                    result.get("env_runners", {}).get("num_env_steps_sampled_lifetime", 0)
                )
                row = metrics_row(result, iteration, now - last_t, last_steps or 0)
                row["train_seconds"] = round(seconds, 3)
                if last_steps is None:
                    row["env_steps_per_s"] = None
                last_t, last_steps = now, steps_now
                if watch is not None:
                    watch.update(iteration, steps_now, now)
                metrics.write(json.dumps(row, default=json_default) + "\n")
                metrics.flush()
                for key, value in row.items():
                    if (
                        isinstance(value, int | float)
                        and math.isfinite(value)
                        and key != "iteration"
                    ):
                        writer.add_scalar(key if "/" in key else f"env/{key}", value, iteration)
                progress.update(
                    iteration, {**row, "env_steps_per_s": row["env_steps_per_s"] or 0}, seconds
                )
                if iteration == options.critic_warmup:
                    log(
                        f"critic warm-up over: {hold_policy(algo, held=False)} policy tensors learn"
                    )
                mark = {"iteration": iteration, "seconds": seconds}
                ret = row["episode_return_mean"]
                if iteration % options.checkpoint_every == 0:
                    save_checkpoint(algo, folder, "latest", mark)
                    best = _keep_if_best(folder, best_file, best, ret, iteration, "latest")
                if selection is not None and iteration % options.select_every == 0:
                    selection.consider(algo, iteration, log)
                if (
                    options.stop_return is not None
                    and ret is not None
                    and ret >= options.stop_return
                ):
                    break
    except KeyboardInterrupt:
        interrupted = received.get("signum", signal.SIGINT)
    finally:
        progress.close()
        writer.close()
    if interrupted is not None:
        log(f"interrupted by {signal.Signals(interrupted).name}: saving and evaluating")
    mark = {"iteration": int(algo.iteration), "seconds": seconds}
    save_checkpoint(algo, folder, "latest", mark)
    save_checkpoint(algo, folder, "final", mark)
    best = _keep_if_best(
        folder, best_file, best, row.get("episode_return_mean"), int(algo.iteration), "final"
    )
    chosen = "final"
    if selection is not None and interrupted is None:
        if selection.last != int(algo.iteration):
            selection.consider(algo, int(algo.iteration), log)
        chosen = "selected" if folder.checkpoint("selected").is_dir() else "final"
    log(f"trained to iteration {algo.iteration}; evaluating over {options.eval_users} users")
    plot_curve(folder)
    # Evaluate what the learner trained, read back from the checkpoint exactly as
    # `rayrec evaluate` does: with remote learners (IMPALA, APPO) the driver's own copy of the
    # module is never synchronised, so algo.get_module() would be the untrained one.
    results = evaluate_run_checkpoint(
        folder.checkpoint(chosen),
        env,
        policy,
        options.eval_users,
        options.eval_seed,
        options.baselines,
    )
    if selection is not None:
        results["selection"] = selection.summary()
    if options.data is not None:
        results["data"] = behavior_results(options.data, env, options.eval_users, options.eval_seed)
        behavior = results["data"].pop("metrics")
        if behavior is not None:  # None: a served log's behaviour (not replayable)
            results["baselines"]["behavior"] = behavior
        results["ope"] = _ope_block(options, folder.checkpoint(chosen), results["policy"])
    results["training"] = {
        "kind": env_kind(env, policy),
        "iterations": int(algo.iteration),
        "env_steps": row.get("env_steps"),
        "wall_time_s": round(time.time() - t0, 1),
        "train_seconds": round(seconds, 1),
        "time_budget": options.time_budget,
        "best_train_return": None if best == -math.inf else best,
    }
    if interrupted is not None:
        results["interrupted"] = int(interrupted)
    atomic_write_text(folder.results, json.dumps(results, indent=2, default=json_default))
    return results


def _ope_block(options: RunOptions, checkpoint: Path, simulated: dict[str, Any]) -> dict[str, Any]:
    """Off-policy estimates of the evaluated checkpoint on its own training log, with its
    simulated reward per decision beside them (on the policy's own states, not the logged ones:
    the two differ by design, see docs/ope.md)."""
    block = training_log_estimates(options.data, checkpoint, seed=options.eval_seed)
    steps = simulated.get(Metrics.STEPS_MEAN)
    if "skipped" not in block and steps:
        block["simulated_reward_per_step"] = float(simulated[Metrics.RETURN_MEAN]) / steps
    return block


class _Selection:
    """Checkpoint selection on validation users: every ``select_every`` iterations the current
    policy plays ``select_users`` users drawn from another seed than the final evaluation's, and
    the best so far is kept in ``checkpoints/selected`` (with ``selected.json``, so that a
    resumed run goes on comparing against it). Marketplace runs rank by total welfare."""

    def __init__(self, folder: RunFolder, options: RunOptions) -> None:
        self.options = options
        self.env, self.policy, _ = load_run_spec(folder.root)
        self.folder = folder
        self.file = folder.checkpoints / "selected.json"
        saved = json.loads(self.file.read_text()) if self.file.exists() else {}
        self.value = saved.get("return", -math.inf)
        self.iteration = saved.get("iteration")
        self.history: list[list[float]] = saved.get("history", [])

    @property
    def last(self) -> int | None:
        """The last iteration evaluated on the validation users."""
        return int(self.history[-1][0]) if self.history else None

    def consider(self, algo: Any, iteration: int, log: Log) -> None:
        save_checkpoint(algo, self.folder, "candidate", {"iteration": iteration})
        candidate = self.folder.checkpoint("candidate")
        users, seed = self.options.select_users, self.options.select_seed
        results = evaluate_run_checkpoint(candidate, self.env, self.policy, users, seed, ())
        value = headline(results)[1]
        self.history.append([iteration, value])
        if value > self.value:
            self.value, self.iteration = value, iteration
            swap_dir(candidate, self.folder.checkpoint("selected"))
            log(f"iteration {iteration}: validation return {value:.2f} (best so far, selected)")
        else:
            shutil.rmtree(candidate)
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
