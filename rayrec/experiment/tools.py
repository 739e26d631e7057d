"""Tools around a built config: sampling speed, learner devices, an untrained run folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import yaml
from ray.rllib.core import DEFAULT_MODULE_ID

from rayrec.contracts.files import atomic_write_text
from rayrec.contracts.layout import RunFolder
from rayrec.envs.observation import action_space, observation_space
from rayrec.experiment.session import build_session_config
from rayrec.specs import EnvSpec, PolicySpec, SpecError

__all__ = ["learner_devices", "sampling_rate", "save_untrained_run"]


def learner_devices(algo: Any) -> list[str]:
    """The torch device of each learner's default module (``"cpu"``, ``"cuda:0"``, ...).

    RLlib returns a learner call's results as RemoteCallResults for local and remote learners
    alike; an error on a learner is raised here.
    """
    results = algo.learner_group.foreach_learner(
        lambda learner: str(next(learner.module[DEFAULT_MODULE_ID].parameters()).device)
    )
    return [r.get() for r in results]


def sampling_rate(
    env: EnvSpec,
    policy: PolicySpec,
    seconds: float = 8.0,
    rllib_loop: bool = False,
    per_call: int = 4096,
) -> float:
    """Env steps/s of one local EnvRunner with ``policy``'s vectorisation: env steps, episode
    bookkeeping and batched RLModule inference together, no learner. No Ray cluster is needed.

    ``rllib_loop`` measures RLlib's own per-env sampling loop instead of rayrec's batched one
    (:mod:`rayrec.algorithms.env_runner`), as the baseline."""
    config = build_session_config(env, policy)
    config.env_runners(num_env_runners=0)
    cls = config.env_runner_cls
    if rllib_loop:
        cls = type("RLlibLoop", (cls,), {"vectorised_reason": lambda self: "baseline"})
    runner = cls(config=config)
    try:
        runner.sample(num_timesteps=1000)  # warm-up: first module calls, env reset
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            steps += sum(len(e) for e in runner.sample(num_timesteps=per_call))
        return steps / (time.perf_counter() - start)
    finally:
        runner.stop()


def save_untrained_run(out: str | Path, env: EnvSpec, policy: PolicySpec, seed: int = 0) -> Path:
    """A run folder whose ``checkpoints/final`` is a freshly initialised RLModule checkpoint.

    The module is built from ``policy`` for ``env`` exactly as training builds it, seeded, and
    saved with RLlib's ``save_to_path``: a real checkpoint that ``rayrec serve`` and ``rayrec
    evaluate`` load, made in a second without training (for tests, benchmarks and smoke checks of
    a deployment). Returns the checkpoint folder.
    """
    folder = RunFolder(Path(out))
    if folder.spec.exists():
        raise SpecError(f"{folder.root} already holds a run")
    # As training builds it: RLlib's config adds the algorithm's own model settings (C51's
    # num_atoms and support, QR-DQN's num_quantiles, dueling, double Q) to the model section.
    spec = build_session_config(env, policy, seed).get_rl_module_spec()
    spec.observation_space = observation_space(env.config)
    spec.action_space = action_space(env.config)
    torch.manual_seed(seed)
    module = spec.build()
    checkpoint = folder.checkpoint("final")
    module.save_to_path(str(checkpoint.resolve()))
    saved = {"env": env.to_dict(), "policy": policy.to_dict(), "run": {"seed": seed}}
    atomic_write_text(folder.spec, yaml.safe_dump(saved, sort_keys=False))
    return checkpoint
