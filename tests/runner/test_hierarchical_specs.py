"""The hierarchical scenario and presets as specs: the hierarchy section and per-level overrides
(no Ray started). What `rayrec train` builds from them: tests/algorithms/test_hierarchical.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.contracts.errors import SpecError
from rayrec.envs.hierarchical import HierarchicalSessionEnv, HierarchyConfig
from rayrec.experiment import validate_sections
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_scenario_carries_a_hierarchy_that_builds_the_env() -> None:
    spec = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "hierarchical.yaml"))
    assert isinstance(spec.hierarchy, HierarchyConfig)
    env = HierarchicalSessionEnv({**spec.config.to_dict(), "hierarchy": spec.hierarchy})
    assert env.config == spec.config and env.hierarchy == spec.hierarchy
    assert EnvSpec.from_dict(spec.to_dict()) == spec


def test_a_bad_hierarchy_field_is_named() -> None:
    with pytest.raises(SpecError, match="option_budget"):
        EnvSpec.from_dict({"hierarchy": {"option_budget": 0}}, "x.yaml")


def test_the_hierarchical_preset_has_a_discount_per_level() -> None:
    spec = PolicySpec.from_dict(load_yaml(ROOT / "policies" / "hierarchical_ppo.yaml"))
    assert spec.levels is not None
    assert spec.levels["high"]["training"]["gamma"] != spec.levels["low"]["training"]["gamma"]
    assert PolicySpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("levels", "match"),
    [
        pytest.param({"middle": {}}, r"levels\.middle", id="unknown-level"),
        pytest.param({"high": {"optim": {}}}, r"levels\.high\.optim", id="unknown-key"),
        pytest.param({"low": {"model": {"encoder": 3, "depth": 2}}}, "depth", id="bad-model"),
    ],
)
def test_bad_levels_are_named(levels: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        PolicySpec.from_dict({"algorithm": "PPO", "levels": levels})


def test_per_level_training_keys_are_checked() -> None:
    spec = PolicySpec.from_dict({"algorithm": "PPO", "levels": {"high": {"training": {"gama": 1}}}})
    with pytest.raises(SpecError, match="gama"):
        validate_sections(spec)
