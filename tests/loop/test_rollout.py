"""``rayrec rollout`` against a real Serve app over HTTP: a ramp under 8 concurrent clients with no
failed request, an automatic rollback on simulator-driven feedback, and bad input (one line,
exit 2). The guard's verdict and the ramp's grammar are unit-tested first."""

from __future__ import annotations

import asyncio
import http.server
import itertools
import threading
import time

import httpx
import numpy as np
import pytest

from rayrec.cli import main
from rayrec.contracts.errors import SpecError
from rayrec.loop.rollout import (
    ROLLOUT_PATH,
    RolloutOptions,
    guard_verdict,
    parse_ramp,
    run_rollout,
)
from rayrec.loop.traffic import TrafficOptions, run_traffic
from rayrec.serve.identity import ab_share
from tests.serve.conftest import nan_copy, serve_apps

CLIENTS = 8
USERS = list(range(2000))


# ---- unit -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "steps"),
    [("10,50,100", (10.0, 50.0, 100.0)), ("100", (100.0,)), ("0.5,2", (0.5, 2.0))],
)
def test_ramp_parses(text, steps):
    assert parse_ramp(text) == steps


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("50,10", "strictly increasing"),
        ("10,10", "strictly increasing"),
        ("0,50", "in (0, 100]"),
        ("10,150", "in (0, 100]"),
        ("ten", "comma-separated percentages"),
    ],
)
def test_bad_ramp_is_one_line(text, message):
    with pytest.raises(SpecError) as e:
        parse_ramp(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def _status(a: tuple[int, int], b: tuple[int, int]) -> dict:
    guard = {
        v: {"clicks": c, "slots": s, "ctr": c / s} for v, (c, s) in zip("AB", (a, b), strict=True)
    }
    return {"old": "A", "new": "B", "guard": guard}


@pytest.mark.parametrize(
    ("a", "b", "margin", "rolls_back"),
    [
        ((50, 100), (30, 100), 0.0, True),  # B behind by 0.2
        ((50, 100), (30, 100), 0.25, False),  # within the margin
        ((50, 100), (60, 100), 0.0, False),  # B ahead
        ((50, 100), (9, 100), 0.0, False),  # too few clicks of B to judge
    ],
)
def test_guard_verdict(a, b, margin, rolls_back):
    options = RolloutOptions(url="http://x", checkpoint="c", guard_min_clicks=10, margin=margin)
    assert (guard_verdict(_status(a, b), options) is not None) == rolls_back


# ---- a real Serve app ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(ray_session, module_runs, tmp_path_factory):
    """Two apps on one Serve instance, logging: at ``/`` an untrained PPO module served alone;
    at ``/guarded`` a copy of it with NaN weights, served by its ``popular`` fallback (every slate
    ranks the candidates by popularity)."""
    from rayrec.serve.app import APP_NAME

    root = tmp_path_factory.mktemp("rollout-app")
    broken = nan_copy(module_runs["ppo"], root / "nan-run")
    common = {"flush_rows": 256, "flush_seconds": 0.5, "num_cpus": 0.25, "fallback": "popular"}
    plain = {"checkpoint": str(module_runs["ppo"]), "log_dir": str(root / "log")}
    guarded = {"checkpoint": str(broken), "log_dir": str(root / "log-guarded")}
    apps = [(APP_NAME, "/", {**plain, **common}), ("guarded", "/guarded", {**guarded, **common})]
    with serve_apps(*apps) as url:
        yield url


async def _clients(url: str, stop: threading.Event, seed: int) -> list[tuple]:
    """CLIENTS clients, each asking for its own users in turn until ``stop``: (client, user,
    sent at, status, version) per request."""
    out: list[tuple] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(c: int) -> None:
            rng = np.random.default_rng([seed, c])
            mine = USERS[c::CLIENTS]
            while not stop.is_set():
                user = int(rng.choice(mine))
                sent = time.monotonic()
                reply = await client.post(
                    "/v1/recommend",
                    json={"user_id": user, "candidates": [3, 17, 42, 99, 250], "k": 2},
                )
                version = reply.json().get("model_version") if reply.status_code == 200 else None
                out.append((c, user, sent, reply.status_code, version))

        await asyncio.gather(*(one(c) for c in range(CLIENTS)))
    return out


@pytest.mark.integration
def test_rollout_moves_every_user_with_no_failed_request(app, module_runs):
    url = app
    old = httpx.get(f"{url}/v1/models").json()["models"][0]["version"]
    stop, steps = threading.Event(), []

    def say(line: str) -> None:
        steps.append((time.monotonic(), line))

    results: list = []
    clients = threading.Thread(target=lambda: results.extend(asyncio.run(_clients(url, stop, 0))))
    clients.start()
    try:
        time.sleep(1.0)
        began = time.monotonic()
        options = RolloutOptions(
            url=url, checkpoint=str(module_runs["dqn"]), ramp=(10, 50, 100), step_seconds=3.0
        )
        result = run_rollout(options, say)
        ended = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        clients.join()
    assert result["outcome"] == "completed" and result["old"] == old
    new = result["new"]
    assert new != old

    assert results and all(status == 200 for *_, status, _ in results)  # 0 failed requests
    assert {version for *_, version in results} == {old, new}
    # The share of NEW by step: requests sent after a step began and answered before the next.
    marks = [t for t, line in steps if "% of users on" in line] + [ended]
    shares = []
    for lo, hi in itertools.pairwise(marks):
        window = [v for _, _, sent, _, v in results if lo < sent < hi - 0.2]
        shares.append(np.mean([v == new for v in window]))
    expected = [np.mean([ab_share(u) < s for u in USERS]) for s in (0.1, 0.5, 1.0)]
    assert shares[-1] == 1.0
    assert shares == pytest.approx(expected, abs=0.08)
    assert all(v == old for _, _, sent, _, v in results if sent < began)
    assert all(v == new for _, _, sent, _, v in results if sent > ended)
    # A user who moved stays moved: per client (sequential), once NEW, never the old one again.
    for c in range(CLIENTS):
        moved: set[int] = set()
        for _, user, _, _, version in sorted(r for r in results if r[0] == c):
            assert not (user in moved and version == old)
            if version == new:
                moved.add(user)
    health = httpx.get(f"{url}/healthz").json()
    assert health["models"] == [old, new]


@pytest.mark.integration
def test_a_worse_model_is_rolled_back(app, module_runs, serve_specs):
    """The old version ranks the candidates by popularity (its own weights are NaN, so the
    ``popular`` fallback serves it); NEW is an untrained module, near-uniform over the candidates,
    whose CTR per slot is lower in this world (about 0.29 against 0.33). Simulated users' feedback
    (``rayrec traffic``) drives the guard, which sends everyone back to the old version."""
    url = f"{app}/guarded"
    old = httpx.get(f"{url}/v1/models").json()["models"][0]["version"]
    traffic = TrafficOptions(url=url, users=120, concurrency=16, seed=5)
    config = serve_specs("ppo.yaml")[0].config
    done: list = []
    thread = threading.Thread(target=lambda: done.append(run_traffic(config, traffic)))
    thread.start()
    try:
        options = RolloutOptions(
            url=url,
            checkpoint=str(module_runs["ppo"]),
            ramp=(50, 100),
            step_seconds=30.0,
            guard_min_clicks=80,
            margin=0.0,
        )
        result = run_rollout(options)
    finally:
        thread.join()
    assert result["outcome"] == "rolled_back", result
    assert result["old"] == old and "below" in result["reason"]
    assert len(result["steps"]) == 1  # caught at 50%, before the ramp went on
    counts = result["steps"][-1]["guard"]
    assert counts[result["new"]]["ctr"] < counts[old]["ctr"]
    assert min(c["clicks"] for c in counts.values()) >= 80
    assert done and done[0]["requests"] > 0  # the traffic ran on through the rollback, unrefused
    # After the rollback every user is on the old version.
    status = httpx.get(f"{url}{ROLLOUT_PATH}").json()
    assert status["share"] == 0.0 and status["old"] == old
    bodies = [{"user_id": u, "candidates": [3, 17, 42], "k": 1} for u in range(200)]
    versions = {httpx.post(f"{url}/v1/recommend", json=b).json()["model_version"] for b in bodies}
    assert versions == {old}


# ---- bad input --------------------------------------------------------------------------------
class _NotRayrec(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def not_rayrec():
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotRayrec)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("ramp", "message"), [("50,10", "strictly increasing"), ("10,101", "in (0, 100]")]
)
def test_cli_bad_ramp(ramp, message, capsys):
    args = ["rollout", "--url", "http://127.0.0.1:1", "--checkpoint", "x", "--ramp", ramp]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and "--ramp" in err


def test_cli_not_a_rayrec_endpoint(not_rayrec, capsys):
    assert main(["rollout", "--url", not_rayrec, "--checkpoint", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a rayrec endpoint" in err


@pytest.mark.integration
def test_cli_unknown_checkpoint(app, tmp_path, capsys):
    url = app
    before = httpx.get(f"{url}{ROLLOUT_PATH}").json()
    missing = tmp_path / "no-such-run"
    assert main(["rollout", "--url", url, "--checkpoint", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(missing) in err and "no such directory" in err
    assert httpx.get(f"{url}{ROLLOUT_PATH}").json()["versions"] == before["versions"]
