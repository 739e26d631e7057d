"""`rayrec tune` command-line errors: one line on stderr, exit code 2, before Ray starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rayrec.cli import main

ROOT = Path(__file__).resolve().parents[2]
ENV = str(ROOT / "envs" / "session.yaml")
PPO = str(ROOT / "policies" / "ppo.yaml")
SPACE = str(ROOT / "tune" / "ppo_asha.yaml")


def _space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


BAD = {
    "unknown distribution": ("space: {training.lr: {gaussian: [0, 1]}}", "unknown distribution"),
    "low > high": ("space: {training.lr: {loguniform: [0.1, 0.001]}}", "low (0.1) must be < high"),
    "unknown hyperparameter": (
        "space: {training.learning_rate: {choice: [0.1]}}",
        "unknown key training.learning_rate for PPO",
    ),
    "not YAML": ("space: {training.lr: [", "not valid YAML"),
}


@pytest.mark.parametrize("text, message", BAD.values(), ids=BAD.keys())
def test_bad_space_exits_2_with_one_line(text, message, tmp_path, capsys):
    space = _space(tmp_path, text)
    code = main(["tune", "--env", ENV, "--policy", PPO, "--space", space, "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert err[0].startswith(f"rayrec: error: {space}: ")
    assert not (tmp_path / "experiment").exists()


CASES = {
    "missing space": (["tune", "--env", ENV, "--policy", PPO], "--space"),
    "missing space file": (
        ["tune", "--env", ENV, "--policy", PPO, "--space", "tune/nope.yaml"],
        "tune/nope.yaml: no such file",
    ),
    "bad samples": (
        ["tune", "--env", ENV, "--policy", PPO, "--space", SPACE, "--samples", "0"],
        "positive",
    ),
    "bad override": (
        ["tune", "--env", ENV, "--policy", PPO, "--space", SPACE, "--set", "training.lrr=1"],
        "unknown key training.lrr",
    ),
    "resume without out": (["tune", "--resume"], "--resume needs --out"),
    "resume with a new space": (
        ["tune", "--resume", "--out", "runs/x", "--space", SPACE],
        "--resume continues the saved sweep",
    ),
    "resume of nothing": (["tune", "--resume", "--out", "/nonexistent/sweep"], "no such file"),
}


@pytest.mark.parametrize("argv, message", CASES.values(), ids=CASES.keys())
def test_bad_command_line_exits_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_existing_sweep_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text("env: {}\n")
    code = main(["tune", "--env", ENV, "--policy", PPO, "--space", SPACE, "--out", str(tmp_path)])
    assert code == 2
    assert "already holds a sweep" in capsys.readouterr().err
    assert (tmp_path / "spec.yaml").read_text() == "env: {}\n"


def test_real_process_exits_2_before_ray(tmp_path):
    space = _space(tmp_path, "space: {training.lr: {uniform: [0.01, 0.001]}}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rayrec.cli",
            "tune",
            "--env",
            ENV,
            "--policy",
            PPO,
            "--space",
            space,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "low (0.01) must be < high (0.001)" in lines[0], proc.stderr
