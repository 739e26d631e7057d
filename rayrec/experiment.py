"""Specs -> RLlib ``AlgorithmConfig``; trained RLModules as evaluation policies.

The policy spec's RLlib sections are applied with as little code as possible: each section
``name: {key: value}`` becomes ``config.name(key=value, ...)``, after checking every key against
the parameters of that method (over the algorithm's class hierarchy) and every value's type against
the config's current default.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rayrec.envs.observation import Obs
from rayrec.specs import (
    ALGORITHMS,
    MARKETPLACE_ENV_ID,
    OFFLINE_ALGORITHMS,
    EnvSpec,
    PolicySpec,
    SpecError,
)

__all__ = [
    "RLLIB_ENV_NAME",
    "ModulePolicy",
    "apply_sections",
    "build_config",
    "check_data",
    "make_vector_env",
    "module_spec",
    "sampling_rate",
    "seeded_and_validated",
    "validate_sections",
]

RLLIB_ENV_NAME = "rayrec_env"


def make_vector_env(env_config: dict[str, Any]) -> gym.vector.VectorEnv:
    """RLlib env creator: a vectorised rayrec env from ``{"id", "config", "num_envs"}``.

    Runs inside every EnvRunner process, so it imports rayrec itself (that registers the ids).
    An optional ``fault_injection: {marker, after_steps}`` entry makes the first env runner to
    reach ``after_steps`` crash, once (chaos testing, see :mod:`rayrec.envs.faults`).
    """
    import rayrec  # noqa: F401
    from rayrec.envs import rllib_fast_paths

    rllib_fast_paths.install()
    env = gym.make_vec(
        env_config["id"],
        num_envs=int(env_config.get("num_envs", 1)),
        vectorization_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT,
        **dict(env_config.get("config", {})),
    )
    fault = env_config.get("fault_injection")
    if fault:
        from rayrec.envs.faults import CrashOnceVectorEnv

        env = CrashOnceVectorEnv(env, fault["marker"], fault.get("after_steps", 100))
    return env


def _algorithm_config_class(algorithm: str) -> type:
    from ray.rllib.algorithms.registry import ALGORITHMS as RLLIB_ALGORITHMS

    if algorithm == "DiscreteCQL":
        from rayrec.algorithms.cql import DiscreteCQLConfig

        return DiscreteCQLConfig

    return RLLIB_ALGORITHMS[algorithm]()[1].__class__


def _method_params(cls: type, method: str) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        fn = klass.__dict__.get(method)
        if fn is None:
            continue
        for p in inspect.signature(fn).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self":
                names.add(p.name)
    return names


def _type_ok(current: Any, value: Any) -> bool:
    if current is None or value is None:
        return True
    if isinstance(current, bool):
        return isinstance(value, bool)
    if isinstance(current, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(current, str):
        return isinstance(value, str | int | float)  # some string fields accept numbers ("auto")
    if isinstance(current, list | tuple):
        return isinstance(value, list | tuple)
    if isinstance(current, dict):
        return isinstance(value, dict)
    return True


# Settings rayrec owns: users change them through the env spec, the model section or flags.
_RESERVED = {
    "training": {"model", "learner_class"},
    "env_runners": {
        "gym_env_vectorize_mode",
        "env_to_module_connector",
        "module_to_env_connector",
        "env_runner_cls",
    },
    "debugging": {"seed"},
    "offline_data": {"input_", "input_read_method", "prelearner_class", "input_read_episodes"},
}


def validate_sections(policy: PolicySpec, source: str = "policy spec") -> None:
    """Check every RLlib section key and value type without starting Ray."""
    cls = _algorithm_config_class(policy.algorithm)
    defaults = cls()
    sections = list(policy.sections.items())
    # Per-level training overrides of a hierarchical preset take the same keys as `training`.
    for level_sections in (policy.levels or {}).values():
        if level_sections.get("training"):
            sections.append(("training", level_sections["training"]))
    for name, section in sections:
        allowed = _method_params(cls, name) - _RESERVED.get(name, set())
        for key, value in section.items():
            if key not in allowed:
                raise SpecError(
                    f"{source}: unknown key {name}.{key} for {policy.algorithm}; "
                    f"known: {', '.join(sorted(allowed))}"
                )
            current = getattr(defaults, key, None)
            if key in _SCHEDULES and isinstance(value, list | tuple):
                _check_schedule(value, f"{source}: {name}.{key}")
            elif not _type_ok(current, value):
                raise SpecError(
                    f"{source}: {name}.{key} must be a {type(current).__name__}, got {value!r}"
                )


# Settings RLlib also takes as a piecewise-linear schedule [[env_step, value], ...].
_SCHEDULES = {"lr", "entropy_coeff"}


def _check_schedule(value: Any, where: str) -> None:
    """A schedule: [[0, v0], [t1, v1], ...] with increasing int steps and numeric values."""
    usage = "a number or a schedule [[0, value], [env_step, value], ...]"
    steps = []
    for point in value:
        ok = isinstance(point, list | tuple) and len(point) == 2
        ok = ok and all(isinstance(x, int | float) and not isinstance(x, bool) for x in point)
        if not ok or not isinstance(point[0], int) or not math.isfinite(point[1]):
            raise SpecError(f"{where} must be {usage}; got the entry {point!r}")
        steps.append(point[0])
    if not steps or steps[0] != 0 or any(b <= a for a, b in itertools.pairwise(steps)):
        raise SpecError(f"{where} must be {usage} (steps from 0, increasing); got {value!r}")


def module_spec(policy: PolicySpec) -> Any:
    """The RLModuleSpec of the rayrec module family the algorithm uses."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rayrec.algorithms.apex import APEX_KEY
    from rayrec.models import CandidateAPPOModule, CandidatePolicyModule, CandidateQModule

    family = ALGORITHMS[policy.algorithm]
    classes = {
        "policy": CandidatePolicyModule,
        "appo": CandidateAPPOModule,
        "q": CandidateQModule,
    }
    model = {
        "encoder": policy.model.encoder,
        "hidden": policy.model.hidden,
        "scorer": policy.model.scorer,
        "value_hidden": policy.model.value_hidden,
    }
    if policy.apex is not None:
        model[APEX_KEY] = [policy.apex["epsilon"], policy.apex["alpha"]]
    return RLModuleSpec(module_class=classes[family], model_config=model)


