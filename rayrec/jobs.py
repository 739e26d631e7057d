"""Ray jobs: submit ``rayrec`` commands to a cluster, follow them, list, read and stop them.

A submitted job runs ``python -m rayrec.cli COMMAND ARGS`` on the cluster's head node, inside a
runtime env whose ``working_dir`` is this project (the package and the specs, without virtualenvs,
run folders, data or caches). ``python -m`` puts the working dir first on ``sys.path``, so the job
imports the uploaded ``rayrec``, not one installed on the cluster; Ray also puts the working dir
first on ``PYTHONPATH`` for the job's workers (EnvRunners, Learners).

The job's working dir is a temporary copy on the head node: a run folder given as a relative
``--out`` ends up there. Give ``--out`` an absolute path on storage the head node keeps.

Token authentication (Ray 2.60's default): the token is read as Ray reads it, from
``RAY_AUTH_TOKEN``, else the file named by ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``, and
sent as ``Authorization: Bearer TOKEN`` to the dashboard's jobs API.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EXCLUDES",
    "EXIT_FAILED",
    "EXIT_OK",
    "LOG_TAIL_LINES",
    "JobOutcome",
    "JobsError",
    "auth_headers",
    "call",
    "connect",
    "entrypoint",
    "follow",
    "job_rows",
    "log_tail",
    "project_root",
    "relative_out",
    "runtime_env",
    "submit",
]

EXIT_OK = 0
EXIT_FAILED = 1
LOG_TAIL_LINES = 40
"""Lines of the job's log shown on stderr when it fails or is stopped."""

EXCLUDES = (
    ".git/",
    ".venv/",
    "venv/",
    "runs/",
    "/data/",
    "/logs/",
    "__pycache__/",
    ".pytest_cache/",
    ".ruff_cache/",
    "*.egg-info/",
    "build/",
    "dist/",
    ".gl/",
    ".whl/",
)
"""Never uploaded with the working dir (gitwildmatch patterns, as in ``.gitignore``): run folders,
data and the serving logs (``logs/`` holds impression logs with user ids: they stay where they
were written)."""

RUN_COMMANDS = ("train", "collect", "evaluate", "info", "tune")
"""``rayrec`` subcommands that may run as a job (not ``submit`` or ``jobs`` themselves)."""


class JobsError(Exception):
    """The cluster cannot be reached, refuses the token, or does not know the job."""


@dataclass(frozen=True)
class JobOutcome:
    """How a followed job ended."""

    job_id: str
    """The submission id (``raysubmit_...``)."""
    status: str
    """SUCCEEDED, FAILED or STOPPED."""
    message: str = ""
    """Ray's message on the status (for a failure: the exit code or the runtime env error)."""
    tail: tuple[str, ...] = field(default=())
    """The last :data:`LOG_TAIL_LINES` lines of the job's log."""

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.status == "SUCCEEDED" else EXIT_FAILED


def auth_headers() -> dict[str, str]:
    """``Authorization`` header for a cluster with token auth; empty when no token is found."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path_text = os.environ.get("RAY_AUTH_TOKEN_PATH")
        path = Path(path_text) if path_text else Path.home() / ".ray" / "auth_token"
        if path_text and not path.is_file():
            raise JobsError(f"RAY_AUTH_TOKEN_PATH={path_text}: no such file")
        token = path.read_text().strip() if path.is_file() else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


def connect(address: str | None) -> Any:
    """A ``JobSubmissionClient`` for the dashboard at ``address`` (default ``$RAY_ADDRESS``)."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise JobsError(
            "--address http://HOST:8265 (the cluster's dashboard) or RAY_ADDRESS needed"
        )
    if not address.startswith(("http://", "https://")):
        raise JobsError(f"--address {address}: expected the dashboard URL, http://HOST:8265")
    try:
        return JobSubmissionClient(address, headers=auth_headers())
    except (AuthenticationError, ConnectionError, RuntimeError, ValueError) as e:
        hint = " (token: RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)" * isinstance(
            e, AuthenticationError
        )
        raise JobsError(
            f"cannot use the Ray jobs API at {address}: {_first_line(e)}{hint}"
        ) from None


