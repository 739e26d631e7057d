"""Algorithms the marketplace env cannot train are refused before Ray starts, naming why."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.experiment.marketplace import build_marketplace_config
from rayrec.specs import EnvSpec, PolicySpec, SpecError, load_yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("preset", "reason"),
    [("qr_dqn", "candidate Q module"), ("cql", "offline"), ("bc", "offline")],
)
def test_refused_algorithms_name_the_reason(preset: str, reason: str) -> None:
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "marketplace.yaml"))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / f"{preset}.yaml"))
    with pytest.raises(SpecError, match=rf"algorithm {policy.algorithm} .*{reason}"):
        build_marketplace_config(env, policy)
