"""With num_gpus_per_learner: 1 the learner (and the RLModule it updates) runs on CUDA.

One case per online preset, with the cluster-gpu profile's learner settings: the learner's module
must sit on a CUDA device and must have trained (the asynchronous presets and Ape-X's replay
start updating after a few iterations, so each case trains until the learner reports steps).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

ROOT = Path(__file__).resolve().parents[2]

# Small batches so that each case trains within seconds; Ape-X learns from its 200th step.
_OVERRIDES = {
    "ppo": ["training.train_batch_size_per_learner=512", "training.minibatch_size=128"],
    "appo": ["training.train_batch_size_per_learner=256"],
    "impala": ["training.train_batch_size_per_learner=256"],
    "apex_dqn": ["training.num_steps_sampled_before_learning_starts=200"],
}


@pytest.mark.parametrize("preset", sorted(_OVERRIDES))
def test_learner_runs_on_cuda(ray_session, preset: str) -> None:
    from rayrec.experiment import build_config, learner_devices
    from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

    env_raw, policy_raw = apply_overrides(
        load_yaml(ROOT / "envs" / "session.yaml"),
        load_yaml(ROOT / "policies" / f"{preset}.yaml"),
        ["learners.num_learners=1", "learners.num_gpus_per_learner=1", *_OVERRIDES[preset]],
    )
    config = build_config(EnvSpec.from_dict(env_raw), PolicySpec.from_dict(policy_raw))
    algo = config.build_algo()
    try:
        trained = 0
        for _ in range(20):
            result = algo.train()
            stats = result.get("learners", {}).get("default_policy", {})
            trained += stats.get("num_module_steps_trained", 0)
            if trained > 0:
                break
        devices = learner_devices(algo)
        assert all(d.startswith("cuda") for d in devices), devices
        assert trained > 0, result.get("learners")
    finally:
        algo.stop()