def project_root(start: Path | None = None) -> Path:
    """The folder uploaded as the job's working dir: the current one if it holds the ``rayrec``
    package, else the checkout this ``rayrec`` was imported from."""
    here = (start or Path.cwd()).resolve()
    if (here / "rayrec" / "__init__.py").is_file():
        return here
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout
    raise JobsError(f"{here} holds no rayrec package; run from the project or pass --working-dir")


def runtime_env(root: Path, excludes: Sequence[str] = ()) -> dict[str, Any]:
    """The job's runtime env: ``root`` as working dir without :data:`EXCLUDES` (and ``excludes``)."""
    root = root.resolve()
    if not (root / "rayrec" / "__init__.py").is_file():
        raise JobsError(f"--working-dir {root}: holds no rayrec package")
    return {"working_dir": str(root), "excludes": [*EXCLUDES, *excludes]}


def entrypoint(command: Sequence[str]) -> str:
    """The shell command a job runs: ``python -m rayrec.cli COMMAND ARGS``."""
    if not command:
        raise JobsError("nothing to submit: rayrec submit --address URL -- COMMAND ARGS...")
    if command[0] not in RUN_COMMANDS:
        raise JobsError(f"cannot submit {command[0]!r}; expected one of {', '.join(RUN_COMMANDS)}")
    return shlex.join(["python", "-m", "rayrec.cli", *command])


def relative_out(command: Sequence[str]) -> str | None:
    """The ``--out`` of a train/tune/collect command when it is missing or relative, else None."""
    if command[0] not in ("train", "tune", "collect"):
        return None
    for i, arg in enumerate(command):
        value = command[i + 1] if arg == "--out" and i + 1 < len(command) else None
        if arg.startswith("--out="):
            value = arg.split("=", 1)[1]
        if value is not None:
            return None if Path(value).is_absolute() else value
    return "(default)"


def submit(client: Any, command: Sequence[str], env: dict[str, Any]) -> str:
    """Submit ``command`` with runtime env ``env``; returns the submission id."""
    try:
        return client.submit_job(entrypoint=entrypoint(command), runtime_env=env)
    except RuntimeError as e:
        raise JobsError(f"the cluster refused the job: {_first_line(e)}") from None


def call(method: Callable[[str], Any], job_id: str) -> Any:
    """``method(job_id)`` on a jobs client; an unknown job, a refused request or a lost connection
    is a JobsError."""
    try:
        return method(job_id)
    except (RuntimeError, OSError) as e:  # requests' ConnectionError is an OSError
        raise JobsError(f"job {job_id}: {_first_line(e)}") from None


def follow(client: Any, job_id: str, write: Callable[[str], None]) -> JobOutcome:
    """Stream the job's log through ``write`` until the job ends; returns how it ended."""

    import aiohttp

    call(client.get_job_status, job_id)  # an unknown id fails here, not in the stream

    async def stream() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    try:
        asyncio.run(stream())
    except (RuntimeError, OSError, aiohttp.ClientError) as e:
        # The log stream can close before the job ends (dashboard restart); the status decides.
        write(f"\n[rayrec: log stream closed: {_first_line(e)}]\n")
    info = _wait_terminal(client, job_id)
    return JobOutcome(
        job_id=job_id,
        status=str(info.status),
        message=_first_line(info.message) if info.message else "",
        tail=log_tail(client, job_id),
    )


def _wait_terminal(client: Any, job_id: str, poll_s: float = 1.0) -> Any:
    import time

    while True:
        info = call(client.get_job_info, job_id)
        if info.status.is_terminal():
            return info
        time.sleep(poll_s)


def log_tail(client: Any, job_id: str, lines: int = LOG_TAIL_LINES) -> tuple[str, ...]:
    """The last ``lines`` lines of the job's log."""
    return tuple(call(client.get_job_logs, job_id).splitlines()[-lines:])


def job_rows(client: Any) -> list[list[str]]:
    """A table of the cluster's jobs, newest first: a header row, then one row per job."""
    import time

    jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0, reverse=True)
    rows = [["job", "status", "started", "entrypoint"]]
    for job in jobs:
        started = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_time / 1000))
            if job.start_time
            else "-"
        )
        rows.append(
            [job.submission_id or job.job_id or "-", str(job.status), started, job.entrypoint]
        )
    return rows


def _first_line(e: BaseException | str) -> str:
    text = str(e).strip()
    return text.splitlines()[0].rstrip(":") if text else type(e).__name__
