"""Sweeps: run or resume a Ray Tune experiment over a search space, then summarise it.

Sweep folder layout (documented in the README)::

    DIR/spec.yaml             env, policy, trial policy, resolved space: the sweep is rebuilt from it
    DIR/env.yaml              the environment spec the trials ran on
    DIR/experiment/           Ray Tune's experiment (trial folders, checkpoints, state for --resume)
    DIR/experiment/checkpoints.jsonl  every checkpoint Tune registered: trial id, iteration, path
    DIR/trials.csv            one row per trial: status, hyperparameters, iterations, metric
    DIR/metric_over_time.png  the metric over training iterations, one line per trial
    DIR/best.yaml             the policy spec with the best trial's hyperparameters
    DIR/best_checkpoint/      that trial's best checkpoint (an RLlib Algorithm checkpoint)
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rayrec.contracts.errors import SpecError
from rayrec.contracts.files import atomic_write_text, swap_dir
from rayrec.contracts.keys import TrialMetrics
from rayrec.experiment import validate_sections
from rayrec.specs import MARKETPLACE_ENV_ID, EnvSpec, PolicySpec, apply_overrides, load_yaml
from rayrec.tuning.space import SweepSpec, apply_params

__all__ = [
    "SweepFailed",
    "SweepInterrupted",
    "SweepPlan",
    "SweepSummary",
    "plan_sweep",
    "run_sweep",
]

SPEC_FILE = "spec.yaml"
ENV_FILE = "env.yaml"
EXPERIMENT_DIR = "experiment"
TRIALS_FILE = "trials.csv"
PLOT_FILE = "metric_over_time.png"
BEST_FILE = "best.yaml"
BEST_CHECKPOINT = "best_checkpoint"
# Checkpoints kept per trial: the best by the sweep's metric and the latest (Tune keeps it too).
# PBT keeps them all: a trial may copy another's checkpoint after that one has moved on.
CHECKPOINTS_TO_KEEP = 2


class SweepInterrupted(Exception):
    """The sweep stopped before every trial finished (Ctrl+C); ``--resume`` continues it."""


class SweepFailed(RuntimeError):
    """No trial reported the sweep's metric (every trial failed)."""


@dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep is made of, validated; saved as ``DIR/spec.yaml``."""

    env: dict[str, Any]
    """The environment spec (resolved)."""
    policy: dict[str, Any]
    """The policy spec with the command line's overrides: best.yaml is this plus the best values."""
    trial_policy: dict[str, Any]
    """The policy the trials start from: ``policy`` under the space's ``trial.set`` layout."""
    sweep: SweepSpec
    source: str = "space file"

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "policy": self.policy,
            "trial_policy": self.trial_policy,
            "sweep": self.sweep.to_dict(),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> SweepPlan:
        for key in ("env", "policy", "trial_policy", "sweep"):
            if not isinstance(data.get(key), dict):
                raise SpecError(f"{source}: missing section {key!r}; is this a sweep folder?")
        return cls(
            env=data["env"],
            policy=data["policy"],
            trial_policy=data["trial_policy"],
            sweep=SweepSpec.from_dict(data["sweep"], f"{source} (sweep)"),
            source=str(data.get("source", source)),
        )


@dataclass(frozen=True)
class SweepSummary:
    """The outcome of a finished sweep."""

    rows: list[list[str]]
    """The results table, header first: one row per trial."""
    best_trial: str
    best_value: float
    best_params: dict[str, Any]
    out: Path


def _check_metric(metric: str, env: EnvSpec, source: str) -> None:
    """The sweep's metric must be one its trials report: marketplace trials report the market's
    metrics (:class:`MarketMetrics`), session and hierarchical trials the session's."""
    market = env.id == MARKETPLACE_ENV_ID
    names = TrialMetrics.names(market=market)
    if metric not in names:
        kind = "marketplace" if market else "session"
        raise SpecError(
            f"{source}: metric {metric!r} is not reported by {kind} trials; "
            f"known: {', '.join(names)}"
        )


