"""save_untrained_run builds the module training would build, for every value-based head."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.rllib.core.rl_module.rl_module import RLModule

from rayrec.experiment import save_untrained_run
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("preset", "atoms", "quantiles"), [("apex_dqn", 1, 0), ("c51", 51, 0), ("qr_dqn", 1, 51)]
)
def test_distributional_heads_reach_the_saved_module(tmp_path, preset, atoms, quantiles) -> None:
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml"))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / f"{preset}.yaml"))
    checkpoint = save_untrained_run(tmp_path / preset, env, policy, seed=0)
    module = RLModule.from_checkpoint(checkpoint)
    assert (module.num_atoms, module.num_quantiles) == (atoms, quantiles)
