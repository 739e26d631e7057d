"""Search-space files (``tune/*.yaml``): a small grammar over Ray Tune's search space objects.

A space file names hyperparameters by the spec paths that ``--set`` uses and gives each one a
distribution, written as a mapping with a single key::

    description: PPO learning rate and model width under ASHA.
    metric: eval/return_mean        # default; any rayrec.contracts.keys.TrialMetrics name
    mode: max                       # max | min
    samples: 8                      # trials to sample (the grid is repeated this many times)
    scheduler: {type: asha, grace_period: 2, reduction_factor: 2}
    trial:
      iterations: 20                # training iterations per trial (ASHA's max_t)
      eval_users: 500               # simulated users in each report's evaluation
      set:                          # how each trial runs (SECTION.KEY: value, like --set)
        env_runners.num_env_runners: 0
    space:
      training.lr: {loguniform: [1.0e-5, 1.0e-2]}
      model.hidden: {choice: [32, 64, 128]}

Distributions (each maps onto the Ray Tune function of the same name):

=============================  ================================================================
``{choice: [v1, v2, ...]}``    one of the values, uniformly (``tune.choice``)
``{grid: [v1, v2, ...]}``      every value, once per sample (``tune.grid_search``)
``{uniform: [low, high]}``     a float in [low, high) (``tune.uniform``)
``{loguniform: [low, high]}``  a float, uniform in log space, 0 < low (``tune.loguniform``)
``{randint: [low, high]}``     an integer in [low, high), high excluded (``tune.randint``)
``{quniform: [low, high, q]}`` a float in [low, high], a multiple of q (``tune.quniform``)
=============================  ================================================================

Hyperparameters are ``model.FIELD``, ``apex.FIELD`` (Ape-X DQN) or ``SECTION.KEY`` of an RLlib
section of the policy spec (``training.lr``, ``env_runners.num_envs_per_env_runner``, ...); the
environment is fixed for a sweep. Schedulers: ``fifo`` (every trial runs to the end), ``asha``
(``grace_period``, ``reduction_factor``: early stopping of poor trials) and ``pbt``
(``perturbation_interval``, ``quantile_fraction``, ``resample_probability``, ``synch``):
population based training, whose mutations resample or perturb each hyperparameter within its
own distribution. ``trial`` takes ``iterations``, ``eval_users``, ``eval_seed``, ``seed``,
``max_failures``, ``max_concurrent`` and ``set`` (see :class:`TrialSpec`).

Everything here runs before Ray starts: a bad space fails in seconds with one line naming the
file and the field.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from rayrec.contracts.errors import SpecError
from rayrec.contracts.keys import TrialMetrics
from rayrec.contracts.model_config import ModelConfig
from rayrec.experiment import algorithm_config_class, validate_sections
from rayrec.specs import RLLIB_SECTIONS, EnvSpec, PolicySpec

__all__ = [
    "DISTRIBUTIONS",
    "SCHEDULERS",
    "Param",
    "SchedulerSpec",
    "SweepSpec",
    "TrialSpec",
    "apply_params",
]

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")
SCHEDULERS = ("fifo", "asha", "pbt")
_LISTS = ("choice", "grid")
_RANGE_ARGS = {"uniform": 2, "loguniform": 2, "randint": 2, "quniform": 3}
_SWEEP_KEYS = ("description", "metric", "mode", "samples", "scheduler", "trial", "space")
_SCHEDULER_KEYS = {
    "fifo": {},
    "asha": {"grace_period": int, "reduction_factor": float},
    "pbt": {
        "perturbation_interval": int,
        "quantile_fraction": float,
        "resample_probability": float,
        "synch": bool,
    },
}
_TRIAL_KEYS = {
    "iterations": int,
    "eval_users": int,
    "eval_seed": int,
    "seed": int,
    "max_failures": int,
    "max_concurrent": int,
    "set": dict,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Param:
    """One hyperparameter of a space: its spec path and its distribution."""

    name: str
    """Spec path, as ``--set`` writes it: ``training.lr``, ``model.hidden``."""
    kind: str
    """One of :data:`DISTRIBUTIONS`."""
    args: tuple[Any, ...]
    """The values (choice, grid) or the bounds: (low, high) or (low, high, q) for quniform."""

    def __post_init__(self) -> None:
        where = f"space.{self.name}"
        if self.kind not in DISTRIBUTIONS:
            raise ValueError(
                f"{where}: unknown distribution {self.kind!r}; known: {', '.join(DISTRIBUTIONS)}"
            )
        if self.kind in _LISTS:
            if not self.args:
                raise ValueError(f"{where}: {self.kind} needs a non-empty list of values")
            return
        want = _RANGE_ARGS[self.kind]
        names = "[low, high, q]" if want == 3 else "[low, high]"
        if len(self.args) != want or not all(_is_number(a) for a in self.args):
            raise ValueError(f"{where}: {self.kind} needs {names} (numbers), got {list(self.args)}")
        low, high = self.args[0], self.args[1]
        if self.kind == "randint" and not all(isinstance(a, int) for a in self.args):
            raise ValueError(f"{where}: randint bounds must be integers, got {list(self.args)}")
        if low >= high:
            raise ValueError(f"{where}: low ({low}) must be < high ({high})")
        if self.kind == "loguniform" and low <= 0:
            raise ValueError(f"{where}: loguniform needs 0 < low, got low={low}")
        if self.kind == "quniform" and not 0 < self.args[2] <= high - low:
            raise ValueError(f"{where}: quniform needs 0 < q <= high - low, got q={self.args[2]}")

    @classmethod
    def from_yaml(cls, name: Any, value: Any) -> Param:
        """From one ``space`` entry: ``name: {DISTRIBUTION: ARGS}``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"space: hyperparameter names must be strings, got {name!r}")
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(
                f"space.{name}: must be a mapping with one key, the distribution, "
                f"e.g. {{loguniform: [1.0e-5, 1.0e-2]}} (known: {', '.join(DISTRIBUTIONS)})"
            )
        ((kind, args),) = value.items()
        if kind in DISTRIBUTIONS and not isinstance(args, list):
            raise ValueError(f"space.{name}: {kind} takes a list, got {args!r}")
        return cls(name=name, kind=str(kind), args=tuple(args) if isinstance(args, list) else ())

    def to_yaml(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.args)}

    def to_tune(self) -> Any:
        """The Ray Tune search space object (a ``Domain``, or a grid-search marker)."""
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def mutation(self) -> Any:
        """What PBT resamples from: the list of values, or the same ``Domain``."""
        return list(self.args) if self.kind in _LISTS else self.to_tune()

    def clip(self, value: Any) -> Any:
        """``value`` (a PBT perturbation) brought back into this distribution's range."""
        if self.kind in _LISTS:
            return value
        low, high = self.args[0], self.args[1]
        if self.kind == "randint":
            return int(min(max(round(value), low), high - 1))
        value = float(min(max(value, low), high))
        if self.kind == "quniform":
            q = self.args[2]
            value = min(max(round(value / q) * q, low), high)
        return value

    def extremes(self) -> list[Any]:
        """Values that span the distribution: checked against the policy spec before Ray."""
        if self.kind in _LISTS:
            return list(self.args)
        low, high = self.args[0], self.args[1]
        return [low, high - 1] if self.kind == "randint" else [float(low), float(high)]

    @property
    def gives_floats(self) -> bool:
        """True for the continuous distributions: their samples are floats, never integers."""
        return self.kind in ("uniform", "loguniform", "quniform")


