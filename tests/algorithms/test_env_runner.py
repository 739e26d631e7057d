"""VectorEnvRunner returns exactly the episodes and metrics RLlib's own sampling loop returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ray.rllib.callbacks.callbacks import RLlibCallback

from rayrec.algorithms.apex import ApexEnvRunner
from rayrec.algorithms.env_runner import VectorEnvRunner
from rayrec.experiment import build_config
from rayrec.specs import EnvSpec, PolicySpec, apply_overrides, load_yaml

ROOT = Path(__file__).resolve().parents[2]
# Short lifetimes (sessions of at most 4 steps, 2 sessions): many episodes end inside a call and
# some at a call's last step, so every case of the chunk bookkeeping occurs.
SHORT = ["env.max_steps_per_session=4", "env.max_sessions=2", "env.num_items=400"]
CALLS = [29, 40, 16, 33, 50, 8]


class RLlibLoop(VectorEnvRunner):
    """The same runner, forced onto RLlib's own per-env loop."""

    def vectorised_reason(self) -> str | None:
        return "forced"


class ApexRLlibLoop(ApexEnvRunner):
    def vectorised_reason(self) -> str | None:
        return "forced"


class StepCounter(RLlibCallback):
    def on_episode_step(self, *, episode, **kwargs) -> None:
        episode.custom_data["steps"] = episode.custom_data.get("steps", 0) + 1


def _config(policy: str, *overrides: str):
    env_raw, policy_raw = apply_overrides(
        load_yaml(ROOT / "envs" / "session.yaml"),
        load_yaml(ROOT / "policies" / policy),
        ["env_runners.num_envs_per_env_runner=8", *SHORT, *overrides],
    )
    config = build_config(EnvSpec.from_dict(env_raw), PolicySpec.from_dict(policy_raw), seed=5)
    config.env_runners(num_env_runners=0)
    return config


def _sample(cls, config, explore=True):
    runner = cls(config=config)
    try:
        calls, boundary_ends = [], 0
        for n in CALLS:
            calls.append(runner.sample(num_timesteps=n, explore=explore))
            pending = getattr(runner, "_vec_pending", None)
            boundary_ends += int(pending.sum()) if pending is not None else 0
        return calls, runner.get_metrics(), boundary_ends
    finally:
        runner.stop()


def _same_episodes(expected, got) -> None:
    ids: dict[str, str] = {}
    for call, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert len(a) == len(b), call
        for x, y in zip(a, b, strict=True):
            # Chunks of one episode share its id across calls; new episodes get new ids.
            assert ids.setdefault(x.id_, y.id_) == y.id_
            assert (x.t_started, x.t, len(x), x.is_terminated, x.is_truncated) == (
                y.t_started,
                y.t,
                len(y),
                y.is_terminated,
                y.is_truncated,
            )
            assert x.is_numpy and y.is_numpy
            pairs = [(x.observations, y.observations), (x.actions, y.actions)]
            pairs += [(x.rewards, y.rewards), (x.infos, y.infos)]
            assert set(x.extra_model_outputs) == set(y.extra_model_outputs)
            pairs += [
                (x.extra_model_outputs[k], y.extra_model_outputs[k]) for k in x.extra_model_outputs
            ]
            for bx, by in pairs:
                assert bx.lookback == by.lookback
                assert bx.len_incl_lookback() == by.len_incl_lookback()
                if isinstance(bx.data, list):
                    assert bx.data == by.data
                    continue
                left = bx.data if isinstance(bx.data, dict) else {"": bx.data}
                right = by.data if isinstance(by.data, dict) else {"": by.data}
                assert list(left) == list(right)
                for key in left:
                    np.testing.assert_array_equal(left[key], right[key], err_msg=key)
                    assert np.asarray(left[key]).dtype == np.asarray(right[key]).dtype, key
            assert x.get_return() == y.get_return()
            # What RLlib's learner connectors read, through the episode API.
            np.testing.assert_array_equal(
                x.get_observations(-1)["action_mask"], y.get_observations(-1)["action_mask"]
            )
            if len(x):
                np.testing.assert_array_equal(x.get_actions(), y.get_actions())


def _same_metrics(expected, got) -> None:
    keys = ["episode_return_mean", "episode_len_mean", "num_env_steps_sampled_lifetime"]
    keys += ["num_episodes", "num_episodes_lifetime", "episode_return_max"]
    for key in keys:
        assert float(expected[key]) == float(got[key]), key


@pytest.mark.parametrize(
    "policy, overrides",
    [
        ("ppo.yaml", []),
        ("appo.yaml", []),
        ("ppo.yaml", ["env.slate_size=3"]),
    ],
    ids=["ppo", "appo", "ppo-slate"],
)
def test_same_episodes_and_metrics_as_rllibs_loop(policy, overrides):
    config = _config(policy, *overrides)
    fast = VectorEnvRunner(config=config)
    assert fast.vectorised_reason() is None
    fast.stop()
    expected, expected_metrics, _ = _sample(RLlibLoop, config)
    got, metrics, boundary_ends = _sample(VectorEnvRunner, config)
    assert boundary_ends > 0, "no episode ended at a call's last step: pick other CALLS"
    assert sum(e.is_done for call in got for e in call) > 20
    _same_episodes(expected, got)
    _same_metrics(expected_metrics, metrics)


def test_inference_mode_samples_the_same():
    config = _config("ppo.yaml")
    expected, *_ = _sample(RLlibLoop, config, explore=False)
    got, *_ = _sample(VectorEnvRunner, config, explore=False)
    _same_episodes(expected, got)


def test_apex_runner_keeps_its_epsilon_and_samples_the_same():
    config = _config("apex_dqn.yaml", "env_runners.num_env_runners=0")
    expected, expected_metrics, _ = _sample(ApexRLlibLoop, config)
    got, metrics, _ = _sample(ApexEnvRunner, config)
    _same_episodes(expected, got)
    _same_metrics(expected_metrics, metrics)


def test_episode_callbacks_fall_back_to_rllibs_loop():
    config = _config("ppo.yaml")
    config.callbacks(StepCounter)
    runner = VectorEnvRunner(config=config)
    try:
        assert runner.vectorised_reason() == "StepCounter.on_episode_step"
        episodes = runner.sample(num_timesteps=40)
        assert all(e.custom_data.get("steps", 0) == len(e) for e in episodes if e.t_started == 0)
    finally:
        runner.stop()


def test_episode_sampling_after_batched_calls_starts_over_and_batched_calls_resume():
    config = _config("ppo.yaml")
    runner = VectorEnvRunner(config=config)
    try:
        runner.sample(num_timesteps=30)
        # RLlib's loop samples whole episodes from fresh resets.
        episodes = runner.sample(num_episodes=5)
        assert len(episodes) >= 5 and all(e.is_done and e.t_started == 0 for e in episodes)
        chunks = runner.sample(num_timesteps=30)
        assert sum(len(e) for e in chunks) >= 30
        assert all(e.t_started == 0 for e in chunks)  # it reset before going on
        more = runner.sample(num_timesteps=30)
        ongoing = {e.id_ for e in chunks if not e.is_done}
        assert any(e.id_ in ongoing and e.t_started > 0 for e in more)
    finally:
        runner.stop()


@pytest.mark.parametrize("lookback", [0, 2])
def test_other_lookback_horizons_give_the_same_chunks(lookback):
    config = _config("ppo.yaml")
    config.env_runners(episode_lookback_horizon=lookback)
    expected, *_ = _sample(RLlibLoop, config)
    got, *_ = _sample(VectorEnvRunner, config)
    _same_episodes(expected, got)
