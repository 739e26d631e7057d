"""``rayrec traffic`` over real HTTP against a real Serve app (two versions split by user), and its
answers to bad input: one line, exit code 2."""

from __future__ import annotations

import csv
import http.server
import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from rayrec.cli import main
from rayrec.data.served import FEEDBACK_DIR, read_served
from rayrec.loop.cli import REPORT_FILE, USERS_FILE
from rayrec.loop.traffic import TrafficOptions, run_traffic, traffic_user_ids
from rayrec.serve.identity import ab_share
from tests.serve.conftest import free_port, serve_apps

SPLIT = 0.5
USERS = 24
REPORT_KEYS = {
    "env", "url", "users", "seed", "mode", "concurrency", "requests", "feedback", "retries",
    "mixed_users", "elapsed_s", "alpha", "test", "arms", "difference", "warnings",
}  # fmt: skip
METRICS = ("return", "clicks", "sessions")


def _env_file(serve_specs, folder: Path, overrides: list[str] | None = None) -> Path:
    path = folder / f"env-{len(list(folder.glob('env-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(serve_specs("ppo.yaml", overrides)[0].to_dict()))
    return path


@pytest.fixture(scope="module")
def ab_app(ray_session, module_runs, tmp_path_factory):
    """An untrained PPO module as A and a DQN module as B, half of the users each, logging."""
    from rayrec.serve.app import APP_NAME

    log_dir = tmp_path_factory.mktemp("traffic-app") / "log"
    config = {
        "checkpoint": str(module_runs["ppo"]),
        "ab_checkpoint": str(module_runs["dqn"]),
        "split": SPLIT,
        "log_dir": str(log_dir),
        "flush_rows": 256,
        "flush_seconds": 0.5,
        "num_cpus": 0.25,
    }
    with serve_apps((APP_NAME, "/", config)) as url:
        yield url, log_dir


def _users(path: Path) -> list[dict]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    types = {"user_id": int, "clicks": int, "sessions": int, "requests": int, "return": float}
    for row in rows:
        row.update({name: cast(row[name]) for name, cast in types.items()})
        row["mixed"] = {"True": True, "False": False}[row["mixed"]]
    return rows


def _logged(log_dir: Path, requests: int, feedback: int) -> tuple[list[dict], list[dict]]:
    """The log's rows once it holds as many as were sent (parts are written every 0.5 s)."""
    deadline = time.time() + 30
    while True:
        impressions = read_served(log_dir).to_pylist()
        events = read_served(log_dir, FEEDBACK_DIR).to_pylist()
        if (len(impressions), len(events)) >= (requests, feedback) or time.time() > deadline:
            return impressions, events
        time.sleep(0.25)