@dataclass(frozen=True)
class SchedulerSpec:
    """The ``scheduler`` section: which Tune scheduler and its settings."""

    type: str = "fifo"
    """One of :data:`SCHEDULERS`."""
    grace_period: int = 1
    """ASHA: iterations every trial runs before it can be stopped."""
    reduction_factor: float = 2.0
    """ASHA: at each rung, only the top 1/reduction_factor of trials continue."""
    perturbation_interval: int = 2
    """PBT: iterations between exploit/explore steps."""
    quantile_fraction: float = 0.25
    """PBT: the bottom fraction copies the top fraction's checkpoints."""
    resample_probability: float = 0.25
    """PBT: probability of resampling a hyperparameter instead of perturbing it."""
    synch: bool = False
    """PBT: perturb the whole population at once, every trial waiting at each interval."""

    def __post_init__(self) -> None:
        if self.type not in SCHEDULERS:
            raise ValueError(
                f"scheduler.type ({self.type!r}) must be one of {', '.join(SCHEDULERS)}"
            )
        if self.grace_period < 1:
            raise ValueError(f"scheduler.grace_period ({self.grace_period}) must be >= 1")
        if self.reduction_factor <= 1:
            raise ValueError(f"scheduler.reduction_factor ({self.reduction_factor}) must be > 1")
        if self.perturbation_interval < 1:
            raise ValueError(
                f"scheduler.perturbation_interval ({self.perturbation_interval}) must be >= 1"
            )
        if not 0 < self.quantile_fraction <= 0.5:
            raise ValueError(
                f"scheduler.quantile_fraction ({self.quantile_fraction}) must be in (0, 0.5]"
            )
        if not 0 <= self.resample_probability <= 1:
            raise ValueError(
                f"scheduler.resample_probability ({self.resample_probability}) must be in [0, 1]"
            )

    def build(self, params: tuple[Param, ...], max_t: int) -> Any:
        """The Tune scheduler (metric and mode come from the TuneConfig)."""
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

        from rayrec.tuning.schedulers import FinalIterationPBT

        if self.type == "asha":
            return ASHAScheduler(
                time_attr=TrialMetrics.ITERATION,
                max_t=max_t,
                grace_period=self.grace_period,
                reduction_factor=self.reduction_factor,
            )
        if self.type == "pbt":
            return FinalIterationPBT(
                max_t=max_t,
                time_attr=TrialMetrics.ITERATION,
                perturbation_interval=self.perturbation_interval,
                quantile_fraction=self.quantile_fraction,
                resample_probability=self.resample_probability,
                hyperparam_mutations={p.name: p.mutation() for p in params},
                custom_explore_fn=_ClipToSpace(params),
                synch=self.synch,
            )
        return FIFOScheduler()


