"""Latency and throughput of `rayrec serve`, against the same model behind plain FastAPI + uvicorn.

Closed-loop load from a separate process: C clients each send ``POST /v1/recommend`` (a random
user with five history items, candidates retrieved by the service, k = 1, mode 'sample'), wait for
the answer and send the next. For C in (1, 8, 32) it measures p50 and p99 latency and requests/s
of rayrec's Ray Serve app (one replica, ``@serve.batch``), reached three ways: directly on the
replica's own port (direct ingress, the default of ``rayrec serve``), through Serve's HTTP proxy
(``rayrec serve --ingress proxy``) and through a ``DeploymentHandle`` from this process (the same
replica, one Ray instance), and, in the same run, of the
same API and model served by plain uvicorn without Ray (one process, one request at a time: the
floor). All write the impression log. Next to latency it reports the servers' CPU time per request
(Linux /proc: for Serve every process Ray started, for plain the uvicorn process), which a
machine shared with other work disturbs far less than it disturbs latency. Each cell is the median
over repeats; servers and client counts are
interleaved so that drift in the machine's load hits both alike.

    python benchmarks/bench_serve.py [--checkpoint DIR] [--seconds 8] [--repeats 3]
        [--serve-env throughput|default]

Without ``--checkpoint`` it serves an untrained PPO module on envs/session.yaml (5,000 items, 20
candidates): latency does not depend on the weights.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _body(rng, num_items: int) -> dict:
    return {
        "user_id": int(rng.integers(0, 2**40)),
        "history": rng.integers(0, num_items, 5).tolist(),
        "k": 1,
        "mode": "sample",
    }


# ---- the load generator (its own process) ---------------------------------------------------------
async def _load(url: str, clients: int, seconds: float, warmup: float, num_items: int) -> dict:
    import aiohttp
    import numpy as np

    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        rng = np.random.default_rng(i)
        while True:
            t = time.perf_counter()
            if t >= stop_at:
                return
            async with session.post(f"{url}/v1/recommend", json=_body(rng, num_items)) as r:
                await r.read()
                ok = r.status == 200
            done = time.perf_counter()
            if t >= measure_from:
                latencies.append(done - t)
                errors += not ok

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": errors,
        "p50_ms": 1000 * latencies[n // 2] if n else None,
        "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))] if n else None,
        "rps": n / seconds,
    }


async def _handle_load(handle, clients: int, seconds: float, warmup: float, num_items: int) -> dict:
    """The same closed loop through a DeploymentHandle from this (the driver's) process."""
    import numpy as np

    latencies: list[float] = []
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def client(i: int) -> None:
        rng = np.random.default_rng(i)
        while True:
            t = time.perf_counter()
            if t >= stop_at:
                return
            await handle.recommend.remote(_body(rng, num_items))
            if t >= measure_from:
                latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(client(i) for i in range(clients)))
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": 0,
        "p50_ms": 1000 * latencies[n // 2] if n else None,
        "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))] if n else None,
        "rps": n / seconds,
    }


