"""A real multi-node Ray cluster on this machine: a head and one worker node via ``ray start``.

``python -m rayrec.cluster_local start|stop|status --dir DIR`` (``cluster/local.sh`` wraps it).
Everything binds to 127.0.0.1; the cluster has its own temp dir under DIR and its own ports (free
ones unless given), so it runs next to other Ray instances on the machine. Token authentication
stays on: ``start`` writes a fresh token to ``DIR/auth_token`` and starts both nodes with
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` pointing at it; clients export the same
variable (``status`` prints the line).

``stop`` never runs ``ray stop`` (that stops every Ray on the machine). Every process of this cluster
(GCS, raylets, dashboard, agents, workers, job drivers and their children) inherits the environment
variable ``RAYREC_LOCAL_CLUSTER=DIR`` from ``ray start``; ``stop`` finds them by it in
``/proc/PID/environ`` (Linux) and ends them: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "MARKER",
    "LocalCluster",
    "cluster_pids",
    "main",
    "secure_folder",
    "start",
    "status",
    "stop",
    "write_token",
]

MARKER = "RAYREC_LOCAL_CLUSTER"
"""Environment variable that marks every process of a local cluster (value: its folder)."""
STATE_FILE = "cluster.json"
TOKEN_FILE = "auth_token"
HEAD_PORTS = (
    "port",
    "dashboard-port",
    "ray-client-server-port",
    "node-manager-port",
    "object-manager-port",
    "metrics-export-port",
    "dashboard-agent-grpc-port",
    "dashboard-agent-listen-port",
    "runtime-env-agent-port",
)
WORKER_PORTS = HEAD_PORTS[3:]
OBJECT_STORE_BYTES = 100 * 1024**2


@dataclass(frozen=True)
class LocalCluster:
    """Where a started local cluster listens; saved as ``DIR/cluster.json``."""

    dir: str
    """The cluster's folder: temp dirs of both nodes, the token, this file."""
    gcs_address: str
    """``127.0.0.1:PORT`` of the head's GCS (``ray start --address`` / ``ray.init``)."""
    dashboard_url: str
    """``http://127.0.0.1:PORT``: the jobs API (``rayrec submit --address``)."""
    client_address: str
    """``ray://127.0.0.1:PORT``: Ray Client."""
    token_path: str
    """The token file; clients set ``RAY_AUTH_TOKEN_PATH`` to it."""
    head_cpus: int
    worker_cpus: int


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.is_file() else (shutil.which("ray") or "ray")