class _ClipToSpace:
    """PBT's perturbations (x 0.8, x 1.2) keep each hyperparameter inside its own space."""

    def __init__(self, params: tuple[Param, ...]) -> None:
        self.params = params

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for p in self.params:
            if p.name in config:
                config[p.name] = p.clip(config[p.name])
        return config


@dataclass(frozen=True)
class TrialSpec:
    """The ``trial`` section: how long each trial trains, how it is evaluated and laid out."""

    iterations: int = 10
    """Training iterations per trial (ASHA's max_t)."""
    eval_users: int = 500
    """Simulated user lifetimes in the evaluation at every report."""
    eval_seed: int = 12345
    """Seed of the evaluation users: every trial and iteration sees the same users."""
    seed: int = 0
    """Trial i (in creation order) trains with seed + i."""
    max_failures: int = 2
    """Restarts of a failed trial from its latest checkpoint (Tune's FailureConfig)."""
    max_concurrent: int = 0
    """Trials running at once; 0: as many as the resources allow."""
    set: dict[str, Any] = field(default_factory=dict)
    """``SECTION.KEY: value`` policy overrides for the trials only (resources, layout); the
    command line's ``--profile`` and ``--set`` win over them, and best.yaml does not keep them."""

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"trial.iterations ({self.iterations}) must be >= 1")
        if self.eval_users < 2:
            raise ValueError(f"trial.eval_users ({self.eval_users}) must be >= 2")
        if self.max_failures < 0:
            raise ValueError(f"trial.max_failures ({self.max_failures}) must be >= 0")
        if self.max_concurrent < 0:
            raise ValueError(f"trial.max_concurrent ({self.max_concurrent}) must be >= 0")
        for key in self.set:
            if not isinstance(key, str) or key.split(".")[0] not in RLLIB_SECTIONS:
                raise ValueError(
                    f"trial.set: keys must be SECTION.KEY with SECTION one of "
                    f"{', '.join(RLLIB_SECTIONS)}, got {key!r}"
                )