def _cpu_seconds(root: int, skip: set[int]) -> float:
    """User + system CPU seconds of the live processes under ``root`` (Linux /proc), not
    counting the ``skip`` ones and their descendants; ``root`` itself counts unless skipped."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    total, stack = (0 if root in skip else ticks.get(root, 0)), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in skip:
                total += ticks.get(child, 0)
                stack.append(child)
    return total / os.sysconf("SC_CLK_TCK")


def _run_load(
    url: str, clients: int, args: argparse.Namespace, num_items: int, server: tuple[int, set[int]]
) -> dict:
    """One cell; ``server`` is (root pid, pids to skip) of the server's processes, whose CPU time
    per request is measured over the cell (warm-up included)."""
    cmd = [
        sys.executable,
        __file__,
        "--load",
        url,
        "--clients",
        str(clients),
        "--seconds",
        str(args.seconds),
        "--warmup",
        str(args.warmup),
        "--num-items",
        str(num_items),
    ]
    load = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    root, skip = server
    before = _cpu_seconds(root, {*skip, load.pid})
    out, _ = load.communicate(timeout=600)
    after = _cpu_seconds(root, {*skip, load.pid})
    if load.returncode != 0:
        raise RuntimeError(f"the load generator failed ({load.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    # The load generator's clock: requests in the measured window plus the warm-up's share.
    served = result["rps"] * (args.seconds + args.warmup)
    result["cpu_ms"] = 1000 * (after - before) / max(served, 1)
    return result


# ---- the plain FastAPI + uvicorn server (its own process) -------------------------------------
def _plain_server(checkpoint: str, port: int, log_dir: str) -> None:
    import torch
    import uvicorn

    from rayrec.serve.api import make_api
    from rayrec.serve.service import RecommenderService, ServiceSettings

    torch.set_num_threads(1)
    settings = ServiceSettings(checkpoint=checkpoint, log_dir=log_dir).resolved()
    service = RecommenderService.load(settings, writer="plain")

    async def score(job):
        return service.score([job])[0]

    try:
        uvicorn.run(make_api(service, score), host="127.0.0.1", port=port, log_level="warning")
    finally:
        service.close()


def _wait_ready(url: str, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready in {timeout} s")


# ---- the driver ------------------------------------------------------------------------------
def _checkpoint(args: argparse.Namespace, tmp: Path) -> tuple[str, int]:
    from rayrec.contracts.layout import find_run_dir
    from rayrec.experiment import save_untrained_run
    from rayrec.specs import EnvSpec, PolicySpec, load_run_spec, load_yaml

    if args.checkpoint:
        env, _, _ = load_run_spec(find_run_dir(Path(args.checkpoint).resolve()))
        return args.checkpoint, env.config.num_items
    env = EnvSpec.from_dict(load_yaml(ROOT / "envs" / "session.yaml"))
    policy = PolicySpec.from_dict(load_yaml(ROOT / "policies" / "ppo.yaml"))
    return str(save_untrained_run(tmp / "untrained", env, policy)), env.config.num_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", help="checkpoint to serve (default: an untrained PPO module)"
    )
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per cell")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 3 s per cell")
    parser.add_argument(
        "--serve-env",
        choices=("throughput", "default"),
        default="throughput",
        help="Ray Serve's mode: throughput-optimised (what rayrec serve starts) or Ray's default",
    )
    # Internal entry points of the subprocesses.
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--plain-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", help=argparse.SUPPRESS)
    parser.add_argument("--num-items", type=int, default=5000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        clients = int(args.clients)
        result = asyncio.run(_load(args.load, clients, args.seconds, args.warmup, args.num_items))
        print(json.dumps(result))
        return
    if args.plain_server:
        _plain_server(args.checkpoint, args.plain_server, args.log_dir)
        return
    if args.quick:
        args.repeats, args.seconds, args.warmup = 1, 3.0, 1.0
    clients = [int(c) for c in args.clients.split(",")]

    import ray
    from ray import serve

    from rayrec.serve.app import APP_NAME, build_app, direct_urls, free_direct_port, serve_env

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        checkpoint, num_items = _checkpoint(args, tmp)
        serve_port, plain_port = _free_port(), _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        plain = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--plain-server",
                str(plain_port),
                "--checkpoint",
                checkpoint,
                "--log-dir",
                str(tmp / "log-plain"),
            ],
            env=env,
        )
        # Read by Ray's processes when they start: what `rayrec serve` sets (direct ingress on).
        os.environ.update(serve_env(free_direct_port(), args.serve_env == "throughput"))
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
            app = build_app(
                {"checkpoint": checkpoint, "log_dir": str(tmp / "log-serve"), "num_cpus": 1}
            )
            serve.run(app, name=APP_NAME, route_prefix="/")
            (direct,) = direct_urls("127.0.0.1")
            urls = {
                "serve": f"http://127.0.0.1:{serve_port}",
                "direct": direct,
                "plain": f"http://127.0.0.1:{plain_port}",
            }
            for url in urls.values():
                _wait_ready(url)
            cells: dict[tuple[str, int], list[dict]] = {}
            load_before = os.getloadavg()[0]
            # Serve's processes: everything Ray started under this driver; plain's: its process.
            servers = {
                "serve": (os.getpid(), {os.getpid(), plain.pid}),
                "plain": (plain.pid, set()),
            }
            idle = {}
            for name, (root, skip) in servers.items():
                before = _cpu_seconds(root, skip)
                time.sleep(args.seconds)
                idle[name] = (_cpu_seconds(root, skip) - before) / args.seconds
            servers["direct"] = servers["serve"]  # the same processes, another way in
            handle = serve.get_app_handle(APP_NAME)
            for repeat in range(args.repeats):
                for c in clients:
                    for name in [*urls, "handle"]:
                        if name == "handle":
                            root, skip = os.getpid(), {plain.pid}
                            before = _cpu_seconds(root, skip)
                            result = asyncio.run(
                                _handle_load(handle, c, args.seconds, args.warmup, num_items)
                            )
                            served = result["rps"] * (args.seconds + args.warmup)
                            cpu = 1000 * (_cpu_seconds(root, skip) - before) / max(served, 1)
                            result["cpu_ms"] = cpu
                        else:
                            result = _run_load(urls[name], c, args, num_items, servers[name])
                        cells.setdefault((name, c), []).append(result)
                        sys.stderr.write(f"repeat {repeat + 1} {name:>6} {c:>2} clients {result}\n")
        finally:
            plain.terminate()
            plain.wait(timeout=60)
            serve.shutdown()
            ray.shutdown()
            loads = (load_before, os.getloadavg()[0])
    _print_table(cells, clients, args, loads, idle)


def _print_table(
    cells: dict,
    clients: list[int],
    args: argparse.Namespace,
    loads: tuple[float, float],
    idle: dict[str, float],
) -> None:
    def median(name: str, c: int, key: str) -> float:
        return statistics.median(r[key] for r in cells[(name, c)])

    print(
        f"\n{os.cpu_count()} CPUs (1-minute load average {loads[0]:.1f} before, {loads[1]:.1f} "
        f"after); median of {args.repeats} repeat(s) of {args.seconds:g} s per cell; closed "
        f"loop, separate client process (the handle: the driver's own); Ray Serve mode: "
        f"{args.serve_env}\n"
    )
    print("| server | clients | p50 ms | p99 ms | requests/s | server CPU ms/request | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    labels = {
        "serve": "rayrec Serve app, via the proxy",
        "direct": "rayrec Serve app, direct ingress",
        "plain": "plain FastAPI + uvicorn",
        "handle": "rayrec Serve app, DeploymentHandle (in-process, no HTTP)",
    }
    for c in clients:
        for name, label in labels.items():
            errors = sum(r["errors"] for r in cells[(name, c)])
            print(
                f"| {label} | {c} | {median(name, c, 'p50_ms'):.1f} | "
                f"{median(name, c, 'p99_ms'):.1f} | {median(name, c, 'rps'):.0f} | "
                f"{median(name, c, 'cpu_ms'):.1f} | {errors} |"
            )
    print("\n| Serve app | clients | Serve/plain p50 | Serve/plain p99 | Serve/plain requests/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in ("serve", "direct", "handle"):
        for c in clients:
            ratios = [
                median(name, c, k) / median("plain", c, k) for k in ("p50_ms", "p99_ms", "rps")
            ]
            label = labels[name].removeprefix("rayrec Serve app, ")
            print(f"| {label} | {c} | {ratios[0]:.2f} | {ratios[1]:.2f} | {ratios[2]:.2f} |")
    print(
        "\nIdle (no requests), the Serve app's processes (all ways in) use "
        f"{100 * idle['serve']:.0f}% of a CPU and the plain server {100 * idle['plain']:.0f}%; "
        "the CPU per request above includes that background."
    )


if __name__ == "__main__":
    main()