def _node_env(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Nodes see neither the caller's cluster nor its checkout: jobs import their working dir.
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "PYTHONPATH"):
        env.pop(name, None)
    env[MARKER] = str(folder)
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN_PATH"] = str(folder / TOKEN_FILE)
    # Job entrypoints run `python -m rayrec.cli`: the Python of this environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _ray_start(args: list[str], env: dict[str, str], timeout: float) -> None:
    done = subprocess.run(
        [_ray(), "start", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"ray start {' '.join(args[:1])} failed ({done.returncode}):\n{tail}")


def secure_folder(folder: Path) -> Path:
    """``folder`` made private: created 0700 if missing; refused (ValueError) when it is a
    symlink, not a directory, owned by another user or open to the group or others.

    The token in it lets anyone who reads it run code on the cluster (Ray jobs), so another local
    user must not be able to read it, nor swap the folder or the file for a link of their own."""
    path = Path(os.path.abspath(folder))
    if path.is_symlink():
        raise ValueError(f"--dir {path}: is a symbolic link; give the real folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"--dir {path}: exists and is not a folder")
    if st.st_uid != os.getuid():
        raise ValueError(f"--dir {path}: owned by another user (uid {st.st_uid}); use your own")
    if st.st_mode & 0o077:
        raise ValueError(
            f"--dir {path}: open to other users (mode {stat.S_IMODE(st.st_mode):o}); the cluster "
            f"token lives there: run `chmod 700 {path}` or choose another --dir"
        )
    return path


def write_token(folder: Path) -> Path:
    """A fresh token in ``folder/auth_token``, created 0600 by this process (never through a
    link, never reusing a file someone else put there)."""
    token = folder / TOKEN_FILE
    token.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(token, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return token


def start(
    folder: Path,
    head_cpus: int = 1,
    worker_cpus: int = 2,
    object_store_bytes: int = OBJECT_STORE_BYTES,
    timeout: float = 180.0,
) -> LocalCluster:
    """Start the head and one worker node; returns where they listen."""
    # Unix socket paths are limited to 107 bytes; Ray's sit deep under the temp dir.
    if len(os.path.abspath(folder)) > 60:
        raise ValueError(
            f"--dir {os.path.abspath(folder)}: path too long for Ray's sockets (at most 60 "
            "characters)"
        )
    folder = secure_folder(folder)
    if cluster_pids(folder):
        raise RuntimeError(f"{folder}: a local cluster runs there already (stop it first)")
    token = write_token(folder)
    env = _node_env(folder)
    ports = _free_ports(len(HEAD_PORTS) + len(WORKER_PORTS))
    head = dict(zip(HEAD_PORTS, ports, strict=False))
    worker = dict(zip(WORKER_PORTS, ports[len(HEAD_PORTS) :], strict=True))
    common = ["--node-ip-address=127.0.0.1", f"--object-store-memory={object_store_bytes}"]
    cluster = LocalCluster(
        dir=str(folder),
        gcs_address=f"127.0.0.1:{head['port']}",
        dashboard_url=f"http://127.0.0.1:{head['dashboard-port']}",
        client_address=f"ray://127.0.0.1:{head['ray-client-server-port']}",
        token_path=str(token),
        head_cpus=head_cpus,
        worker_cpus=worker_cpus,
    )
    try:
        _ray_start(
            [
                "--head",
                *common,
                f"--temp-dir={folder / 'head'}",
                f"--num-cpus={head_cpus}",
                "--num-gpus=0",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                "--disable-usage-stats",
                *(f"--{k}={v}" for k, v in head.items()),
            ],
            env,
            timeout,
        )
        _ray_start(
            [
                f"--address={cluster.gcs_address}",
                *common,
                f"--temp-dir={folder / 'worker'}",
                f"--num-cpus={worker_cpus}",
                "--num-gpus=0",
                *(f"--{k}={v}" for k, v in worker.items()),
            ],
            env,
            timeout,
        )
    except BaseException:
        stop(folder)
        raise
    (folder / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=2) + "\n")
    return cluster


def load(folder: Path) -> LocalCluster:
    """The cluster saved in ``folder`` by :func:`start`."""
    path = folder.resolve() / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no local cluster was started in {folder}")
    return LocalCluster(**json.loads(path.read_text()))


def cluster_pids(folder: Path) -> list[int]:
    """PIDs of this cluster's processes (this user's, Linux): those carrying
    ``RAYREC_LOCAL_CLUSTER=folder`` and all their descendants. Descendants are needed because Ray's
    workers and agents rename themselves (``ray::IDLE``), which overwrites their environ."""
    needle = b"\0" + f"{MARKER}={folder.resolve()}".encode() + b"\0"
    parents: dict[int, int] = {}
    marked = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            # The fields after the command name, which may hold spaces or parentheses.
            parents[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])
            if needle in b"\0" + (entry / "environ").read_bytes() + b"\0":
                marked.add(pid)
        except (OSError, ValueError):  # gone, or another user's process
            continue
    found = set(marked)
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return sorted(found)


def stop(folder: Path, grace_s: float = 10.0) -> int:
    """End every process of the cluster in ``folder``; returns how many there were."""
    pids = cluster_pids(folder)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and cluster_pids(folder):
        time.sleep(0.2)
    # Late children (workers started while stopping) are killed too.
    for _ in range(5):
        left = cluster_pids(folder)
        if not left:
            break
        for pid in left:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.2)
    return len(pids)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def status(folder: Path) -> str:
    """A few lines: addresses, the token variable, and how many processes run."""
    cluster = load(folder)
    pids = cluster_pids(folder)
    state = f"running ({len(pids)} processes)" if pids else "stopped"
    return "\n".join(
        [
            f"local Ray cluster in {cluster.dir}: {state}",
            f"  head {cluster.head_cpus} CPU + worker {cluster.worker_cpus} CPUs",
            f"  jobs/dashboard: {cluster.dashboard_url}  (rayrec submit --address ...)",
            f"  GCS: {cluster.gcs_address}   Ray Client: {cluster.client_address}",
            f"  export RAY_AUTH_TOKEN_PATH={cluster.token_path}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cluster/local.sh", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--dir", type=Path, default=Path("/tmp/rayrec-cluster"), help="cluster folder")
    p.add_argument("--head-cpus", type=int, default=1)
    p.add_argument("--worker-cpus", type=int, default=2)
    args = p.parse_args(argv)
    try:
        if args.action == "start":
            start(args.dir, args.head_cpus, args.worker_cpus)
            sys.stdout.write(status(args.dir) + "\n")
        elif args.action == "stop":
            sys.stdout.write(f"stopped {stop(args.dir)} processes of {args.dir.resolve()}\n")
        else:
            sys.stdout.write(status(args.dir) + "\n")
    except (RuntimeError, ValueError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        sys.stderr.write(f"cluster/local.sh: error: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