@pytest.mark.integration
def test_traffic_against_a_served_ab_test(ab_app, serve_specs, tmp_path, capsys):
    url, log_dir = ab_app
    env, out = _env_file(serve_specs, tmp_path), tmp_path / "out"
    args = ["traffic", "--url", url, "--env", str(env), "--users", str(USERS), "--seed", "3"]
    assert main([*args, "--concurrency", "8", "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr()
    report = json.loads(printed.out)
    assert set(report) == REPORT_KEYS
    assert json.loads((out / REPORT_FILE).read_text()) == report
    assert printed.err == ""  # not a terminal: no progress bar

    # Every user has exactly one arm, the service's: B when ab_share(user) < split.
    users = _users(out / USERS_FILE)
    assert len(users) == USERS == report["users"] and report["mixed_users"] == 0
    assert len({u["user_id"] for u in users}) == USERS
    versions = {arm["arm"]: arm["version"] for arm in report["arms"]}
    assert list(versions) == ["A", "B"]
    for u in users:
        assert u["arm"] == ("B" if ab_share(u["user_id"]) < SPLIT else "A")
        assert u["version"] == versions[u["arm"]] and u["mixed"] is False
    counts = Counter(u["arm"] for u in users)
    assert [arm["users"] for arm in report["arms"]] == [counts["A"], counts["B"]]
    assert sum(counts.values()) == USERS and min(counts.values()) >= 2
    for arm in report["arms"]:
        mine = [u for u in users if u["arm"] == arm["arm"]]
        for m in METRICS:
            assert arm[m]["mean"] == pytest.approx(np.mean([u[m] for u in mine]))
            assert arm[m]["low"] <= arm[m]["mean"] <= arm[m]["high"]
    for m in METRICS:
        d = report["difference"][m]
        mean_a, mean_b = (report["arms"][i][m]["mean"] for i in (0, 1))
        assert d["estimate"] == pytest.approx(mean_b - mean_a) and 0 <= d["p_value"] <= 1
        assert 0 <= d["always_valid_p"] <= 1 and "first_rejection" in d
    assert report["difference"]["arms"] == "B - A"

    # The served log: one impression per request sent, one feedback event per slate.
    assert report["requests"] == sum(u["requests"] for u in users) == report["feedback"]
    impressions, events = _logged(log_dir, report["requests"], report["feedback"])
    ids = [row["request_id"] for row in impressions]
    assert len(ids) == len(set(ids)) == report["requests"]
    assert len(events) == report["feedback"] and {e["request_id"] for e in events} == set(ids)
    per_user = Counter(row["user_id"] for row in impressions)
    assert per_user == {u["user_id"]: u["requests"] for u in users}
    policy = {(row["user_id"], row["policy"]) for row in impressions}
    assert policy == {(u["user_id"], u["version"]) for u in users}
    # The responses reported are the simulator's: the service's reward of them is the return.
    served = Counter()
    for e in events:
        served[e["user_id"]] += e["reward"]
    for u in users:
        assert served[u["user_id"]] == pytest.approx(u["return"], abs=1e-3)

    # One seed, one run: the same users, slates (each request carries a seed) and outcomes.
    again = tmp_path / "again"
    assert main([*args, "--concurrency", "3", "--out", str(again), "--quiet"]) == 0
    assert (again / USERS_FILE).read_text() == (out / USERS_FILE).read_text()
    table = capsys.readouterr().out  # without --json: a table and a line per difference
    assert all(f"B - A {m}: " in table and "(95% CI, Welch t), p = " in table for m in METRICS)
    assert report["mode"] == "sample" and {r["mode"] for r in impressions} == {"sample"}

    # --mode greedy (other users: seed 4): every slate is the top k, propensity 1 in the log.
    greedy = tmp_path / "greedy"
    flags = ["--users", "6", "--seed", "4", "--mode", "greedy", "--out", str(greedy), "--quiet"]
    assert main([*args[:5], *flags]) == 0
    mine = {u["user_id"]: u["requests"] for u in _users(greedy / USERS_FILE)}
    sent = 2 * report["requests"] + sum(mine.values())
    impressions, _ = _logged(log_dir, sent, 0)
    rows = [r for r in impressions if r["user_id"] in mine]
    assert len(rows) == sum(mine.values()) > 0
    assert {r["mode"] for r in rows} == {"greedy"} and {r["propensity"] for r in rows} == {1.0}


class _NotRayrec(http.server.BaseHTTPRequestHandler):
    """An HTTP server that is not rayrec: every GET answers 200 with a small HTML page."""

    def do_GET(self) -> None:
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def not_rayrec():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotRayrec)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _refused(args: list[str], capsys) -> str:
    """The one line on stderr of a ``rayrec traffic`` refused with exit code 2."""
    with pytest.raises(SystemExit) as exc:  # argparse exits itself; rayrec's errors return 2
        raise SystemExit(main(["traffic", *args]))
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--users", "0"], "argument --users: expected an integer >= 1, got '0'"),
        (
            ["--users", "5", "--concurrency", "0"],
            "argument --concurrency: expected an integer >= 1",
        ),
        (
            ["--users", "5", "--seed", "-1"],
            "argument --seed: expected an integer in [0, 2147483648)",
        ),
        (["--users", "5", "--api-key-file", "/nonexistent/key"], "--api-key-file /nonexistent/key"),
        (["--users", "5", "--env", "/nonexistent.yaml"], "/nonexistent.yaml: no such file"),
        (["--users", "5", "--env", "MARKET"], "not a session env"),
        (["--users", "5", "--url", "ftp://x"], "--url 'ftp://x': must start with http://"),
        (["--users", "5", "--mode", "best"], "argument --mode: invalid choice: 'best'"),
        (["--users", "5", "--url", "CLOSED"], "no answer (ConnectError"),
        (["--users", "5", "--url", "NOT_RAYREC"], "not a rayrec endpoint (GET /v1/models"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    flags, message, serve_specs, not_rayrec, tmp_path, capsys
):
    root = Path(__file__).resolve().parents[2]
    swap = {
        "MARKET": str(root / "envs" / "marketplace.yaml"),
        "CLOSED": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "NOT_RAYREC": not_rayrec,
    }
    args = {"--url": "http://127.0.0.1:9", "--env": str(_env_file(serve_specs, tmp_path))}
    flags = [swap.get(f, f) for f in flags]
    for name, value in args.items():
        if name not in flags:
            flags += [name, value]
    assert message in _refused(flags, capsys)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["env.num_items=600"], "--env: num_items is 600 but "),
        (["env.topic_spread=0.5"], "--env: its catalog (fingerprint "),
        (["env.world_seed=1"], "--env: world_seed is 1 but "),
    ],
)
def test_another_world_is_refused(ab_app, serve_specs, overrides, message, tmp_path, capsys):
    url, _ = ab_app
    env = _env_file(serve_specs, tmp_path, overrides)
    err = _refused(["--url", url, "--env", str(env), "--users", "5"], capsys)
    assert message in err and "world" in err


