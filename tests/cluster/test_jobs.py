"""rayrec.jobs and the submit/jobs subcommands without a cluster: runtime env, entrypoint, token,
usage errors (exit 2, one line)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from rayrec import jobs
from rayrec.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for rel in (
        "rayrec/__init__.py",
        "rayrec/data/schema.py",
        "envs/session.yaml",
        "policies/ppo.yaml",
        "profiles/local.yaml",
        "tune/ppo_asha.yaml",
        ".venv/lib/site.py",
        ".git/HEAD",
        "runs/ppo/results.json",
        "data/logs/part-0.parquet",
        "logs/serve/impressions/part-0.parquet",
        "rayrec/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/x",
        "rayrec.egg-info/PKG-INFO",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    return root


def test_working_dir_upload_keeps_package_and_specs_only(tmp_path):
    from ray._private.runtime_env.packaging import create_package

    root = _project(tmp_path)
    env = jobs.runtime_env(root)
    assert env["working_dir"] == str(root)
    package = tmp_path / "pkg.zip"
    create_package(str(root), package, include_gitignore=True, excludes=env["excludes"])
    names = {n for n in zipfile.ZipFile(package).namelist() if not n.endswith("/")}
    assert names == {
        "rayrec/__init__.py",
        "rayrec/data/schema.py",  # only the top-level data/ is excluded
        "envs/session.yaml",
        "policies/ppo.yaml",
        "profiles/local.yaml",
        "tune/ppo_asha.yaml",
    }


def test_runtime_env_needs_the_package(tmp_path):
    with pytest.raises(jobs.JobsError, match="holds no rayrec package"):
        jobs.runtime_env(tmp_path)


def test_project_root_is_the_checkout_outside_it(tmp_path):
    assert jobs.project_root(ROOT) == ROOT
    assert jobs.project_root(tmp_path) == ROOT


def test_entrypoint_runs_the_cli_as_a_module():
    command = ["train", "--env", "envs/session.yaml", "--set", "training.lr=1e-4 x"]
    assert jobs.entrypoint(command) == (
        "python -m rayrec.cli train --env envs/session.yaml --set 'training.lr=1e-4 x'"
    )


@pytest.mark.parametrize("command", [[], ["submit"], ["jobs", "list"], ["bogus"]])
def test_entrypoint_rejects(command):
    with pytest.raises(jobs.JobsError):
        jobs.entrypoint(command)


@pytest.mark.parametrize(
    ("command", "relative"),
    [
        (["train", "--out", "/abs/run"], None),
        (["train", "--out=/abs/run"], None),
        (["train", "--out", "runs/x"], "runs/x"),
        (["tune", "--space", "tune/a.yaml"], "(default)"),
        (["evaluate", "--checkpoint", "c"], None),
    ],
)
def test_relative_out(command, relative):
    assert jobs.relative_out(command) == relative


def test_auth_header_precedence(tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert jobs.auth_headers() == {}
    default = tmp_path / "home" / ".ray" / "auth_token"
    default.parent.mkdir(parents=True)
    default.write_text("from-home")
    assert jobs.auth_headers() == {"Authorization": "Bearer from-home"}
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert jobs.auth_headers() == {"Authorization": "Bearer from-file"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert jobs.auth_headers() == {"Authorization": "Bearer from-env"}
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(jobs.JobsError, match="RAY_AUTH_TOKEN_PATH"):
        jobs.auth_headers()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit", "--address", "http://127.0.0.1:1"], "nothing to submit"),
        (["submit", "--address", "http://127.0.0.1:1", "--", "jobs", "list"], "cannot submit"),
        (["submit", "--", "info"], "RAY_ADDRESS"),
        (["submit", "--address", "127.0.0.1:6379", "--", "info"], "dashboard URL"),
        (["jobs", "logs", "--address", "http://127.0.0.1:1"], "needs a job ID"),
        (["jobs", "list", "--address", "http://127.0.0.1:1"], "cannot use the Ray jobs API"),
    ],
)
def test_cli_usage_errors(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_submit_checks_the_command_line_before_uploading(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["submit", "--address", "http://127.0.0.1:1", "--", "train", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


class _FakeClient:
    """The part of JobSubmissionClient that :func:`jobs.follow` uses."""

    def __init__(self, status: str, lines: int) -> None:
        from ray.job_submission import JobStatus

        self.status = JobStatus(status)
        self.log = "".join(f"line {i}\n" for i in range(lines))

    def get_job_status(self, job_id):
        return self.status

    def get_job_info(self, job_id):
        from types import SimpleNamespace

        return SimpleNamespace(status=self.status, message="exit code 2\nmore detail")

    def get_job_logs(self, job_id):
        return self.log

    async def tail_job_logs(self, job_id):
        for chunk in (self.log[:10], self.log[10:]):
            yield chunk


@pytest.mark.parametrize(("status", "code"), [("SUCCEEDED", 0), ("FAILED", 1), ("STOPPED", 1)])
def test_follow_streams_and_maps_the_status(status, code):
    client = _FakeClient(status, lines=100)
    streamed = []
    outcome = jobs.follow(client, "raysubmit_x", streamed.append)
    assert "".join(streamed) == client.log
    assert outcome.exit_code == code
    assert outcome.message == "exit code 2"
    assert outcome.tail == tuple(f"line {i}" for i in range(100 - jobs.LOG_TAIL_LINES, 100))


# ---- the local cluster's folder and token (no Ray) ----------------------------------------------
def test_cluster_folder_is_created_private_and_the_token_0600(tmp_path):
    from rayrec.cluster_local import TOKEN_FILE, secure_folder, write_token

    folder = secure_folder(tmp_path / "new" / "cluster")
    assert folder.stat().st_mode & 0o777 == 0o700
    token = write_token(folder)
    assert token == folder / TOKEN_FILE and token.stat().st_mode & 0o777 == 0o600
    first = token.read_text()
    assert len(first) == 64 and write_token(folder).read_text() != first  # fresh on each start


@pytest.mark.parametrize("case", ["open", "symlink", "file"])
def test_cluster_folder_is_refused_when_others_could_read_or_swap_it(tmp_path, case):
    from rayrec.cluster_local import main, secure_folder

    target = tmp_path / "dir"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    folder = {"open": target, "symlink": tmp_path / "link", "file": tmp_path / "f"}[case]
    if case == "symlink":
        target.chmod(0o700)
        folder.symlink_to(target)
    if case == "file":
        folder.write_text("x")
    message = {"open": "chmod 700", "symlink": "symbolic link", "file": "not a folder"}[case]
    with pytest.raises(ValueError, match=message):
        secure_folder(folder)
    assert main(["start", "--dir", str(folder)]) == 2  # refused before Ray starts


def test_a_token_planted_as_a_link_is_replaced_not_followed(tmp_path):
    from rayrec.cluster_local import TOKEN_FILE, secure_folder, write_token

    folder = secure_folder(tmp_path / "c")
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (folder / TOKEN_FILE).symlink_to(victim)
    token = write_token(folder)
    assert not token.is_symlink() and victim.read_text() == "keep"