def plan_sweep(
    env_path: Path,
    policy_path: Path,
    space_path: Path,
    overrides: list[str],
    samples: int | None = None,
) -> SweepPlan:
    """Load and validate the three specs (no Ray); ``overrides`` are ``--profile``/``--set``.

    Precedence for the trials: policy file < space ``trial.set`` < command line < sampled values.
    """
    source = str(space_path)
    sweep = SweepSpec.from_dict(load_yaml(space_path), source)
    if samples is not None:
        sweep = dataclasses.replace(sweep, samples=samples)
    policy_raw = load_yaml(policy_path)
    env_raw, base = apply_overrides(load_yaml(env_path), policy_raw, overrides)
    _, trial_policy = apply_overrides({}, apply_params(policy_raw, sweep.trial.set), overrides)
    env = EnvSpec.from_dict(env_raw, str(env_path))
    policy = PolicySpec.from_dict(base, str(policy_path))
    _check_metric(sweep.metric, env, source)
    validate_sections(policy, str(policy_path))
    sweep.validate(env_raw, trial_policy, source)
    trial = PolicySpec.from_dict(trial_policy, f"{source} (trial policy)")
    return SweepPlan(
        env=env.to_dict(),
        policy=policy.to_dict(),
        trial_policy=trial.to_dict(),
        sweep=sweep,
        source=source,
    )


def run_sweep(
    plan: SweepPlan | None,
    out: Path,
    *,
    resume: bool = False,
    address: str | None = None,
    quiet: bool = False,
) -> SweepSummary:
    """Run ``plan`` into ``out`` (or, with ``resume``, continue the sweep saved there)."""
    out = Path(out).resolve()
    experiment = out / EXPERIMENT_DIR
    if resume:
        plan = SweepPlan.from_dict(load_yaml(out / SPEC_FILE), str(out / SPEC_FILE))
    elif plan is None:
        raise SpecError("run_sweep needs a plan unless it resumes")
    elif (out / SPEC_FILE).exists():
        raise SpecError(f"{out} already holds a sweep; use --resume or another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / SPEC_FILE, yaml.safe_dump(plan.to_dict(), sort_keys=False))
        atomic_write_text(out / ENV_FILE, yaml.safe_dump(plan.env, sort_keys=False))
    _fit(plan, experiment, resume, address, quiet)
    # Read back what Tune saved: its ResultGrid reports the trials of an interrupted run as
    # terminated (the state on disk was written before they were stopped), and each report
    # there carries the values in effect and its checkpoint, which PBT changes as trials go.
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    finished = sum(t.status in ("TERMINATED", "ERROR") for t in analysis.trials)
    if finished < plan.sweep.num_trials:
        raise SweepInterrupted(
            f"sweep interrupted with {finished} of {plan.sweep.num_trials} trials finished; "
            f"continue it with: rayrec tune --resume --out {out}"
        )
    return _summarise(plan, analysis, out)


def _fit(plan: SweepPlan, experiment: Path, resume: bool, address: str | None, quiet: bool) -> None:
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from rayrec.run import ensure_ray
    from rayrec.tuning.callbacks import CheckpointLog
    from rayrec.tuning.trainable import TrialSetup, run_trial, trial_resources

    # Tune warns on every forced state snapshot; with a checkpoint per iteration that is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    sweep = plan.sweep
    if resume and not tune.Tuner.can_restore(str(experiment)):
        raise SpecError(f"--resume: {experiment} holds no Tune experiment to restore")
    started_ray = ensure_ray(address)
    try:
        setup = TrialSetup(env=plan.env, policy=plan.trial_policy, trial=sweep.trial)
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, setup=setup),
            functools.partial(trial_resources, setup),
        )
        if resume:
            tuner = tune.Tuner.restore(
                str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=sweep.param_space(),
                tune_config=tune.TuneConfig(
                    metric=sweep.metric,
                    mode=sweep.mode,
                    num_samples=sweep.samples,
                    reuse_actors=True,
                    scheduler=sweep.scheduler.build(sweep.params, sweep.trial.iterations),
                    search_alg=BasicVariantGenerator(
                        max_concurrent=sweep.trial.max_concurrent,
                        random_state=sweep.trial.seed,
                    ),
                ),
                run_config=tune.RunConfig(
                    name=experiment.name,
                    storage_path=str(experiment.parent),
                    failure_config=tune.FailureConfig(max_failures=sweep.trial.max_failures),
                    checkpoint_config=tune.CheckpointConfig(
                        num_to_keep=None if sweep.scheduler.type == "pbt" else CHECKPOINTS_TO_KEEP,
                        checkpoint_score_attribute=sweep.metric,
                        checkpoint_score_order=sweep.mode,
                    ),
                    verbose=0 if quiet else 1,
                    callbacks=[CheckpointLog(experiment)],
                ),
            )
        tuner.fit()
    finally:
        if started_ray:
            ray.shutdown()


