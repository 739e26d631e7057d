"""With num_gpus_per_learner: 1 the learner (and the RLModule it updates) runs on CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

ROOT = Path(__file__).resolve().parents[2]


def test_ppo_learner_runs_on_cuda(ray_session):
    from rayrec.experiment import build_config
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

    env_raw, policy_raw = apply_overrides(
        load_yaml(ROOT / "envs" / "session.yaml"),
        load_yaml(ROOT / "policies" / "ppo.yaml"),
        [
            "learners.num_learners=1",
            "learners.num_gpus_per_learner=1",
            "training.train_batch_size_per_learner=512",
            "training.minibatch_size=128",
        ],
    )
    config = build_config(EnvSpec.from_dict(env_raw), PolicySpec.from_dict(policy_raw))
    algo = config.build_algo()
    try:
        result = algo.train()
        devices = algo.learner_group.foreach_learner(
            lambda learner: str(next(learner.module["default_policy"].parameters()).device)
        )
        assert all(d.startswith("cuda") for d in devices), devices
        assert result["learners"]["default_policy"]["num_module_steps_trained"] > 0
    finally:
        algo.stop()
