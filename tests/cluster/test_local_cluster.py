"""A real 2-node Ray cluster on 127.0.0.1 (cluster/local.sh): `rayrec submit` training, a failing
job, `rayrec jobs list`, and a stop that leaves no process behind.

The cluster has its own temp dir, ports and auth token; the test talks to it over HTTP (the jobs
SDK) only, so it never meets the session-wide in-process Ray of the other integration tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rayrec.cluster_local import cluster_pids

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = [
    "train",
    "--env",
    "envs/session.yaml",
    "--policy",
    "policies/ppo.yaml",
    "--iterations",
    "2",
    "--eval-users",
    "50",
    "--baselines",
    "random",
    "--checkpoint-every",
    "1",
    "--quiet",
    *("--set", "env.num_items=500"),
    *("--set", "training.train_batch_size_per_learner=256"),
    *("--set", "training.minibatch_size=64"),
    *("--set", "training.num_epochs=1"),
    *("--set", "env_runners.num_env_runners=1"),
    *("--set", "env_runners.num_envs_per_env_runner=8"),
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHON"] = sys.executable
    return {**env, **extra}


def _local_sh(action: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "cluster" / "local.sh"), action, "--dir", str(folder)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def cluster():
    # Short path: Ray's unix sockets live deep under the temp dir (107-byte limit).
    folder = Path(tempfile.mkdtemp(prefix="rrc-", dir="/tmp"))
    try:
        started = _local_sh("start", folder)
        assert started.returncode == 0, started.stderr[-3000:]
        yield json.loads((folder / "cluster.json").read_text())
    finally:
        _local_sh("stop", folder)
        shutil.rmtree(folder, ignore_errors=True)


def _rayrec(cluster: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rayrec.cli", *args],
        cwd=ROOT,
        env=_env(RAY_AUTH_TOKEN_PATH=cluster["token_path"]),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cluster_has_two_nodes_and_token_auth(cluster):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:  # no token: refused
        urllib.request.urlopen(f"{cluster['dashboard_url']}/api/jobs/", timeout=30)
    assert refused.value.code == 401
    token = Path(cluster["token_path"]).read_text().strip()
    request = urllib.request.Request(
        f"{cluster['dashboard_url']}/nodes?view=summary",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        nodes = json.load(response)["data"]["summary"]
    assert sum(n["raylet"]["state"] == "ALIVE" for n in nodes) == 2


def test_submit_training_succeeds(cluster, tmp_path):
    out = tmp_path / "ppo"
    done = _rayrec(
        cluster,
        "submit",
        "--address",
        cluster["dashboard_url"],
        "--",
        *TINY_TRAIN,
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SUCCEEDED" in done.stderr
    assert f"run folder: {out}" in done.stdout  # the job's log streamed to stdout
    assert (out / "checkpoints" / "final" / "rllib_checkpoint.json").is_file()
    assert json.loads((out / "results.json").read_text())["training"]["iterations"] == 2


def test_submit_marketplace_training_succeeds(cluster, tmp_path):
    """The one training loop behind `submit` too: a multi-agent marketplace run as a Ray job."""
    out = tmp_path / "market"
    train = ["train", "--env", "envs/marketplace.yaml", "--policy", "policies/marketplace_ppo.yaml"]
    train += ["--iterations", "2", "--eval-users", "128", "--checkpoint-every", "1", "--quiet"]
    train += ["--set", "env.num_periods=5", "--set", "env_runners.num_env_runners=1"]
    train += ["--set", "training.train_batch_size_per_learner=50"]
    train += ["--set", "training.minibatch_size=25", "--set", "training.num_epochs=1"]
    done = _rayrec(
        cluster, "submit", "--address", cluster["dashboard_url"], "--", *train, "--out", str(out)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SUCCEEDED" in done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["training"] == results["training"] | {"iterations": 2, "kind": "marketplace"}
    assert list(results["baselines"]) == ["scripted"]
    assert (out / "checkpoints" / "final" / "rllib_checkpoint.json").is_file()


def test_failing_job_exits_nonzero_with_log_tail(cluster):
    done = _rayrec(
        cluster,
        "submit",
        "--address",
        cluster["dashboard_url"],
        "--",
        "train",
        "--env",
        "envs/missing.yaml",
        "--policy",
        "policies/ppo.yaml",
    )
    assert done.returncode == 1
    assert "FAILED" in done.stderr
    assert "rayrec: error: envs/missing.yaml" in done.stderr  # the tail, on stderr


@pytest.fixture
def jobs_cli(cluster, capsys, monkeypatch):
    """``rayrec jobs ...`` in this process (HTTP only): returns (exit code, stdout, stderr)."""
    from rayrec.cli import main

    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", cluster["token_path"])

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["jobs", *args, "--address", cluster["dashboard_url"]])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_jobs_list_shows_every_job(jobs_cli):
    code, out, err = jobs_cli("list")
    assert code == 0, err
    assert out.count("SUCCEEDED") == 2  # the session and the marketplace training jobs
    assert out.count("FAILED") == 1


def _sdk(cluster: dict):
    """The jobs SDK over HTTP with the cluster's token (no ray.init in this process)."""
    from ray.job_submission import JobSubmissionClient

    token = Path(cluster["token_path"]).read_text().strip()
    return JobSubmissionClient(
        cluster["dashboard_url"], headers={"Authorization": f"Bearer {token}"}
    )


def _wait_status(cluster: dict, job_id: str, wanted: str, timeout_s: float = 120.0) -> None:
    client = _sdk(cluster)
    deadline = time.monotonic() + timeout_s
    while str(client.get_job_status(job_id)) != wanted:
        assert time.monotonic() < deadline, f"{job_id} not {wanted} after {timeout_s} s"
        time.sleep(1)


def test_no_wait_stop_and_follow(cluster, jobs_cli, tmp_path):
    submitted = _rayrec(
        cluster,
        *("submit", "--no-wait", "--address", cluster["dashboard_url"], "--"),
        *(*TINY_TRAIN, "--iterations", "10000", "--out", str(tmp_path / "long")),
    )
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job_id = submitted.stdout.strip()
    assert job_id.startswith("raysubmit_")
    code, out, err = jobs_cli("stop", job_id)
    assert code == 0, err
    assert out.strip() == f"{job_id}: stop requested"
    code, _, err = jobs_cli("logs", job_id, "--follow")
    assert code == 1
    assert f"{job_id} STOPPED" in err


def test_stop_leaves_no_process_behind(cluster):
    folder = Path(cluster["dir"])
    # A job still running: its entrypoint runs in a session of its own, outside Ray's worker tree.
    marker = "sleep 987"
    _wait_status(cluster, _sdk(cluster).submit_job(entrypoint=marker), "RUNNING")
    assert cluster_pids(folder)
    stopped = _local_sh("stop", folder)
    assert stopped.returncode == 0, stopped.stderr
    assert cluster_pids(folder) == []
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(folder) not in ps.stdout
    assert marker not in ps.stdout
