"""`rayrec train` end to end on local Ray: run folder, evaluate from checkpoint, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rayrec.cli import main
from rayrec.contracts.keys import Metrics
from rayrec.specs import load_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ENV = str(ROOT / "envs" / "session.yaml")
PPO = str(ROOT / "policies" / "ppo.yaml")
# Small iterations so an integration test takes seconds, not minutes.
FAST = [
    "--set",
    "env_runners.num_envs_per_env_runner=16",
    "--set",
    "training.train_batch_size_per_learner=512",
    "--set",
    "training.minibatch_size=128",
    "--set",
    "training.num_epochs=1",
]


@pytest.fixture(scope="module")
def trained_run(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ppo"
    code = main(
        [
            "train",
            "--env",
            ENV,
            "--policy",
            PPO,
            "--iterations",
            "2",
            "--out",
            str(out),
            "--eval-users",
            "200",
            "--checkpoint-every",
            "1",
            "--quiet",
            *FAST,
        ]
    )
    assert code == 0
    return out


def test_run_folder_layout(trained_run):
    for name in ("spec.yaml", "metrics.jsonl", "learning_curve.png", "results.json"):
        assert (trained_run / name).is_file(), name
    for name in ("latest", "best", "final"):
        assert (trained_run / "checkpoints" / name / "rllib_checkpoint.json").is_file(), name
    assert any((trained_run / "tensorboard").iterdir())
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert rows[1]["env_steps"] > rows[0]["env_steps"] > 0


def test_results_json_contract(trained_run):
    results = json.loads((trained_run / "results.json").read_text())
    # The preset's evaluation.baselines, in its order.
    assert list(results["baselines"]) == load_yaml(PPO)["evaluation"]["baselines"]
    for metrics in [results["policy"], *results["baselines"].values()]:
        for key in Metrics.REQUIRED:
            assert isinstance(metrics[key], float), key
        assert metrics[Metrics.USERS] == 200
    assert results["training"]["iterations"] == 2


def test_spec_saved_rebuilds_the_run(trained_run):
    from rayrec.experiment import build_config
    from rayrec.specs import load_run_spec

    env, policy, run = load_run_spec(trained_run)
    assert env.config.num_candidates == 20
    assert policy.sections["training"]["train_batch_size_per_learner"] == 512
    assert run["seed"] == 0
    config = build_config(env, policy, seed=run["seed"])
    assert config.train_batch_size_per_learner == 512


def test_evaluate_reproduces_the_table(trained_run, capsys):
    capsys.readouterr()
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(trained_run / "checkpoints" / "final"),
            "--users",
            "200",
            "--json",
        ]
    )
    assert code == 0
    again = json.loads(capsys.readouterr().out)
    saved = json.loads((trained_run / "results.json").read_text())
    assert again["policy"] == saved["policy"]
    assert again["baselines"] == saved["baselines"]


def test_killed_run_resumes_from_last_checkpoint(ray_session, tmp_path):
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "rayrec.cli",
        "train",
        "--env",
        ENV,
        "--policy",
        PPO,
        "--iterations",
        "40",
        "--checkpoint-every",
        "1",
        "--out",
        str(out),
        "--quiet",
        *FAST,
    ]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            lines = metrics.read_text().splitlines() if metrics.exists() else []
            if len(lines) >= 3 and (out / "checkpoints" / "latest").is_dir():
                break
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("training did not reach 3 iterations in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    ckpt = out / "checkpoints" / "latest"
    if not ckpt.is_dir():
        ckpt = out / "checkpoints" / "latest.old"
    # A complete checkpoint survived the kill: RLlib's metadata and rayrec's progress sidecar.
    assert json.loads((ckpt / "rllib_checkpoint.json").read_text())
    saved_at = json.loads((ckpt / "rayrec_progress.json").read_text())["iteration"]
    before = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    assert not (out / "results.json").exists()

    code = main(
        [
            "train",
            "--out",
            str(out),
            "--resume",
            "--iterations",
            str(len(before) + 1),
            "--eval-users",
            "50",
            "--quiet",
        ]
    )
    assert code == 0
    after = [json.loads(line) for line in metrics.read_text().splitlines()]
    iterations = [r["iteration"] for r in after]
    assert iterations == list(range(1, len(before) + 2)), iterations
    # The rows up to the checkpoint are kept as they were; the resumed iterations carry on from
    # the checkpoint's counters (env steps grow from its row, not from zero).
    assert after[:saved_at] == before[:saved_at]
    steps = [r["env_steps"] for r in after]
    assert steps == sorted(steps) and steps[saved_at] > steps[saved_at - 1] > 0
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["iterations"] == len(before) + 1


def test_checkpoint_selection_reports_the_best_validation_checkpoint(ray_session, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--env", ENV, "--policy", PPO, "--iterations", "3", "--out", str(out)]
    args += ["--eval-users", "100", "--quiet", *FAST]
    args += ["--set", "evaluation.select_every=1", "--set", "evaluation.select_users=50"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    selection = results["selection"]
    history = dict((int(i), v) for i, v in selection["history"])
    assert sorted(history) == [1, 2, 3]
    assert selection["return"] == max(history.values())
    assert history[selection["iteration"]] == selection["return"]
    assert selection["users"] == 50 and selection["seed"] != results["evaluation"]["seed"]
    assert (out / "checkpoints" / "selected" / "rllib_checkpoint.json").is_file()
    assert not (out / "checkpoints" / "candidate").exists()
    # The reported policy is the selected checkpoint, evaluated on the final evaluation's users.
    from rayrec.evaluation.compare import evaluate_checkpoint
    from rayrec.specs import EnvSpec

    again = evaluate_checkpoint(
        out / "checkpoints" / "selected",
        EnvSpec.from_dict(load_yaml(ENV)),
        100,
        results["evaluation"]["seed"],
        (),
    )
    assert again["policy"][Metrics.RETURN_MEAN] == results["policy"][Metrics.RETURN_MEAN]


def test_bad_selection_settings_are_usage_errors(tmp_path, capsys):
    args = ["train", "--env", ENV, "--policy", PPO, "--out", str(tmp_path / "r")]
    assert main([*args, "--set", "evaluation.select_every=0"]) == 2
    assert "evaluation.select_every must be >= 1" in capsys.readouterr().err
    assert main([*args, "--set", "evaluation.select_users=1"]) == 2
    assert "evaluation.select_users must be >= 2" in capsys.readouterr().err


def test_stop_return_ends_the_run_at_the_first_iteration_reaching_it(ray_session, tmp_path):
    out = tmp_path / "stop"
    args = ["train", "--env", ENV, "--policy", PPO, "--iterations", "12", "--out", str(out)]
    args += ["--stop-return", "-1000000", "--eval-users", "20", "--quiet", *FAST]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    reached = [r["episode_return_mean"] is not None for r in rows]
    # It stops at the first iteration with a finished episode (any return passes), not at 12.
    assert reached[-1] and not any(reached[:-1]), reached
    assert len(rows) < 12
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["iterations"] == len(rows)


def test_one_seed_trains_the_same_ppo_run_twice(ray_session, tmp_path):
    import torch

    from rayrec.evaluation.policies import load_module

    def run(name: str) -> tuple[list[dict], dict]:
        out = tmp_path / name
        args = ["train", "--env", ENV, "--policy", PPO, "--iterations", "2", "--seed", "3"]
        assert main([*args, "--out", str(out), "--eval-users", "20", "--quiet", *FAST]) == 0
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        keys = ("env_steps", "episode_return_mean", "train/policy_loss", "train/vf_loss")
        weights = load_module(out / "checkpoints" / "final").state_dict()
        return [{k: r.get(k) for k in keys} for r in rows], weights

    rows_a, weights_a = run("a")
    rows_b, weights_b = run("b")
    assert rows_a == rows_b
    assert all(r["train/policy_loss"] is not None for r in rows_a)
    assert set(weights_a) == set(weights_b)
    for key, value in weights_a.items():
        assert torch.equal(value, weights_b[key]), key