def apply_sections(config: Any, policy: PolicySpec) -> None:
    """``config.NAME(**section)`` for every non-empty RLlib section of the policy spec."""
    for name, section in policy.sections.items():
        if section:
            try:
                getattr(config, name)(**section)
            except (TypeError, ValueError) as e:
                raise SpecError(f"policy spec: section {name}: {e}") from e


def check_data(policy: PolicySpec, data: str | Path | None) -> None:
    """Offline algorithms need ``--data``; online ones must not get it."""
    offline = policy.algorithm in OFFLINE_ALGORITHMS
    if offline and data is None:
        raise SpecError(
            f"{policy.algorithm} learns from logs: pass --data DIR (a `rayrec collect` folder)"
        )
    if not offline and data is not None:
        raise SpecError(
            f"--data is for offline algorithms ({', '.join(OFFLINE_ALGORITHMS)}), "
            f"not {policy.algorithm}"
        )


def build_config(
    env: EnvSpec, policy: PolicySpec, seed: int = 0, data: str | Path | None = None
) -> Any:
    """The RLlib AlgorithmConfig for ``env`` x ``policy`` (seeded); offline ones read ``data``."""
    from ray.tune.registry import register_env

    if env.id == MARKETPLACE_ENV_ID:  # multi-agent marketplace (issue #10): its own builder
        from rayrec.envs.marketplace.training import build_marketplace_config

        check_data(policy, data)
        return build_marketplace_config(env, policy, seed)

    validate_sections(policy)
    check_data(policy, data)
    if policy.levels is not None:  # two-level agent on HierarchicalSessionEnv (issue #11)
        from rayrec.algorithms.hierarchical import build_hierarchical_config

        return build_hierarchical_config(env, policy, seed)
    register_env(RLLIB_ENV_NAME, make_vector_env)
    config = _algorithm_config_class(policy.algorithm)()
    config.environment(RLLIB_ENV_NAME, env_config=env.to_dict())
    config.env_runners(gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT)
    if data is not None:
        from rayrec.data.offline import configure_offline

        configure_offline(config, data, env)
    apply_sections(config, policy)
    config.rl_module(rl_module_spec=module_spec(policy))
    if policy.apex is not None:
        from rayrec.algorithms.apex import ApexEnvRunner

        config.env_runners(env_runner_cls=ApexEnvRunner)
    elif data is None:
        from rayrec.envs.vector_runner import VectorEnvRunner

        config.env_runners(env_runner_cls=VectorEnvRunner)
    if data is None:
        from rayrec.algorithms.replay import configure_fast_replay

        configure_fast_replay(config, seed)
    return seeded_and_validated(config, seed)


