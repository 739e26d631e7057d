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


def test_jobs_list_shows_both_jobs(cluster):
    done = _rayrec(cluster, "jobs", "list", "--address", cluster["dashboard_url"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("SUCCEEDED") == 1
    assert done.stdout.count("FAILED") == 1


def test_stop_leaves_no_process_behind(cluster):
    folder = Path(cluster["dir"])
    assert cluster_pids(folder)
    stopped = _local_sh("stop", folder)
    assert stopped.returncode == 0, stopped.stderr
    assert cluster_pids(folder) == []
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(folder) not in ps.stdout
