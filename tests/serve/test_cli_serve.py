"""`rayrec serve` and the Serve config file: errors before Ray, and the command end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from rayrec.cli import main
from rayrec.data.served import read_served
from rayrec.serve.app import free_direct_port
from tests.serve.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "/nonexistent/ckpt"], "no such directory"),
        (["--checkpoint", "."], "not an rayrec/RLlib checkpoint"),
        (["--checkpoint", "CKPT", "--split", "0.2"], "--split needs --ab"),
        (["--checkpoint", "CKPT", "--ab", "/nonexistent"], "--ab /nonexistent: no such directory"),
        (["--checkpoint", "CKPT", "--ab", "CKPT", "--split", "2"], "expected a number in [0, 1]"),
        (["--checkpoint", "CKPT", "--port", "70000"], "expected a port"),
        (["--checkpoint", "CKPT", "--replicas", "0"], "positive integer"),
        (["--checkpoint", "CKPT", "--env", "nope.yaml"], "nope.yaml: no such file"),
        (["--checkpoint", "BARE"], "no spec.yaml above it; pass --env"),
        (["--checkpoint", "MARKET"], "a marketplace checkpoint plays the multi-stakeholder game"),
        (["--checkpoint", "CKPT", "--log-dir", "FILE"], "cannot create it"),
        (["--checkpoint", "SLATE12"], "slate_size 12; the serving API allows at most 10"),
        (["--checkpoint", "CKPT", "--ab", "SLATE12"], "--ab "),
        (["--checkpoint", "CANDS"], "num_candidates 101; the serving API allows at most 100"),
        (["--checkpoint", "CKPT", "--port", "80"], "--port (80) must be in [1024, 65435]"),
        (
            ["--checkpoint", "CKPT", "--ingress", "direct", "--address", "auto"],
            "--ingress direct needs the in-process Ray",
        ),
        (["--checkpoint", "CKPT", "--ingress", "proxy", "--proxy-port", "9000"], "--proxy-port is"),
        (["--checkpoint", "CKPT", "--ingress", "fast"], "invalid choice"),
        (["--checkpoint", "CKPT", "--explore-budget", "1.5"], "expected a number in [0, 1]"),
        (["--checkpoint", "CKPT", "--explore-budget", "-0.1"], "expected a number in [0, 1]"),
        (["--checkpoint", "CKPT", "--propensity-floor", "1"], "expected a number in [0, 1)"),
        (["--checkpoint", "CKPT", "--propensity-floor", "x"], "expected a number in [0, 1)"),
        (["--checkpoint", "CKPT", "--fallback", "best"], "invalid choice: 'best'"),
    ],
)
def test_bad_serve_command_lines(args, message, module_runs, tmp_path, capsys):
    bare = tmp_path / "bare"
    subprocess.run(["cp", "-r", str(module_runs["ppo"]), str(bare)], check=True)
    (tmp_path / "file").write_text("not a folder")
    market = tmp_path / "market"
    (market / "checkpoints" / "final").mkdir(parents=True)
    env = yaml.safe_load((ROOT / "envs" / "marketplace.yaml").read_text())
    (market / "spec.yaml").write_text(yaml.safe_dump({"env": env, "policy": {"algorithm": "PPO"}}))
    swap = {"CKPT": str(module_runs["ppo"]), "BARE": str(bare), "FILE": str(tmp_path / "file")}
    swap["MARKET"] = str(market / "checkpoints" / "final")
    swap["SLATE12"], swap["CANDS"] = str(module_runs["slate12"]), str(module_runs["cands101"])
    with pytest.raises(SystemExit) as exc:  # argparse exits itself; rayrec's errors return 2
        raise SystemExit(main(["serve", *[swap.get(a, a) for a in args]]))
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_config_file_builds_the_app(module_runs, tmp_path):
    """configs/serve.yaml is a valid Serve config whose builder makes rayrec's application."""
    from ray.serve.schema import ServeDeploySchema

    from rayrec.serve.app import DEPLOYMENT_NAME, build_app

    config = ServeDeploySchema.model_validate(
        yaml.safe_load((ROOT / "configs/serve.yaml").read_text())
    )
    app = config.applications[0]
    assert app.import_path == "rayrec.serve.app:build_app"
    assert config.http_options.host == "127.0.0.1"
    args = {**app.args, "checkpoint": str(module_runs["ppo"]), "log_dir": str(tmp_path / "log")}
    built = build_app(args)
    assert built._bound_deployment.name == DEPLOYMENT_NAME
    assert built._bound_deployment.num_replicas == app.args["replicas"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"replicas": 0}, "replicas"),
        ({"num_cpus": -1}, "num_cpus"),
        ({"batch_wait_s": "fast"}, "batch_wait_s"),
        ({"workers": 2}, "unknown serve setting"),
    ],
)
def test_builder_rejects_bad_arguments(module_runs, extra, message):
    from rayrec.contracts.errors import SpecError
    from rayrec.serve.app import build_app

    with pytest.raises(SpecError, match=message):
        build_app({"checkpoint": str(module_runs["ppo"]), **extra})


