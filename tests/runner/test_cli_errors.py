"""Bad command lines and specs: one clear line on stderr, exit code 2, no traceback, no Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rayrec.cli import main

ROOT = Path(__file__).resolve().parents[2]
ENV = str(ROOT / "envs" / "session.yaml")
PPO = str(ROOT / "policies" / "ppo.yaml")


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CASES = {
    "no command": ([], "required"),
    "unknown command": (["fly"], "invalid choice"),
    "missing policy": (["train", "--env", ENV], "--policy"),
    "missing file": (["train", "--env", "nope.yaml", "--policy", PPO], "nope.yaml: no such file"),
    "bad iterations": (["train", "--env", ENV, "--policy", PPO, "--iterations", "-3"], "positive"),
    "bad time budget": (["train", "--env", ENV, "--policy", PPO, "--time-budget", "x"], "number"),
    "unknown training key": (
        ["train", "--env", ENV, "--policy", PPO, "--set", "training.lrr=1"],
        "unknown key training.lrr",
    ),
    "wrong type": (
        ["train", "--env", ENV, "--policy", PPO, "--set", "training.lr=abc"],
        "training.lr",
    ),
    "lr schedule not from step 0": (
        ["train", "--env", ENV, "--policy", PPO, "--set", "training.lr=[[100, 0.001]]"],
        "training.lr must be a number or a schedule",
    ),
    "lr schedule with a bad entry": (
        ["train", "--env", ENV, "--policy", PPO, "--set", "training.lr=[[0, 0.001], [5, x]]"],
        "got the entry [5, 'x']",
    ),
    "set without =": (
        ["train", "--env", ENV, "--policy", PPO, "--set", "training.lr"],
        "KEY=VALUE",
    ),
    "bad sim field": (
        ["train", "--env", ENV, "--policy", PPO, "--set", "env.slate_size=50"],
        "slate_size (50) must be <= num_candidates",
    ),
    "unknown sim field": (
        ["train", "--env", ENV, "--policy", PPO, "--set", "env.num_itemz=5"],
        "unknown simulator field(s) num_itemz",
    ),
    "unknown encoder": (
        ["train", "--env", ENV, "--policy", PPO, "--set", "model.encoder=lstm"],
        "model.encoder",
    ),
    "unknown baseline": (["evaluate", "--checkpoint", ".", "--baselines", "oracle"], "oracle"),
    "resume without out": (["train", "--resume"], "--resume needs --out"),
    "missing checkpoint": (["evaluate", "--checkpoint", "/nonexistent/ckpt"], "no such directory"),
    "unknown profile": (
        ["train", "--env", ENV, "--policy", PPO, "--profile", "huge"],
        "no such profile",
    ),
}


@pytest.mark.parametrize("argv, message", CASES.values(), ids=CASES.keys())
def test_bad_command_line_exits_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0]
    assert "Traceback" not in err[0]


SPEC_CASES = {
    "unknown algorithm": ("algorithm: Rainbow\n", "unknown algorithm 'Rainbow'"),
    "unknown top-level key": ("algorithm: PPO\nmodle: {}\n", "unknown key(s) modle"),
    "section not a mapping": (
        "algorithm: PPO\ntraining: 3\n",
        "section 'training' must be a mapping",
    ),
    "not YAML": ("algorithm: [PPO\n", "not valid YAML"),
    "not a mapping": ("- PPO\n", "must hold a mapping"),
    "bad stop": ("algorithm: PPO\nstop: {iterations: -1}\n", "stop.iterations"),
    "bad eval": ("algorithm: PPO\nevaluation: {users: many}\n", "evaluation.users"),
}


@pytest.mark.parametrize("text, message", SPEC_CASES.values(), ids=SPEC_CASES.keys())
def test_bad_policy_spec_exits_2(text, message, tmp_path, capsys):
    policy = _write(tmp_path, "policy.yaml", text)
    code = main(["train", "--env", ENV, "--policy", policy])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_bad_env_spec_exits_2(tmp_path, capsys):
    env = _write(tmp_path, "env.yaml", "id: rayrec/Nope-v0\n")
    assert main(["train", "--env", env, "--policy", PPO]) == 2
    assert "unknown env id 'rayrec/Nope-v0'" in capsys.readouterr().err


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text("env: {}\n")
    code = main(["train", "--env", ENV, "--policy", PPO, "--out", str(tmp_path)])
    assert code == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "spec.yaml").read_text() == "env: {}\n"


def test_real_process_exit_code_and_single_line():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rayrec.cli",
            "train",
            "--env",
            ENV,
            "--policy",
            PPO,
            "--set",
            "training.lrr=1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rayrec: error:"), proc.stderr
