"""Experiment specs as data: environment specs (``envs/*.yaml``) and policy specs (``policies/*.yaml``).

Everything here is Ray-free and runs before Ray starts, so a wrong spec fails in a fraction of a
second with one line naming the file and the field.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rayrec.contracts.errors import SpecError
from rayrec.contracts.layout import RunFolder
from rayrec.contracts.model_config import ModelConfig
from rayrec.contracts.observation import HIGH, LOW
from rayrec.envs import SESSION_ENV_ID
from rayrec.envs.hierarchical.config import HierarchyConfig
from rayrec.envs.marketplace import MARKETPLACE_ENV_ID
from rayrec.envs.marketplace.config import MarketplaceConfig, validate_multi_agent
from rayrec.sim import SimConfig

__all__ = [
    "ALGORITHMS",
    "APEX_ALGORITHMS",
    "ENV_IDS",
    "MARKETPLACE_ENV_ID",
    "OFFLINE_ALGORITHMS",
    "RLLIB_SECTIONS",
    "EnvSpec",
    "PolicySpec",
    "SpecError",
    "apply_overrides",
    "load_run_spec",
    "load_yaml",
    "parse_override",
]

ENV_IDS = (SESSION_ENV_ID, MARKETPLACE_ENV_ID)
# Algorithm name -> the rayrec RLModule family it uses.
ALGORITHMS = {
    "PPO": "policy",
    "IMPALA": "policy",
    "APPO": "appo",
    "DQN": "q",
    "QRDQN": "q",
    "SlateQ": "slateq",
    "DiscreteCQL": "q",
    "BC": "policy",
    "MARWIL": "policy",
    "TopKReinforce": "policy",
}
OFFLINE_ALGORITHMS = ("DiscreteCQL", "BC", "MARWIL", "TopKReinforce")
"""Algorithms that learn from logs (``--data``) instead of sampling the environment."""
APEX_ALGORITHMS = ("DQN", "QRDQN")
"""Algorithms that the Ape-X arrangement (the ``apex`` section) applies to."""
# Sections of a policy spec that map one-to-one onto AlgorithmConfig methods of the same name.
RLLIB_SECTIONS = (
    "env_runners",
    "training",
    "learners",
    "resources",
    "fault_tolerance",
    "reporting",
    "debugging",
    "offline_data",
)
_POLICY_KEYS = {
    "algorithm",
    "description",
    "model",
    "stop",
    "evaluation",
    "apex",
    "levels",
    "multi_agent",
    *RLLIB_SECTIONS,
}
_LEVELS = (HIGH, LOW)
_LEVEL_KEYS = ("training", "model")
_STOP_KEYS = {"iterations": int, "time_budget": float, "return": float}
_EVAL_KEYS = {
    "users": int,
    "seed": int,
    "baselines": list,
    "select_every": int,
    "select_users": int,
}
_APEX_KEYS = {"epsilon": float, "alpha": float}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(f"{p}: not valid YAML{where}") from e
    if not isinstance(data, dict):
        raise SpecError(f"{p}: must hold a mapping of keys to values")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value parsed as a YAML scalar)."""
    if "=" not in text:
        raise SpecError(f"--set {text!r}: expected KEY=VALUE, e.g. training.lr=0.0005")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise SpecError(f"--set {text!r}: empty part in key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise SpecError(f"--set {text!r}: value is not valid YAML") from e
    return path, value


def apply_overrides(
    env: dict[str, Any], policy: dict[str, Any], overrides: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply ``--set`` overrides: ``env.FIELD=V`` sets a simulator field, anything else the policy."""
    env, policy = copy.deepcopy(env), copy.deepcopy(policy)
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "env":
            if len(path) != 2:
                raise SpecError(f"--set {text!r}: use env.FIELD=VALUE (a simulator field)")
            env.setdefault("config", {})[path[1]] = value
            continue
        node = policy
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError(f"--set {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return env, policy


def _check_world(config: SimConfig, source: str) -> None:
    """A calibrated catalog's dataset is set up and gives the configured sizes: one line now,
    not an error inside every env runner after Ray has started."""
    # Imported here: reading a dataset loads pandas (0.5 s), which synthetic worlds never need.
    from rayrec.datasets.registry import DatasetError
    from rayrec.datasets.worlds import load_world

    try:
        load_world(config.catalog, config.embed_dim, config.num_topics)
    except (DatasetError, ValueError) as e:
        raise SpecError(f"{source}: config.catalog {config.catalog!r}: {e}") from e


@dataclass(frozen=True)
class EnvSpec:
    """An environment spec: a registered id, the simulator configuration and, for scenarios that
    hierarchical agents play, the option layer (``rayrec.envs.hierarchical``)."""

    id: str
    config: SimConfig | MarketplaceConfig
    """SimConfig for the session env; MarketplaceConfig for ``rayrec/Marketplace-v0``."""
    hierarchy: HierarchyConfig | None = None
    """Options and per-level rewards of ``HierarchicalSessionEnv`` on this scenario; flat agents
    (``rayrec train``) ignore it."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "env spec") -> EnvSpec:
        unknown = sorted(set(data) - {"id", "config", "description", "hierarchy"})
        if unknown:
            raise SpecError(
                f"{source}: unknown key(s) {', '.join(unknown)}; known: id, config, hierarchy"
            )
        env_id = data.get("id", SESSION_ENV_ID)
        if env_id not in ENV_IDS:
            raise SpecError(f"{source}: unknown env id {env_id!r}; known: {', '.join(ENV_IDS)}")
        config = _mapping(data, "config", source)
        hierarchy = None
        if data.get("hierarchy") is not None:
            values = _mapping(data, "hierarchy", source)
            hierarchy = _build(HierarchyConfig.from_dict, values, source)
        factory = (
            MarketplaceConfig.from_dict if env_id == MARKETPLACE_ENV_ID else SimConfig.from_dict
        )
        built = _build(factory, config, source)
        if isinstance(built, SimConfig) and built.catalog != "synthetic":
            _check_world(built, source)
        return cls(id=env_id, config=built, hierarchy=hierarchy)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "config": self.config.to_dict()}
        if self.hierarchy is not None:
            out["hierarchy"] = self.hierarchy.to_dict()
        return out


@dataclass(frozen=True)
class PolicySpec:
    """A policy spec: an RLlib algorithm, rayrec's model fields and RLlib config sections."""

    algorithm: str
    model: ModelConfig
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    apex: dict[str, Any] | None = None
    """The Ape-X exploration ladder {epsilon, alpha} (DQN, QRDQN); None: plain DQN exploration."""
    description: str = ""
    levels: dict[str, dict[str, Any]] | None = None
    """Per-level overrides {high, low} -> {training, model} of a hierarchical agent (one policy
    per level of ``HierarchicalSessionEnv``); None: a flat agent."""
    multi_agent: dict[str, Any] | None = None
    """The marketplace's multi-agent setup {shared_within_role, centralized_critic}; None when
    the spec has no ``multi_agent`` section."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "policy spec") -> PolicySpec:
        unknown = sorted(set(data) - _POLICY_KEYS)
        if unknown:
            raise SpecError(
                f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_POLICY_KEYS))}"
            )
        algorithm = data.get("algorithm")
        if algorithm not in ALGORITHMS:
            raise SpecError(
                f"{source}: unknown algorithm {algorithm!r}; supported: {', '.join(ALGORITHMS)}"
            )
        model_config = _build(ModelConfig.from_dict, _mapping(data, "model", source), source)
        sections = {}
        for name in RLLIB_SECTIONS:
            section = data.get(name) or {}
            if not isinstance(section, dict):
                raise SpecError(f"{source}: section {name!r} must be a mapping")
            sections[name] = section
        stop = _typed_section(data.get("stop"), _STOP_KEYS, "stop", source)
        for key in ("iterations", "time_budget"):
            if key in stop and stop[key] is not None and stop[key] <= 0:
                raise SpecError(f"{source}: stop.{key} ({stop[key]}) must be > 0")
        evaluation = _typed_section(data.get("evaluation"), _EVAL_KEYS, "evaluation", source)
        apex = None
        if data.get("apex") is not None:
            if algorithm not in APEX_ALGORITHMS:
                raise SpecError(
                    f"{source}: 'apex' applies to algorithms {', '.join(APEX_ALGORITHMS)} only, "
                    f"not {algorithm}"
                )
            apex = {"epsilon": 0.4, "alpha": 7.0}
            apex.update(_typed_section(data["apex"], _APEX_KEYS, "apex", source))
            # The ranges of rayrec.algorithms.apex.ladder_epsilon (Horgan et al. 2018).
            if not 0.0 < apex["epsilon"] < 1.0:
                raise SpecError(f"{source}: apex.epsilon ({apex['epsilon']}) must be in (0, 1)")
            if apex["alpha"] < 0:
                raise SpecError(f"{source}: apex.alpha ({apex['alpha']}) must be >= 0")
        if evaluation.get("users", 2) < 2:
            raise SpecError(f"{source}: evaluation.users must be >= 2")
        if evaluation.get("select_users", 2) < 2:
            raise SpecError(f"{source}: evaluation.select_users must be >= 2")
        if evaluation.get("select_every", 1) is not None and evaluation.get("select_every", 1) < 1:
            raise SpecError(f"{source}: evaluation.select_every must be >= 1 (iterations)")
        levels = _levels(data.get("levels"), source)
        multi_agent = None
        if "multi_agent" in data:
            try:
                multi_agent = validate_multi_agent(data["multi_agent"], algorithm, source)
            except ValueError as e:
                raise SpecError(str(e)) from e
        return cls(
            algorithm=algorithm,
            model=model_config,
            sections=sections,
            stop=stop,
            evaluation=evaluation,
            apex=apex,
            description=str(data.get("description", "")),
            levels=levels,
            multi_agent=multi_agent,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"algorithm": self.algorithm}
        if self.description:
            out["description"] = self.description
        out["model"] = self.model.to_dict()
        out.update({name: dict(v) for name, v in self.sections.items() if v})
        if self.stop:
            out["stop"] = dict(self.stop)
        if self.evaluation:
            out["evaluation"] = dict(self.evaluation)
        if self.apex is not None:
            out["apex"] = dict(self.apex)
        if self.levels is not None:
            out["levels"] = copy.deepcopy(self.levels)
        if self.multi_agent is not None:
            out["multi_agent"] = dict(self.multi_agent)
        return out


def _levels(value: Any, source: str) -> dict[str, dict[str, Any]] | None:
    """The ``levels`` section: {high, low} -> {training: {...}, model: {...}} (both optional)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError(f"{source}: 'levels' must be a mapping")
    out = {}
    for level, sections in value.items():
        if level not in _LEVELS:
            raise SpecError(f"{source}: unknown level levels.{level}; known: {', '.join(_LEVELS)}")
        sections = sections or {}
        if not isinstance(sections, dict):
            raise SpecError(f"{source}: levels.{level} must be a mapping")
        for key, section in sections.items():
            if key not in _LEVEL_KEYS:
                raise SpecError(
                    f"{source}: unknown key levels.{level}.{key}; known: {', '.join(_LEVEL_KEYS)}"
                )
            if not isinstance(section, dict):
                raise SpecError(f"{source}: levels.{level}.{key} must be a mapping")
        if "model" in sections:
            _build(ModelConfig.from_dict, sections["model"], f"{source}: levels.{level}")
        out[level] = copy.deepcopy(sections)
    return out


def _mapping(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """``data[key]`` as a mapping ({} when absent), or a SpecError naming the key."""
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"{source}: '{key}' must be a mapping")
    return value


def _build(factory: Any, values: dict[str, Any], source: str) -> Any:
    """``factory(values)`` with its validation errors turned into SpecErrors naming ``source``."""
    try:
        return factory(values)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{source}: {e}") from e


def _typed_section(section: Any, types: dict[str, type], name: str, source: str) -> dict[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise SpecError(f"{source}: '{name}' must be a mapping")
    out = {}
    for key, value in section.items():
        if key not in types:
            raise SpecError(
                f"{source}: unknown key {name}.{key}; known: {', '.join(sorted(types))}"
            )
        want = types[key]
        if value is None:
            out[key] = None
            continue
        ok = (
            isinstance(value, want) or (want is float and isinstance(value, int))
        ) and not isinstance(value, bool)
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise SpecError(f"{source}: {name}.{key} must be a {want.__name__}, got {value!r}")
        out[key] = float(value) if want is float else value
    return out


def load_run_spec(run: Path) -> tuple[EnvSpec, PolicySpec, dict[str, Any]]:
    """Rebuild the env spec, policy spec and run options saved in a run folder."""
    path = RunFolder(Path(run)).spec
    data = load_yaml(path)
    for key in ("env", "policy"):
        if not isinstance(data.get(key), dict):
            raise SpecError(f"{path}: missing section {key!r}")
    env = EnvSpec.from_dict(data["env"], f"{path} (env)")
    policy = PolicySpec.from_dict(data["policy"], f"{path} (policy)")
    return env, policy, dict(data.get("run") or {})