def seeded_and_validated(config: Any, seed: int) -> Any:
    """Seed ``config`` and run RLlib's validation, its errors as one SpecError line."""
    config.debugging(seed=seed)
    try:
        config.validate()
    except (TypeError, ValueError) as e:
        raise SpecError(f"policy spec: RLlib rejected the configuration: {e}") from e
    return config


def learner_devices(algo: Any) -> list[str]:
    """The torch device of each learner's default module (``"cpu"``, ``"cuda:0"``, ...).

    RLlib returns a learner call's results as RemoteCallResults for local and remote learners
    alike; an error on a learner is raised here.
    """
    from ray.rllib.core import DEFAULT_MODULE_ID

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
    (:mod:`rayrec.envs.vector_runner`), as the baseline."""
    config = build_config(env, policy)
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


class ModulePolicy:
    """A trained RLModule as an evaluation policy: greedy over its masked logits or Q-values
    (``greedy=False`` samples from the softmax of the logits instead)."""

    def __init__(self, module: Any, name: str = "policy", greedy: bool = True, seed: int = 0):
        import torch

        self.module = module
        self.name = name
        self.greedy = greedy
        self._torch = torch
        self._generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> ModulePolicy:
        """Load only the RLModule (no Algorithm, no env runners) from an algorithm checkpoint.

        A relative ``path`` is taken from the working directory (RLlib's loader reads paths as
        URIs and rejects relative ones)."""
        from ray.rllib.core.rl_module.rl_module import RLModule

        path = Path(path).resolve()
        candidates = [
            path / "learner_group" / "learner" / "rl_module" / "default_policy",
            path / "rl_module" / "default_policy",
            path,
        ]
        for candidate in candidates:
            if (candidate / "module_state.pkl").exists() or (candidate / "module_state").exists():
                module = RLModule.from_checkpoint(candidate)
                module.eval()
                return cls(module, **kwargs)
        raise SpecError(f"{path}: not an rayrec/RLlib checkpoint (no RLModule state found)")

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(B, M) masked logits (or Q-values) of the module for a batched observation."""
        torch = self._torch
        from ray.rllib.core.columns import Columns

        batch = {
            Columns.OBS: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in obs.items()}
        }
        with torch.no_grad():
            if hasattr(self.module, "compute_q_values"):
                # Q modules: greedy in the Q-values (masked candidates are -inf).
                return self.module.compute_q_values(batch)["qf_preds"].numpy()
            out = self.module.forward_inference(batch)
        return out[Columns.ACTION_DIST_INPUTS].numpy()

    def act(self, obs: dict[str, np.ndarray], sim: Any) -> np.ndarray:
        from rayrec.evaluation import top_k_valid

        logits = self.scores(obs)
        k = sim.config.slate_size
        if self.greedy:
            return top_k_valid(logits, obs[Obs.ACTION_MASK], k)
        torch = self._torch
        probs = torch.softmax(torch.from_numpy(logits), dim=-1)
        picks = torch.multinomial(probs, k, replacement=False, generator=self._generator)
        return picks.numpy()
