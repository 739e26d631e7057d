"""A policy spec's RLlib sections, checked and applied with as little code as possible.

Each section ``name: {key: value}`` becomes ``config.name(key=value, ...)``, after checking every
key against the parameters of that method (over the algorithm's class hierarchy) and every value's
type against the config's current default: no shadow copy of RLlib's parameters.
"""

from __future__ import annotations

import inspect
import itertools
import math
from pathlib import Path
from typing import Any

from rayrec.specs import OFFLINE_ALGORITHMS, PolicySpec, SpecError

__all__ = [
    "algorithm_config_class",
    "apply_sections",
    "check_data",
    "seeded_and_validated",
    "validate_sections",
]


def algorithm_config_class(algorithm: str) -> type:
    from ray.rllib.algorithms.registry import ALGORITHMS as RLLIB_ALGORITHMS

    if algorithm == "DiscreteCQL":
        from rayrec.algorithms.cql import DiscreteCQLConfig

        return DiscreteCQLConfig
    if algorithm == "QRDQN":
        from rayrec.algorithms.qr_dqn import QRDQNConfig

        return QRDQNConfig
    if algorithm == "SlateQ":
        from rayrec.algorithms.slateq import SlateQConfig

        return SlateQConfig
    if algorithm == "TopKReinforce":
        from rayrec.algorithms.topk_reinforce import TopKReinforceConfig

        return TopKReinforceConfig

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
    cls = algorithm_config_class(policy.algorithm)
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


def seeded_and_validated(config: Any, seed: int) -> Any:
    """Seed ``config`` and run RLlib's validation, its errors as one SpecError line."""
    config.debugging(seed=seed)
    try:
        config.validate()
    except (TypeError, ValueError) as e:
        # RLlib's messages end with a second line on how to switch validation off: not for a spec.
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SpecError(f"policy spec: RLlib rejected the configuration: {first}") from e
    return config
