"""Specs as data: loading, overrides, resolution and round trips (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.experiment import validate_sections
from rayrec.specs import (
    ENV_IDS,
    EnvSpec,
    PolicySpec,
    SpecError,
    apply_overrides,
    load_yaml,
    parse_override,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_presets_are_valid(path):
    spec = EnvSpec.from_dict(load_yaml(path), str(path))
    assert spec.id in ENV_IDS
    assert EnvSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, r"ml-100k\.inter is missing; set it up with: make data"),
        ({"embed_dim": 943}, r"embed_dim \(943\) must be in \[1, 942\]"),
    ],
)
def test_a_calibrated_env_without_its_data_is_one_line(tmp_path, monkeypatch, change, message):
    """Before Ray starts, naming the set-up command (an env runner would fail inside RLlib)."""
    raw = load_yaml(ROOT / "envs" / "ml100k.yaml")
    raw["config"].update(change)
    if not change:
        monkeypatch.setenv("RAYREC_DATA", str(tmp_path))
    with pytest.raises(SpecError, match=rf"^ml100k: config\.catalog 'ml-100k': .*{message}"):
        EnvSpec.from_dict(raw, "ml100k")


@pytest.mark.parametrize("path", sorted((ROOT / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_policy_presets_are_valid(path):
    spec = PolicySpec.from_dict(load_yaml(path), str(path))
    validate_sections(spec, str(path))
    assert PolicySpec.from_dict(spec.to_dict()) == spec


def test_overrides_reach_env_and_policy():
    env, policy = apply_overrides(
        {"id": "rayrec/Session-v0", "config": {"num_items": 100}},
        {"algorithm": "PPO"},
        ["env.num_items=200", "training.lr=0.0005", "model.encoder=gru", "stop.iterations=3"],
    )
    assert env["config"]["num_items"] == 200
    assert policy["training"]["lr"] == 0.0005
    assert policy["model"]["encoder"] == "gru"
    spec = PolicySpec.from_dict(policy)
    assert spec.model.encoder == "gru" and spec.stop["iterations"] == 3


def test_override_values_are_yaml_typed():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a.b=3.5") == (["a", "b"], 3.5)
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_override_into_a_scalar_is_rejected():
    with pytest.raises(SpecError, match="not a section"):
        apply_overrides({}, {"algorithm": "PPO", "training": 3}, ["training.lr=1"])


def test_reserved_rllib_keys_are_rejected():
    spec = PolicySpec.from_dict({"algorithm": "PPO", "debugging": {"seed": 3}})
    with pytest.raises(SpecError, match=r"unknown key debugging\.seed"):
        validate_sections(spec)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "rayrec" / "profiles").glob("*.yaml")), ids=lambda p: p.name
)
def test_profiles_apply_to_every_preset(path):
    from rayrec.cli.commands import _profile_overrides

    overrides = _profile_overrides(str(path))
    assert overrides
    for preset in sorted((ROOT / "policies").glob("*.yaml")):
        _, policy = apply_overrides({}, load_yaml(preset), overrides)
        spec = PolicySpec.from_dict(policy, str(preset))
        validate_sections(spec, str(preset))
        assert spec.sections["env_runners"]["num_env_runners"] >= 1


def test_learning_rate_schedule_reaches_rllib():
    from rayrec.experiment import build_config

    env_raw, raw = apply_overrides(
        load_yaml(ROOT / "envs" / "session.yaml"),
        load_yaml(ROOT / "policies" / "apex_dqn.yaml"),
        ["training.lr=[[0, 0.001], [300000, 0.0001]]"],
    )
    config = build_config(EnvSpec.from_dict(env_raw), PolicySpec.from_dict(raw))
    assert config.lr == [[0, 0.001], [300000, 0.0001]]


def test_profiles_by_name_are_the_shipped_ones_unless_the_working_dir_has_its_own(
    tmp_path, monkeypatch
):
    from rayrec.cli.commands import _profile_overrides

    monkeypatch.chdir(tmp_path)  # no profiles/ here: the packaged profile answers
    shipped = _profile_overrides("local")
    assert shipped == _profile_overrides(str(ROOT / "rayrec" / "profiles" / "local.yaml"))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "local.yaml").write_text("env_runners.num_env_runners: 3\n")
    assert _profile_overrides("local") == ["env_runners.num_env_runners=3"]
    with pytest.raises(SpecError, match="no such profile; known: cluster-cpu, cluster-gpu, local"):
        _profile_overrides("nope")