def _summarise(plan: SweepPlan, analysis: Any, out: Path) -> SweepSummary:
    """trials.csv, the plot, best.yaml and best_checkpoint/ from the saved experiment.

    The best report over all trials and iterations wins; best.yaml gets the values that were in
    effect for it (constant per trial, except under PBT) and best_checkpoint/ its checkpoint.
    """
    sweep = plan.sweep
    metric, sign = sweep.metric, (1.0 if sweep.mode == "max" else -1.0)
    names = [p.name for p in sweep.params]
    header = ["trial", "status", *names, "iterations", metric, f"best {metric}"]
    rows, curves = [], {}
    best: tuple[float, Any, dict[str, Any]] | None = None
    for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
        frame = analysis.trial_dataframes.get(trial.trial_id)
        records = [] if frame is None or metric not in frame else frame.to_dict("records")
        reports = [r for r in records if _finite(r[metric])]
        curves[trial.trial_id] = [(int(r[TrialMetrics.ITERATION]), r[metric]) for r in reports]
        top = max(reports, key=lambda r: sign * r[metric], default=None)
        if top is not None and (best is None or sign * top[metric] > sign * best[0]):
            best = (top[metric], trial, top)
        iterations = int(records[-1][TrialMetrics.ITERATION]) if records else 0
        if trial.status == "ERROR":
            status = "error"
        elif iterations < sweep.trial.iterations:
            status = "stopped early"
        else:
            status = "done"
        rows.append(
            [
                trial.trial_id,
                status,
                *[_cell(_value(records[-1] if records else {}, trial, n)) for n in names],
                str(iterations),
                _cell(reports[-1][metric] if reports else math.nan),
                _cell(top[metric] if top else math.nan),
            ]
        )
    table = [header, *rows]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(table)
    atomic_write_text(out / TRIALS_FILE, text.getvalue())
    _plot(curves, metric, out / PLOT_FILE)

    if best is None:
        raise SweepFailed(f"no trial reported {metric}; see the trial errors above")
    value, trial, report = best
    checkpoint = Path(trial.path) / str(report.get("checkpoint_dir_name"))
    if not (checkpoint / "rllib_checkpoint.json").is_file():
        raise SweepFailed(f"the best report's checkpoint is gone: {checkpoint}")
    params = {n: _value(report, trial, n) for n in names}
    _write_best(plan, params, trial.trial_id, float(value), out)
    tmp = out / f".{BEST_CHECKPOINT}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(checkpoint, tmp)
    swap_dir(tmp, out / BEST_CHECKPOINT)
    return SweepSummary(
        rows=table, best_trial=trial.trial_id, best_value=float(value), best_params=params, out=out
    )


def _value(report: dict[str, Any], trial: Any, name: str) -> Any:
    """The value of ``name`` in effect for a report (PBT changes them), as a Python value.

    Tune flattens a dict value into several columns; such a value comes from the trial.
    """
    value = report.get(f"config/{name}", trial.config.get(name))
    return value.item() if hasattr(value, "item") else value


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _write_best(
    plan: SweepPlan, params: dict[str, Any], trial_id: str, value: float, out: Path
) -> None:
    sweep = plan.sweep
    policy = PolicySpec.from_dict(apply_params(plan.policy, params), "best policy").to_dict()
    values = ", ".join(f"{k}={v}" for k, v in params.items())
    policy["description"] = (
        f"Best trial ({trial_id}) of the sweep in {out} over {plan.source}: "
        f"{sweep.metric} = {value:.4g} with {values}."
    )
    header = (
        f"# Written by `rayrec tune` ({plan.source}, best by {sweep.metric}, {sweep.mode}).\n"
        f"# Train it: rayrec train --env {out / ENV_FILE} --policy {out / BEST_FILE}\n"
    )
    atomic_write_text(out / BEST_FILE, header + yaml.safe_dump(policy, sort_keys=False))


def _plot(curves: dict[str, list[tuple[int, float]]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for trial_id, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=trial_id)
    ax.set_xlabel("training iteration")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of every trial")
    ax.grid(alpha=0.3)
    if len(curves) <= 16:
        ax.legend(fontsize="small")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
