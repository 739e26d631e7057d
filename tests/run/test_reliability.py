"""What a run survives: SIGTERM mid-training, a time budget across a resume, a torn metrics line,
a corrupt latest checkpoint; and the restored weights are the checkpoint's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rayrec.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ENV = str(ROOT / "envs" / "session.yaml")
PPO = str(ROOT / "policies" / "ppo.yaml")
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
BUDGET = 45.0  # far above one iteration (about 2 s here), so SIGTERM lands inside the budget


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def terminated_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A budgeted `rayrec train` sent SIGTERM after its first iteration (what a cluster sends)."""
    out = tmp_path_factory.mktemp("runs") / "term"
    cmd = [sys.executable, "-m", "rayrec.cli", "train", "--env", ENV, "--policy", PPO]
    cmd += ["--time-budget", str(BUDGET), "--checkpoint-every", "1", "--out", str(out)]
    cmd += ["--eval-users", "50", "--quiet", *FAST]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if (out / "metrics.jsonl").exists() and len(_rows(out)) >= 1:
                break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        else:
            pytest.fail("training did not reach its first iteration in time")
        os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    return out, subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def test_sigterm_saves_the_final_checkpoint_and_results_and_exits_nonzero(terminated_run):
    out, proc = terminated_run
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "interrupted by SIGTERM" in proc.stderr
    assert (out / "checkpoints" / "final" / "rllib_checkpoint.json").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] == signal.SIGTERM
    assert results["training"]["iterations"] == len(_rows(out)) >= 1
    assert results["training"]["train_seconds"] < BUDGET
    assert "return_mean" in results["policy"]


def test_resume_trains_what_is_left_of_the_budget_despite_a_torn_line(
    ray_session, terminated_run, capsys
):
    out, _ = terminated_run
    before = _rows(out)
    spent = before[-1]["train_seconds"]
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 99, "env_st')  # power loss in the middle of a line
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--eval-users", "50", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "torn" in err
    after = _rows(out)
    assert [r["iteration"] for r in after] == list(range(1, len(after) + 1))
    assert after[: len(before)] == before
    assert len(after) > len(before)
    # It trained to the budget of the whole run, not a fresh one and not zero.
    seconds = [r["train_seconds"] for r in after]
    assert seconds == sorted(seconds) and seconds[len(before)] > spent
    assert seconds[-1] >= BUDGET and seconds[-2] < BUDGET
    results = json.loads((out / "results.json").read_text())
    assert "interrupted" not in results
    assert results["training"]["train_seconds"] == pytest.approx(seconds[-1], abs=0.1)

    # The budget is spent: resuming again trains nothing and says what to pass.
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 2
    assert "time budget" in capsys.readouterr().err


def test_a_corrupt_latest_falls_back_to_latest_old_or_fails_in_one_line(
    ray_session, terminated_run, capsys
):
    out, _ = terminated_run
    checkpoints = out / "checkpoints"
    iterations = len(_rows(out))
    shutil.copytree(checkpoints / "latest", checkpoints / "latest.old")
    for path in (checkpoints / "latest").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00" * 7)  # what a full disk or a power loss leaves
    capsys.readouterr()
    args = ["train", "--out", str(out), "--resume", "--quiet", "--eval-users", "50"]
    assert main([*args, "--iterations", str(iterations + 1)]) == 0
    err = capsys.readouterr().err
    assert "does not load" in err and "latest.old" in err
    assert len(_rows(out)) == iterations + 1

    shutil.rmtree(checkpoints / "latest.old", ignore_errors=True)
    for path in (checkpoints / "latest").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00" * 7)
    assert main([*args, "--iterations", str(iterations + 2)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rayrec: error: --resume: no checkpoint of")


def test_restored_weights_are_the_checkpoints(ray_session, tmp_path):
    import torch

    from rayrec.contracts.layout import RunFolder
    from rayrec.evaluation.policies import load_module
    from rayrec.experiment import build_config
    from rayrec.run.folder import restore_checkpoint
    from rayrec.specs import load_run_spec

    out = tmp_path / "run"
    args = ["train", "--env", ENV, "--policy", PPO, "--iterations", "2", "--out", str(out)]
    assert main([*args, "--eval-users", "20", "--quiet", *FAST]) == 0
    env, policy, run = load_run_spec(out)
    algo = build_config(env, policy, seed=run["seed"]).build_algo()
    try:

        def learner_weights() -> dict:
            state = algo.learner_group.get_state()["learner"]["rl_module"]["default_policy"]
            return {k: torch.as_tensor(v) for k, v in state.items()}

        fresh = learner_weights()
        restore_checkpoint(algo, RunFolder(out), "latest", lambda msg: None)
        restored = learner_weights()
        saved = load_module(out / "checkpoints" / "latest").state_dict()
        assert set(restored) == set(saved)
        for key, value in saved.items():
            assert torch.equal(restored[key], value), key
        assert any(not torch.equal(fresh[k], saved[k]) for k in saved)  # training moved them
        assert algo.iteration == 2
    finally:
        algo.stop()