@pytest.mark.integration
def test_the_service_names_its_world(ab_app, serve_specs):
    """GET /v1/models carries what the world check compares (docs/serving.md)."""
    import httpx

    from rayrec.sim import SessionSimulator

    config = serve_specs("ppo.yaml")[0].config
    models = httpx.get(f"{ab_app[0]}/v1/models", timeout=30).json()["models"]
    fingerprint = SessionSimulator(config, 1, seed=0).catalog.fingerprint
    for model in models:
        assert model["catalog"] == fingerprint and model["embed_dim"] == config.embed_dim
        assert model["num_items"] == config.num_items and model["world_seed"] == config.world_seed


@pytest.fixture(scope="module")
def guarded(module_runs, tmp_path_factory):
    """rayrec's API (the same routes and service as in Serve) under plain uvicorn, without Ray,
    guarded by an API key."""
    import uvicorn

    from rayrec.serve.api import make_api
    from rayrec.serve.service import RecommenderService, ServiceSettings

    key = tmp_path_factory.mktemp("key") / "api.key"
    key.write_text("traffic-test-key-0123456789\n")
    settings = ServiceSettings(checkpoint=str(module_runs["ppo"]), api_key_file=str(key))
    service = RecommenderService.load(settings.resolved())

    async def score(job):
        return service.score([job])[0]

    port = free_port()
    config = uvicorn.Config(make_api(service, score), port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", key
    server.should_exit = True
    thread.join(timeout=10)
    service.close()


def test_api_key_file_opens_a_guarded_service(guarded, serve_specs, tmp_path, capsys):
    url, key = guarded
    args = ["--url", url, "--env", str(_env_file(serve_specs, tmp_path)), "--users", "4"]
    assert "the service wants an API key (--api-key-file F)" in _refused(args, capsys)
    assert main(["traffic", *args, "--api-key-file", str(key), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["users"] == 4 and report["requests"] == report["feedback"] > 0
    assert [arm["arm"] for arm in report["arms"]] == ["A"] and report["difference"] is None
    assert "is the service running an A/B split" in report["warnings"][0]


def test_slots_get_new_users_until_n_were_played(guarded, serve_specs):
    """More users than the simulator's batch: finished slots are refilled, every user once."""
    url, key = guarded
    config = serve_specs("ppo.yaml")[0].config
    options = TrafficOptions(url, users=4, seed=5, batch_size=2, api_key=key.read_text().strip())
    report = run_traffic(config, options)
    rows = report["per_user"]
    assert sorted(r["user_id"] for r in rows) == list(traffic_user_ids(5, np.arange(4)))
    assert sum(r["requests"] for r in rows) == report["requests"] == report["feedback"]
    assert all(r["steps"] == r["requests"] >= r["sessions"] >= 1 for r in rows)
