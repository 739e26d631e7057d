"""Every ModelConfig field set with --set model.X=V reaches spec.yaml and the built module."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from rayrec.contracts.model_config import ModelConfig
from rayrec.envs.observation import action_space, observation_space
from rayrec.experiment import module_spec
from rayrec.experiment.hierarchical import level_model_config
from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

ROOT = Path(__file__).resolve().parents[2]
# A value other than the default for every field (a new field must be added here).
CHANGED = {
    "encoder": "gru",
    "hidden": 24,
    "scorer": "mlp",
    "value_hidden": 40,
    "candidate_context": True,
    "separate_critic": True,
    "relations": True,
}


def test_every_field_has_a_changed_value():
    assert set(CHANGED) == {f.name for f in dataclasses.fields(ModelConfig)}
    for name, value in CHANGED.items():
        assert getattr(ModelConfig(), name) != value, name


@pytest.mark.parametrize("preset", ["ppo", "appo", "apex_dqn"])
@pytest.mark.parametrize("field", sorted(CHANGED))
def test_a_model_override_reaches_spec_yaml_and_the_module(preset, field):
    value = CHANGED[field]
    env_raw, policy_raw = apply_overrides(
        load_yaml(ROOT / "envs" / "session.yaml"),
        load_yaml(ROOT / "policies" / f"{preset}.yaml"),
        [f"model.{field}={yaml.safe_dump(value).splitlines()[0]}"],
    )
    env, policy = EnvSpec.from_dict(env_raw), PolicySpec.from_dict(policy_raw)
    saved = yaml.safe_load(yaml.safe_dump(policy.to_dict()))  # what spec.yaml holds
    assert saved["model"][field] == value
    assert PolicySpec.from_dict(saved).model == policy.model  # and it rebuilds the same
    spec = module_spec(policy)
    spec.observation_space = observation_space(env.config)
    spec.action_space = action_space(env.config)
    module = spec.build()
    assert module.model_config[field] == value
    assert getattr(module.rayrec_config, field) == value


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_a_level_model_inherits_every_field_and_overrides_its_own(field):
    raw = load_yaml(ROOT / "policies" / "hierarchical_ppo.yaml")
    _, raw = apply_overrides(
        {}, raw, [f"model.{field}={yaml.safe_dump(CHANGED[field]).split()[0]}"]
    )
    policy = PolicySpec.from_dict(raw)
    for level in ("high", "low"):
        config = level_model_config(policy, level)
        assert set(config) == set(CHANGED)
        own = (policy.levels or {}).get(level, {}).get("model", {})
        assert config[field] == own.get(field, CHANGED[field])