@pytest.mark.integration
@pytest.mark.parametrize("direct", [False, True], ids=["proxy", "direct_ingress"])
def test_rayrec_serve_command_end_to_end(module_runs, tmp_path, direct):
    """The command starts Ray and Serve, answers on --port (by default the replica's own server,
    Serve's proxy on --proxy-port; with --ingress proxy the proxy), and on Ctrl-C shuts down
    cleanly, writing the impressions it still buffered. The exploration flags reach the app."""
    port, log_dir = free_direct_port(), tmp_path / "log"
    cmd = [
        sys.executable,
        "-m",
        "rayrec.cli",
        "serve",
        *("--checkpoint", str(module_runs["ppo"])),
        *("--port", str(port), "--log-dir", str(log_dir), "--num-cpus", "0.25"),
        *("--explore-budget", "0", "--propensity-floor", "0.1", "--fallback", "ctr"),
    ]
    proxy_port = free_port() if direct else port
    cmd += ["--proxy-port", str(proxy_port)] if direct else ["--ingress", "proxy"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            cmd, start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline, answer = time.time() + 240, None
        while time.time() < deadline and proc.poll() is None:
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/v1/recommend", json={"user_id": 4}, timeout=10
                )
                # The proxy answers 404 (or 503) until the app is deployed.
                if answer.status_code not in (404, 503):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert answer is not None and answer.status_code == 200, stderr.read_text()
        answers = [answer]
        # The app may answer before `serve.run` returns and the command says it listens; Ctrl-C
        # comes after that, as a user's would.
        if direct:
            lines = [
                f"a replica answers directly on http://127.0.0.1:{port}\n",
                f"listening on http://127.0.0.1:{port} (the replica's own server; Serve's proxy, "
                f"which balances over replicas, on http://127.0.0.1:{proxy_port}) (Ctrl-C stops)",
            ]
        else:
            lines = [f"listening on http://127.0.0.1:{port} (Ctrl-C stops)\n"]
        while time.time() < deadline and not all(x in stderr.read_text() for x in lines):
            time.sleep(0.5)
        assert all(x in stderr.read_text() for x in lines), stderr.read_text()
        if direct:
            # The same replica through Serve's proxy: it answers and logs alike.
            url = f"http://127.0.0.1:{proxy_port}/v1/recommend"
            answers.append(httpx.post(url, json={"user_id": 5}, timeout=10))
            assert answers[-1].status_code == 200, answers[-1].text
            assert set(answers[-1].json()) == set(answer.json())
            # The replica dies; its replacement takes --port back (no port quarantine).
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
            os.kill(health["pid"], signal.SIGKILL)
            back = None
            while time.time() < deadline:
                try:
                    back = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                    if back.status_code == 200 and back.json()["pid"] != health["pid"]:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            assert back is not None and back.json()["pid"] != health["pid"], stderr.read_text()
            answers.append(httpx.post(url.replace(str(proxy_port), str(port)), json={"user_id": 6}))
            assert answers[-1].status_code == 200, answers[-1].text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    table = read_served(log_dir)
    assert sorted(table.column("request_id").to_pylist()) == sorted(
        a.json()["request_id"] for a in answers
    )
    # --explore-budget 0: every request asked to sample (the default) and was served greedily.
    assert (
        {a.json()["mode"] for a in answers} == set(table.column("mode").to_pylist()) == {"greedy"}
    )
    assert all(not a.json()["fallback"] for a in answers)


@pytest.mark.integration
def test_ctrl_c_while_serve_starts_shuts_down_cleanly(module_runs, tmp_path):
    """Ctrl-C after Ray started but before the app is up stops the command with exit code 0 (a
    KeyboardInterrupt raised inside Serve's start-up used to crash it or be ignored)."""
    cmd = [
        sys.executable,
        "-m",
        "rayrec.cli",
        "serve",
        *("--checkpoint", str(module_runs["ppo"]), "--port", str(free_port())),
        *("--num-cpus", "0.25"),
    ]
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            cmd,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and "Started a local Ray instance" not in stderr.read_text():
            assert proc.poll() is None, stderr.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("host", "extra", "warning"),
    [
        ("0.0.0.0", [], "no authentication: add --api-key-file"),
        ("10.1.2.3", ["--api-key-file", "KEYFILE"], "API key required"),
        ("127.0.0.1", [], None),
    ],
)
def test_binding_beyond_loopback_warns(module_runs, tmp_path, capsys, host, extra, warning):
    key = tmp_path / "api.key"
    key.write_text("k" * 32)
    extra = [str(key) if a == "KEYFILE" else a for a in extra]
    # --ingress direct with --address is refused after the address was checked: nothing starts.
    args = ["serve", "--checkpoint", str(module_runs["ppo"]), "--host", host, *extra]
    assert main([*args, "--ingress", "direct", "--address", "auto"]) == 2
    err = capsys.readouterr().err
    assert "--ingress direct needs the in-process Ray" in err
    if warning is None:
        assert "warning" not in err
    else:
        assert f"warning: --host {host} exposes the service" in err and warning in err
