"""One Tune trial: build the RLlib algorithm for a point of the space, train, evaluate, report.

Every iteration the trial saves an RLlib checkpoint, evaluates the module in that checkpoint in
the simulator (the same users for every trial and iteration) and reports both, so schedulers can
stop or copy trials and an interrupted sweep resumes where each trial stood.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from rayrec.contracts.keys import TrialMetrics
from rayrec.evaluation.compare import evaluate_run_checkpoint
from rayrec.experiment import build_config
from rayrec.run import iterations
from rayrec.specs import EnvSpec, PolicySpec
from rayrec.tuning.space import TrialSpec, apply_params

__all__ = ["TrialSetup", "run_trial", "trial_resources"]


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares; the trial's own hyperparameters come from Tune."""

    env: dict[str, Any]
    """The raw environment spec (with the command line's overrides)."""
    policy: dict[str, Any]
    """The raw policy spec the sampled hyperparameters are applied to (trial layout included)."""
    trial: TrialSpec

    def policy_spec(self, params: dict[str, Any]) -> PolicySpec:
        return PolicySpec.from_dict(apply_params(self.policy, params), "trial policy")


def trial_resources(setup: TrialSetup, params: dict[str, Any]) -> Any:
    """The trial's placement group: exactly what RLlib requests for its algorithm config.

    The main process (sampling and learning locally when there are no remote env runners or
    learners) takes the first bundle; remote env runners and learners the others, so RLlib's
    own actors always fit inside the trial's placement group.
    """
    policy = setup.policy_spec(params)
    config = build_config(EnvSpec.from_dict(setup.env), policy, seed=setup.trial.seed)
    return config.algo_class.default_resource_request(config)


def trial_index(trial_id: str) -> int:
    """Creation index of a trial from Tune's id ``<experiment>_<index>`` (0 if not that form)."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable: ``config`` maps spec paths to this trial's values.

    The trial steps through the training runs' loop (:func:`rayrec.run.iterations`) and scores
    every iteration's checkpoint with their evaluation (:func:`evaluate_run_checkpoint`), so it
    trains and reports any env kind: session, hierarchical and marketplace presets."""
    env = EnvSpec.from_dict(setup.env)
    policy = setup.policy_spec(config)
    seed = setup.trial.seed + trial_index(tune.get_context().get_trial_id() or "")
    algo = build_config(env, policy, seed=seed).build_algo()
    try:
        # A resumed, retried or (PBT) exploiting trial starts from its checkpoint; the new
        # config's settings apply from there on.
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as path:
                algo.restore_from_path(path)
        for _, result, _ in iterations(algo, setup.trial.iterations, None):
            with tempfile.TemporaryDirectory(prefix="rayrec-trial-") as path:
                algo.save_to_path(path)
                # The learner's modules, read back from the checkpoint (as `rayrec evaluate`
                # does): remote learners never synchronise the driver's copy.
                users, eval_seed = setup.trial.eval_users, setup.trial.eval_seed
                results = evaluate_run_checkpoint(Path(path), env, policy, users, eval_seed, ())
                tune.report(
                    trial_metrics(result, results["policy"]),
                    checkpoint=tune.Checkpoint.from_directory(path),
                )
    finally:
        algo.stop()


def trial_metrics(result: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, float]:
    """The flat report of one iteration: ``eval/*`` of the simulator evaluation and ``train/*``.

    Missing values (no finished episode yet, slate diversity with one item) are NaN, which the
    schedulers skip, so every report carries every key.
    """
    runners = result.get("env_runners", {})
    out = {
        TrialMetrics.TRAIN_RETURN: _float(runners.get("episode_return_mean")),
        TrialMetrics.TRAIN_EPISODE_LEN: _float(runners.get("episode_len_mean")),
        TrialMetrics.ENV_STEPS: _float(runners.get("num_env_steps_sampled_lifetime")),
    }
    for key, value in evaluation.items():
        if not isinstance(value, dict):  # marketplace metrics carry per-agent returns: skipped
            out[TrialMetrics.EVAL_PREFIX + key] = _float(value)
    return out


def _float(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan
