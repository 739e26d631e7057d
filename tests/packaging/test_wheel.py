"""rayrec installed as a wheel (not editable) works from any folder: nothing in the package
reaches into the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed (without its dependencies, which this
    environment has) into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)], check=True)
    (wheel,) = (tmp / "dist").glob("rayrec-*.whl")
    target = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def _run(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run(
        [str(target / "bin" / "rayrec"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_installed_package_is_the_wheels(installed, tmp_path):
    code = "import rayrec, rayrec.cli; print(rayrec.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(out.strip()).is_relative_to(installed)
    assert (installed / "rayrec" / "profiles" / "local.yaml").is_file()  # package data


def test_info_and_train_from_another_folder(installed, tmp_path):
    info = _run(installed, tmp_path, "info")
    assert info.returncode == 0, info.stderr
    assert "rayrec/Session-v0" in info.stdout and "local" in info.stdout
    out = tmp_path / "run"
    args = ["train", "--env", str(ROOT / "envs" / "session.yaml")]
    args += ["--policy", str(ROOT / "policies" / "ppo.yaml"), "--profile", "local"]
    args += ["--iterations", "1", "--eval-users", "20", "--out", str(out), "--quiet"]
    args += ["--set", "env_runners.num_envs_per_env_runner=8"]
    args += ["--set", "training.train_batch_size_per_learner=256"]
    args += ["--set", "training.minibatch_size=128", "--set", "training.num_epochs=1"]
    run = _run(installed, tmp_path, *args)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["iterations"] == 1
