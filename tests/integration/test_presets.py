"""Every algorithm preset trains on local Ray with 2 env runners; Ape-X's ladder; env-runner crashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrec.algorithms import ladder_epsilon
from rayrec.experiment import build_config
from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ["ppo", "impala", "appo", "apex_dqn", "c51", "qr_dqn"]
_SMALL_REPLAY = [
    "training.num_steps_sampled_before_learning_starts=256",
    "training.train_batch_size_per_learner=64",
]
SMALL_BATCH = {
    "ppo": [
        "training.train_batch_size_per_learner=512",
        "training.minibatch_size=128",
        "training.num_epochs=1",
    ],
    "impala": ["training.train_batch_size_per_learner=256"],
    "appo": ["training.train_batch_size_per_learner=256"],
    "apex_dqn": _SMALL_REPLAY,
    "c51": _SMALL_REPLAY,
    "qr_dqn": _SMALL_REPLAY,
    "slateq": _SMALL_REPLAY,
}
# A learner metric that only the algorithm's own loss logs: C51's (RLlib's projected
# cross-entropy), QR-DQN's (rayrec's quantile Huber loss) and SlateQ's (its choice model's
# cross-entropy) really ran.
DISTRIBUTION_METRIC = {"c51": "atoms", "qr_dqn": "qf_quantile_spread", "slateq": "choice_loss"}


def _config(name: str, *overrides: str, env_name: str = "session"):
    env_raw, policy_raw = apply_overrides(
        load_yaml(ROOT / "envs" / f"{env_name}.yaml"),
        load_yaml(ROOT / "policies" / f"{name}.yaml"),
        [
            # Two runners (the APPO preset asks for one CPU each) beside a remote learner fit
            # the session's 2 CPUs at half a CPU each.
            "env_runners.num_env_runners=2",
            "env_runners.num_cpus_per_env_runner=0.5",
            "env_runners.num_envs_per_env_runner=8",
            *SMALL_BATCH[name],
            *overrides,
        ],
    )
    env, policy = EnvSpec.from_dict(env_raw), PolicySpec.from_dict(policy_raw)
    return build_config(env, policy, seed=0), policy


def _trained(result: dict) -> tuple[int, dict[str, float]]:
    """Module steps trained so far and the losses of the default module's last update."""
    stats = result.get("learners", {}).get("default_policy", {})
    losses = {k: float(v) for k, v in stats.items() if "loss" in k and not isinstance(v, dict)}
    return int(stats.get("num_module_steps_trained_lifetime", 0) or 0), losses


@pytest.mark.parametrize(
    ("name", "env_name"),
    [
        *((name, "session") for name in PRESETS),
        # The simulator calibrated from MovieLens-100k (docs/data.md).
        ("ppo", "ml100k"),
        # SlateQ on slates of 3.
        ("slateq", "session-slate"),
    ],
)
def test_preset_trains_two_iterations_with_two_env_runners(ray_session, name, env_name):
    import math

    config, _ = _config(name, env_name=env_name)
    algo = config.build_algo()
    try:
        # Asynchronous algorithms (IMPALA, APPO) may report an iteration before any sampling or
        # learning metrics have arrived, and Ape-X learns only after its warm-up samples: keep
        # iterating (bounded) until the learner has trained on something.
        steps, trained, losses = 0, 0, {}
        while algo.iteration < 2 or (not (steps and trained) and algo.iteration < 20):
            result = algo.train()
            steps = result["env_runners"].get("num_env_steps_sampled_lifetime", 0)
            trained, new_losses = _trained(result)
            losses = new_losses or losses
        assert steps > 0
        assert trained > 0, f"{name}: the learner trained on nothing in {algo.iteration} iterations"
        assert losses and all(math.isfinite(v) for v in losses.values()), losses
        if name in DISTRIBUTION_METRIC:
            stats = result["learners"]["default_policy"]
            assert math.isfinite(float(stats[DISTRIBUTION_METRIC[name]])), sorted(stats)
        assert algo.env_runner_group.num_healthy_remote_workers() == 2
    finally:
        algo.stop()


def test_apex_ladder_differs_per_env_runner(ray_session):
    config, policy = _config("apex_dqn")
    algo = config.build_algo()
    try:
        eps = algo.env_runner_group.foreach_env_runner(
            lambda runner: (runner.worker_index, runner.get_apex_epsilon()),
            local_env_runner=False,
        )
    finally:
        algo.stop()
    expected = {
        i + 1: ladder_epsilon(i, 2, policy.apex["epsilon"], policy.apex["alpha"]) for i in range(2)
    }
    assert dict(eps) == pytest.approx(expected)
    assert expected[1] == pytest.approx(0.4) and expected[2] == pytest.approx(0.4**8)


def test_crashed_env_runner_is_restarted_and_training_completes(ray_session, tmp_path):
    config, _ = _config("ppo", "fault_tolerance.restart_failed_env_runners=true")
    marker = tmp_path / "crashed"
    config.environment(
        env_config={
            **config.env_config,
            "fault_injection": {"marker": str(marker), "after_steps": 20},
        }
    )
    algo = config.build_algo()
    group = algo.env_runner_group
    try:
        # Train on through the crash; RLlib notices the dead runner and restarts it in the
        # background, so allow a bounded number of iterations for that.
        while algo.iteration < 4 or (
            (group.num_remote_worker_restarts() < 1 or group.num_healthy_remote_workers() < 2)
            and algo.iteration < 30
        ):
            result = algo.train()
        assert marker.exists(), "the fault was never injected"
        assert group.num_remote_worker_restarts() >= 1
        assert group.num_healthy_remote_workers() == 2
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] > 0
    finally:
        algo.stop()