@dataclass(frozen=True)
class SweepSpec:
    """A search-space file: hyperparameters, metric, scheduler and trial settings."""

    params: tuple[Param, ...]
    """The hyperparameters, in file order."""
    metric: str = TrialMetrics.EVAL_RETURN
    """What the scheduler and the choice of the best trial optimise (TrialMetrics.names())."""
    mode: str = "max"
    """'max' or 'min'."""
    samples: int = 1
    """Trials sampled from the space (a grid is repeated this many times)."""
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    trial: TrialSpec = field(default_factory=TrialSpec)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.params:
            raise ValueError("space: needs at least one hyperparameter")
        if self.metric not in TrialMetrics.names():
            raise ValueError(
                f"metric {self.metric!r} is not reported by trials; "
                f"known: {', '.join(TrialMetrics.names())}"
            )
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode ({self.mode!r}) must be 'max' or 'min'")
        if self.samples < 1:
            raise ValueError(f"samples ({self.samples}) must be >= 1")
        if self.scheduler.type == "asha" and self.scheduler.grace_period > self.trial.iterations:
            raise ValueError(
                f"scheduler.grace_period ({self.scheduler.grace_period}) must be <= "
                f"trial.iterations ({self.trial.iterations})"
            )
        if self.scheduler.type == "pbt":
            for p in self.params:
                if p.name.split(".")[0] == "model":
                    raise ValueError(
                        f"space.{p.name}: PBT cannot mutate the model's architecture (a copied "
                        "checkpoint's weights must fit); sweep it with fifo or asha"
                    )
        for p in self.params:
            if p.name in self.trial.set:
                raise ValueError(f"space.{p.name}: also fixed in trial.set; keep one")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "space file") -> SweepSpec:
        unknown = sorted(str(k) for k in set(data) - set(_SWEEP_KEYS))
        if unknown:
            raise SpecError(
                f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_SWEEP_KEYS)}"
            )
        space = data.get("space")
        if not isinstance(space, dict) or not space:
            raise SpecError(f"{source}: 'space' must map hyperparameters to distributions")
        scheduler = _section(data.get("scheduler"), "scheduler", source)
        kind = scheduler.pop("type", "fifo")
        if kind not in SCHEDULERS:
            raise SpecError(
                f"{source}: scheduler.type ({kind!r}) must be one of {', '.join(SCHEDULERS)}"
            )
        trial = _section(data.get("trial"), "trial", source)
        top = {k: data[k] for k in ("metric", "mode", "description") if k in data}
        for key in ("metric", "mode", "description"):
            if key in top and not isinstance(top[key], str):
                raise SpecError(f"{source}: {key} must be a string, got {top[key]!r}")
        if "samples" in data:
            top["samples"] = _typed(data["samples"], int, "samples", source)
        try:
            return cls(
                params=tuple(Param.from_yaml(k, v) for k, v in space.items()),
                scheduler=SchedulerSpec(
                    type=kind, **_typed_keys(scheduler, _SCHEDULER_KEYS[kind], "scheduler", source)
                ),
                trial=TrialSpec(**_typed_keys(trial, _TRIAL_KEYS, "trial", source)),
                **top,
            )
        except ValueError as e:
            raise SpecError(f"{source}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        scheduler: dict[str, Any] = {"type": self.scheduler.type}
        for key in _SCHEDULER_KEYS[self.scheduler.type]:
            scheduler[key] = getattr(self.scheduler, key)
        trial = {key: getattr(self.trial, key) for key in _TRIAL_KEYS}
        return {
            "description": self.description,
            "metric": self.metric,
            "mode": self.mode,
            "samples": self.samples,
            "scheduler": scheduler,
            "trial": trial,
            "space": {p.name: p.to_yaml() for p in self.params},
        }

    @property
    def num_trials(self) -> int:
        """Trials of the sweep: samples x the size of every grid."""
        return self.samples * math.prod(len(p.args) for p in self.params if p.kind == "grid")

    def param_space(self) -> dict[str, Any]:
        """Tune's ``param_space``: spec path -> search space object."""
        return {p.name: p.to_tune() for p in self.params}

    def validate(self, env: dict[str, Any], policy: dict[str, Any], source: str) -> None:
        """Check every hyperparameter name and the extremes of its values against the policy.

        ``policy`` is the raw policy spec with the command line's overrides; each extreme value
        is checked with the others at the policy's own values (no Ray started).
        """
        EnvSpec.from_dict(env, f"{source} (env)")
        policy_sections = set(RLLIB_SECTIONS) | {"model"}
        if policy.get("apex") is not None:
            policy_sections.add("apex")
        for p in self.params:
            parts = p.name.split(".")
            if parts[0] == "env":
                raise SpecError(
                    f"{source}: space.{p.name}: a sweep keeps the environment fixed "
                    "(change it with --set env.FIELD=VALUE)"
                )
            if len(parts) != 2 or parts[0] not in policy_sections or not all(parts):
                raise SpecError(
                    f"{source}: unknown hyperparameter {p.name!r}; use SECTION.KEY with SECTION "
                    f"one of {', '.join(sorted(policy_sections))}"
                )
        _check(policy, dict(self.trial.set), f"{source}: trial.set")
        for p in self.params:
            where = f"{source}: space.{p.name}"
            if p.gives_floats and _takes_int(policy, p.name):
                raise SpecError(
                    f"{where}: {p.kind} gives floats but {p.name} takes integers; "
                    "use randint, choice or grid"
                )
            for value in p.extremes():
                _check(policy, {p.name: value}, where)


def _check(policy: dict[str, Any], values: dict[str, Any], source: str) -> None:
    spec = PolicySpec.from_dict(apply_params(policy, values), source)
    validate_sections(spec, source)


def _takes_int(policy: dict[str, Any], name: str) -> bool:
    """Whether the spec field ``name`` holds an integer (model widths, RLlib int settings)."""
    section, key = name.split(".", 1)
    if section == "model":
        current = getattr(ModelConfig(), key, None)
    elif section == "apex":
        current = None
    else:
        current = getattr(algorithm_config_class(policy["algorithm"])(), key, None)
    return isinstance(current, int) and not isinstance(current, bool)


def apply_params(policy: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw policy spec with ``{"section.key": value}`` set (values kept as typed)."""
    out = copy.deepcopy(policy)
    for name, value in values.items():
        section, key = name.split(".", 1)
        node = out.get(section)
        if not isinstance(node, dict):
            node = out[section] = {}
        node[key] = value
    return out


def _section(value: Any, name: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{source}: '{name}' must be a mapping")
    return dict(value)


def _typed(value: Any, want: type, name: str, source: str) -> Any:
    ok = isinstance(value, want) or (want is float and _is_number(value))
    if not ok or (isinstance(value, bool) and want is not bool):
        raise SpecError(f"{source}: {name} must be a {want.__name__}, got {value!r}")
    return float(value) if want is float else value


def _typed_keys(
    values: dict[str, Any], types: dict[str, type], name: str, source: str
) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if key not in types:
            known = ", ".join(sorted(types)) or "(none)"
            raise SpecError(f"{source}: unknown key {name}.{key}; known: {known}")
        out[key] = _typed(value, types[key], f"{name}.{key}", source)
    return out
