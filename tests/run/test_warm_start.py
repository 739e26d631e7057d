"""`rayrec train --init-from CHECKPOINT`: a run starts from another checkpoint's module weights;
an incompatible module is one clear error. `--critic-warmup N`: only the critic learns at first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rayrec.cli import main
from rayrec.evaluation.policies import load_module
from rayrec.experiment import save_untrained_run
from rayrec.run.warm import CRITIC_PREFIXES
from rayrec.specs import EnvSpec, PolicySpec, load_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ENV = str(ROOT / "envs" / "session.yaml")
PPO = str(ROOT / "policies" / "ppo.yaml")
FAST = [
    *("--set", "env_runners.num_envs_per_env_runner=16"),
    *("--set", "training.train_batch_size_per_learner=256"),
    *("--set", "training.minibatch_size=128"),
    *("--set", "training.num_epochs=1"),
]


def _source(tmp_path: Path, preset: str, seed: int) -> Path:
    env = EnvSpec.from_dict(load_yaml(ENV))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / f"{preset}.yaml"))
    return save_untrained_run(tmp_path / preset, env, policy, seed=seed)


def test_a_warm_started_run_begins_with_the_checkpoints_weights(ray_session, tmp_path, capsys):
    source = _source(tmp_path, "ppo", seed=5)
    out = tmp_path / "warm"
    args = ["train", "--env", ENV, "--policy", PPO, "--init-from", str(source)]
    args += ["--iterations", "1", "--out", str(out), "--eval-users", "20", "--quiet", *FAST]
    # lr 0: training leaves the weights where the warm start put them.
    assert main([*args, "--set", "training.lr=0.0"]) == 0
    assert "initialised default_policy from" in capsys.readouterr().err
    given = load_module(source).state_dict()
    trained = load_module(out / "checkpoints" / "final").state_dict()
    assert set(given) <= set(trained)
    for key, value in given.items():
        assert torch.equal(trained[key], value), key
    # A fresh run with the same seed starts elsewhere: the weights above came from the source.
    fresh = tmp_path / "fresh"
    again = ["train", "--env", ENV, "--policy", PPO, "--iterations", "1", "--out", str(fresh)]
    assert main([*again, "--eval-users", "20", "--quiet", *FAST, "--set", "training.lr=0.0"]) == 0
    other = load_module(fresh / "checkpoints" / "final").state_dict()
    assert any(not torch.equal(other[k], given[k]) for k in given)


def test_appo_warm_starts_from_an_appo_checkpoint(ray_session, tmp_path, capsys):
    # A saved module has no target network (APPO's old policy): it is not asked for, and it
    # starts as a copy of the loaded policy. This was refused as "missing _old_towers...".
    source = _source(tmp_path, "appo", seed=3)
    out = tmp_path / "appo_warm"
    args = ["train", "--env", ENV, "--policy", str(ROOT / "policies" / "appo.yaml")]
    args += ["--init-from", str(source), "--iterations", "1", "--out", str(out)]
    assert main([*args, "--eval-users", "20", "--quiet", *FAST, "--set", "training.lr=0.0"]) == 0
    assert "initialised default_policy from" in capsys.readouterr().err
    given = load_module(source).state_dict()
    trained = load_module(out / "checkpoints" / "final").state_dict()
    for key, value in given.items():
        assert torch.equal(trained[key], value), key


def test_an_incompatible_checkpoint_is_one_clear_error(ray_session, tmp_path, capsys):
    source = _source(tmp_path, "apex_dqn", seed=1)  # a Q module into PPO's policy module
    args = ["train", "--env", ENV, "--policy", PPO, "--init-from", str(source)]
    args += ["--iterations", "1", "--out", str(tmp_path / "bad"), "--quiet", *FAST]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rayrec: error: --init-from")
    assert "does not fit this run's" in err[-1]
    capsys.readouterr()
    assert main([*args[:6], str(tmp_path / "nothing"), *args[7:]]) == 2
    assert "--init-from" in capsys.readouterr().err


def test_critic_warmup_holds_the_policy_then_lets_it_learn(ray_session, tmp_path, capsys):
    source = _source(tmp_path, "ppo", seed=5)
    out = tmp_path / "warmup"
    args = ["train", "--env", ENV, "--policy", PPO, "--init-from", str(source)]
    args += ["--critic-warmup", "1", "--iterations", "1", "--out", str(out)]
    assert main([*args, "--eval-users", "20", "--quiet", *FAST]) == 0
    assert "critic warm-up: " in capsys.readouterr().err
    given = load_module(source).state_dict()
    held = load_module(out / "checkpoints" / "final").state_dict()
    policy = [k for k in given if not k.startswith(CRITIC_PREFIXES)]
    critic = [k for k in given if k.startswith(CRITIC_PREFIXES)]
    assert policy and critic
    for key in policy:  # the preset's learning rate, yet the policy did not move
        assert torch.equal(held[key], given[key]), key
    assert any(not torch.equal(held[k], given[k]) for k in critic)
    # Resumed past the warm-up (the saved run keeps it), the policy learns.
    again = ["train", "--resume", "--out", str(out), "--iterations", "2", "--quiet"]
    assert main([*again, "--eval-users", "20"]) == 0
    learnt = load_module(out / "checkpoints" / "final").state_dict()
    assert any(not torch.equal(learnt[k], given[k]) for k in policy)


def test_critic_warmup_without_a_warm_start_is_a_usage_error(tmp_path, capsys):
    args = ["train", "--env", ENV, "--policy", PPO, "--critic-warmup", "5"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert "--critic-warmup needs --init-from" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
