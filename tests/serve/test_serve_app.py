"""The Serve app over real HTTP: one app per module on a free port, a trained PPO checkpoint (A)
and a Q-module checkpoint (B) split by user, an impression log, bad input, a killed replica."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from rayrec.cli import main
from rayrec.data.served import FEEDBACK_DIR, Impressions, impression_schema, read_served
from rayrec.serve.identity import ab_share
from rayrec.serve.schemas import MAX_CANDIDATES, MAX_K
from tests.serve.conftest import post_all, serve_apps

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NUM_ITEMS = 500  # the world of tests/serve/conftest.py

SPLIT = 0.5
CONTEXT = [0.0, 0.2, 0.5, 0.5, 0.1]
TINY_TRAINING = [
    "--iterations",
    "1",
    "--eval-users",
    "20",
    "--quiet",
    *("--set", "env_runners.num_env_runners=0"),
    *("--set", "env_runners.num_envs_per_env_runner=16"),
    *("--set", "training.train_batch_size_per_learner=256"),
    *("--set", "training.minibatch_size=64"),
    *("--set", "training.num_epochs=1"),
    *("--set", f"env.num_items={NUM_ITEMS}"),
]


@pytest.fixture(scope="module")
def app(ray_session, module_runs, tmp_path_factory):
    """A trained PPO checkpoint as A, the Q module as B, logging with short flushes."""
    from rayrec.serve.app import APP_NAME

    root = tmp_path_factory.mktemp("serve-app")
    env, ppo = str(ROOT / "envs" / "session.yaml"), str(ROOT / "policies" / "ppo.yaml")
    args = ["train", "--env", env, "--policy", ppo, "--out", str(root / "ppo"), *TINY_TRAINING]
    assert main(args) == 0
    log_dir = root / "log"
    config = {
        "checkpoint": str(root / "ppo" / "checkpoints" / "final"),
        "ab_checkpoint": str(module_runs["dqn"]),
        "split": SPLIT,
        "log_dir": str(log_dir),
        "flush_rows": 64,
        "flush_seconds": 0.5,
        "replicas": 1,
        "num_cpus": 0.25,
        "max_batch_size": 16,
        "batch_wait_s": 0.005,
    }
    with serve_apps((APP_NAME, "/", config)) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c, log_dir


def _body(user: int, **fields) -> dict:
    return {"user_id": user, "history": [1, 2, {"item_id": 3, "watch": 0.7}], **fields}


def test_happy_path(app):
    client, _ = app
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    models = client.get("/v1/models").json()
    versions = [m["version"] for m in models["models"]]
    assert [m["algorithm"] for m in models["models"]] == ["PPO", "DQN"]
    assert models["split"] == SPLIT and versions == health.json()["models"]

    r = client.post("/v1/recommend", json=_body(7, k=3, context=CONTEXT))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_version"] in versions and out["mode"] == "sample"
    assert len(out["items"]) == len(out["scores"]) == len(out["propensities"]) == 3
    assert len(set(out["items"])) == 3 and all(0 <= i < NUM_ITEMS for i in out["items"])
    assert not {1, 2, 3} & set(out["items"])  # retrieval skips the history
    assert all(0 < p <= 1 for p in out["propensities"])
    assert out["propensity"] == pytest.approx(np.prod(out["propensities"]))

    responses = [{"click": True, "watch": 0.9}, {"skip": 1}, {}]
    fb = client.post("/v1/feedback", json={"request_id": out["request_id"], "responses": responses})
    assert fb.status_code == 200, fb.text
    version = out["model_version"]
    assert fb.json() == {"request_id": out["request_id"], "model_version": version, "reward": 1.0}
    again = client.post(
        "/v1/feedback", json={"request_id": out["request_id"], "responses": responses}
    )
    assert again.status_code == 409 and "already received" in again.json()["error"]

    schema = client.get("/openapi.json").json()
    assert {"/v1/recommend", "/v1/feedback", "/v1/models", "/healthz"} <= set(schema["paths"])
    assert "RecommendRequest" in schema["components"]["schemas"]


def test_batching_under_concurrency(app):
    """Concurrent requests are scored together and get exactly what they get alone."""
    client, _ = app
    rng = np.random.default_rng(0)
    bodies = [
        _body(
            int(u),
            candidates=rng.choice(NUM_ITEMS, 12, replace=False).tolist(),
            k=2,
            mode="greedy",
            context=CONTEXT,
        )
        for u in rng.choice(10_000, 48, replace=False)
    ]
    before = client.get("/healthz").json()["stats"]
    together = asyncio.run(post_all(str(client.base_url), bodies))
    after = client.get("/healthz").json()["stats"]
    assert all(r.status_code == 200 for r in together), [r.text for r in together][:3]
    assert after["requests"] - before["requests"] == len(bodies)
    assert after["batches"] - before["batches"] < len(bodies)  # some requests shared a pass
    assert after["largest_batch"] > 1
    for body, response in zip(bodies[:12], together[:12], strict=True):
        alone = client.post("/v1/recommend", json=body).json()
        batched = response.json()
        assert batched["items"] == alone["items"]
        np.testing.assert_allclose(batched["scores"], alone["scores"], rtol=1e-5, atol=1e-6)


def test_deployment_handle_recommends_like_http(app):
    """In-process callers skip HTTP: ``handle.recommend.remote(body)``, same answer and log."""
    from ray import serve

    from rayrec.serve.app import APP_NAME
    from rayrec.serve.service import RequestError

    _, log_dir = app
    handle = serve.get_app_handle(APP_NAME)
    out = handle.recommend.remote(_body(7, k=2, seed=3, context=CONTEXT)).result()
    assert len(out["items"]) == 2 and out["propensity"] > 0 and out["request_id"]
    with pytest.raises(RequestError, match="user_id") as err:
        handle.recommend.remote({"user_id": "seven"}).result()
    assert err.value.status == 422
    deadline = time.time() + 30
    while time.time() < deadline and out["request_id"] not in _logged_ids(log_dir):
        time.sleep(0.2)
    assert out["request_id"] in _logged_ids(log_dir)


def _logged_ids(log_dir: Path) -> list[str]:
    table = read_served(log_dir)
    return table.column("request_id").to_pylist() if table.num_rows else []


def test_ab_split_by_user(app):
    client, _ = app
    versions = [m["version"] for m in client.get("/v1/models").json()["models"]]
    users = list(range(1000, 1400))
    bodies = [{"user_id": u, "mode": "greedy", "context": CONTEXT} for u in users]
    responses = asyncio.run(post_all(str(client.base_url), bodies, limit=16))
    got = [versions.index(r.json()["model_version"]) for r in responses]
    assert got == [int(ab_share(u) < SPLIT) for u in users]  # the documented rule, exactly
    assert abs(np.mean(got) - SPLIT) < 0.1  # 400 users: sd 0.025
    again = asyncio.run(post_all(str(client.base_url), bodies[:40], limit=16))
    assert [r.json()["model_version"] for r in again] == [
        r.json()["model_version"] for r in responses[:40]
    ]


def test_impression_log_content_and_schema(app):
    client, log_dir = app
    t0 = time.time()
    sent = []
    for user, k, mode in [(11, 1, "sample"), (12, 3, "greedy"), (13, 2, "sample")]:
        body = _body(user, k=k, mode=mode, candidates=list(range(40, 60)), context=CONTEXT)
        out = client.post("/v1/recommend", json=body).json()
        sent.append((body, out))
    fb_id = sent[1][1]["request_id"]
    feedback = {"request_id": fb_id, "responses": [{"click": 1, "like": True}, {}, {}]}
    assert client.post("/v1/feedback", json=feedback).status_code == 200

    wanted = {out["request_id"] for _, out in sent}
    deadline = time.time() + 60
    while time.time() < deadline:
        table = read_served(log_dir)
        feedback_rows = read_served(log_dir, FEEDBACK_DIR).to_pylist()
        ids = set(table.column(Impressions.REQUEST_ID).to_pylist()) if table.num_rows else set()
        if wanted <= ids and any(r["request_id"] == fb_id for r in feedback_rows):
            break
        time.sleep(0.25)
    else:
        pytest.fail("the impression log did not get the rows within 60 s")

    assert table.schema.equals(impression_schema(10, MAX_CANDIDATES, MAX_K), check_metadata=True)
    rows = {r[Impressions.REQUEST_ID]: r for r in table.to_pylist()}
    for body, out in sent:
        row, k, m = rows[out["request_id"]], body["k"], len(body["candidates"])
        assert row[Impressions.USER_ID] == body["user_id"]
        assert row[Impressions.POLICY] == out["model_version"]
        assert row[Impressions.MODE] == body["mode"]
        assert t0 - 1 <= row[Impressions.TIME] <= time.time()
        assert row[Impressions.SLATE_SIZE] == k and row[Impressions.NUM_CANDIDATES] == m
        assert row[Impressions.CANDIDATE_ITEMS] == body["candidates"] + [-1] * (MAX_CANDIDATES - m)
        assert row[Impressions.ACTION_MASK] == [1] * m + [0] * (MAX_CANDIDATES - m)
        assert row[Impressions.SLATE_ITEMS] == out["items"] + [-1] * (MAX_K - k)
        action = row[Impressions.ACTION][:k]
        assert [row[Impressions.CANDIDATE_ITEMS][a] for a in action] == out["items"]
        assert row[Impressions.ACTION][k:] == [-1] * (MAX_K - k)
        assert row[Impressions.PROPENSITIES][:k] == pytest.approx(out["propensities"])
        assert row[Impressions.PROPENSITY] == pytest.approx(out["propensity"])
        assert row[Impressions.SCORES][:k] == pytest.approx(out["scores"], rel=1e-5)
        assert row[Impressions.HISTORY_ITEMS] == [-1] * 7 + [1, 2, 3]
        assert row[Impressions.HISTORY_RESPONSES][-4:] == pytest.approx([1, 0.7, 0, 0])
        assert row[Impressions.CONTEXT] == pytest.approx(CONTEXT)
    assert rows[sent[1][1]["request_id"]][Impressions.PROPENSITY] == 1.0  # greedy
    fb = next(r for r in feedback_rows if r["request_id"] == fb_id)
    assert fb["user_id"] == 12 and fb["policy"] == sent[1][1]["model_version"]
    assert fb["responses"] == [1, 0, 1, 0] + [0] * 8 and fb["reward"] == 1.0


OK = {"user_id": 1}
# (body, content type, expected status); bodies are sent as raw bytes.
BAD = {
    "malformed json": ('{"user_id": 1', None, 400),
    "truncated utf-8": (b'{"user_id": 1, "mode": "\xff"}', None, 400),
    "deeply nested json": ("[" * 30_000 + "]" * 30_000, None, 400),
    "empty body": ("", None, 422),
    "array body": ("[1, 2]", None, 422),
    "missing user_id": ("{}", None, 422),
    "user_id string": ({"user_id": "1"}, None, 422),
    "user_id float": ({"user_id": 1.5}, None, 422),
    "user_id bool": ({"user_id": True}, None, 422),
    "user_id negative": ({"user_id": -1}, None, 422),
    "user_id over int64": ({"user_id": 2**63}, None, 422),
    "user_id NaN": ('{"user_id": NaN}', None, 422),
    "unknown field": ({**OK, "user": 2}, None, 422),
    "history not a list": ({**OK, "history": 5}, None, 422),
    "history too long": ({**OK, "history": [1] * 257}, None, 422),
    "history negative id": ({**OK, "history": [-3]}, None, 422),
    "history string id": ({**OK, "history": ["7"]}, None, 422),
    "history entry unknown key": ({**OK, "history": [{"item_id": 1, "rating": 5}]}, None, 422),
    "history watch above 1": ({**OK, "history": [{"item_id": 1, "watch": 1.5}]}, None, 422),
    "history watch NaN": ('{"user_id": 1, "history": [{"item_id": 1, "watch": NaN}]}', None, 422),
    "history click Infinity": (
        '{"user_id": 1, "history": [{"item_id": 1, "click": Infinity}]}',
        None,
        422,
    ),
    "context too short": ({**OK, "context": [0, 0, 0]}, None, 422),
    "context out of range": ({**OK, "context": [0, 0, 0, 0, 1e6]}, None, 422),
    "context null entry": ({**OK, "context": [0, None, 0, 0, 0]}, None, 422),
    "context -Infinity": ('{"user_id": 1, "context": [0, 0, 0, 0, -Infinity]}', None, 422),
    "candidates empty": ({**OK, "candidates": []}, None, 422),
    "candidates too many": ({**OK, "candidates": list(range(101))}, None, 422),
    "candidates repeated": ({**OK, "candidates": [4, 5, 4]}, None, 422),
    "candidates not in catalog": ({**OK, "candidates": [4, NUM_ITEMS + 1]}, None, 422),
    "candidates float id": ({**OK, "candidates": [4, 5.0]}, None, 422),
    "k zero": ({**OK, "k": 0}, None, 422),
    "k above max": ({**OK, "k": MAX_K + 1}, None, 422),
    "k above candidates": ({**OK, "candidates": [1, 2], "k": 3}, None, 422),
    "k string": ({**OK, "k": "2"}, None, 422),
    "mode unknown": ({**OK, "mode": "best"}, None, 422),
    "seed negative": ({**OK, "seed": -5}, None, 422),
    "body too large": ({**OK, "history": [1] * 30_000}, None, 413),
    "text/plain body": (OK, "text/plain", 415),
    "form body": ("user_id=1", "application/x-www-form-urlencoded", 415),
}
BAD_FEEDBACK = {
    "feedback malformed id": ({"request_id": "abc", "responses": [{}]}, 422),
    "feedback old-format id": ({"request_id": "0" * 58, "responses": [{}]}, 422),
    "feedback unknown id": ({"request_id": "0" * 70, "responses": [{}]}, 404),
    "feedback no responses": ({"request_id": "0" * 70, "responses": []}, 422),
    "feedback watch negative": ({"request_id": "0" * 70, "responses": [{"watch": -1}]}, 422),
}


def _raw(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_recommend_requests_get_4xx_with_a_message(app, case):
    client, _ = app
    body, content_type, status = BAD[case]
    headers = {"content-type": content_type or "application/json"}
    r = client.post("/v1/recommend", content=_raw(body), headers=headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and len(error) > 5 and "\n" not in error


def test_oversized_chunked_body_gets_413(app):
    """Without a Content-Length the body is counted as it arrives."""
    client, _ = app

    def chunks():
        yield b'{"user_id": 1, "history": ['
        for _ in range(100):
            yield b"1, " * 1000
        yield b"1]}"

    r = client.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["error"]


@pytest.mark.parametrize("size", [100_000, 900_000])
def test_oversized_body_sent_before_reading_gets_413_not_a_reset(app, size):
    """A client that writes its whole body (Content-Length declared) before it reads the answer
    gets the 413 and its message, not a connection reset."""
    client, _ = app
    body = b'{"user_id": 1, "history": [' + b"1, " * (size // 3) + b"1]}"
    head = (
        f"POST /v1/recommend HTTP/1.1\r\nHost: {client.base_url.host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((client.base_url.host, client.base_url.port), timeout=30) as s:
        s.sendall(head + body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 413 " in status_line, reply[:300]
    assert b"larger than" in rest


@pytest.mark.parametrize("case", list(BAD_FEEDBACK))
def test_bad_feedback_gets_4xx_with_a_message(app, case):
    client, _ = app
    body, status = BAD_FEEDBACK[case]
    r = client.post("/v1/feedback", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/recommend", 405), ("GET", "/v2/recommend", 404), ("DELETE", "/healthz", 405)],
)
def test_wrong_routes_get_4xx_with_a_message(app, method, path, status):
    client, _ = app
    r = client.request(method, path)
    assert r.status_code == status and r.json()["error"]


def test_error_messages_name_the_problem(app):
    client, _ = app
    unknown = client.post("/v1/recommend", json={**OK, "candidates": [4, NUM_ITEMS + 1]})
    assert str(NUM_ITEMS + 1) in unknown.json()["error"]
    nan = client.post(
        "/v1/recommend",
        content=b'{"user_id": 1, "context": [0, 0, NaN, 0, 0]}',
        headers={"content-type": "application/json"},
    )
    assert "context.2" in nan.json()["error"] and nan.json()["details"][0]["loc"][-1] == "2"
    warned = client.post("/v1/recommend", json={**OK, "history": [NUM_ITEMS + 3, 4]})
    assert warned.status_code == 200 and str(NUM_ITEMS + 3) in warned.json()["warnings"][0]


def test_valid_requests_still_work_after_bad_input(app):
    client, _ = app
    r = client.post("/v1/recommend", json=_body(3, k=2))
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    assert client.get("/healthz").status_code == 200


def test_killed_replica_is_replaced_and_no_served_impression_is_lost(app):
    """Last in this module: the replica is SIGKILLed under traffic; Serve starts a new one, which
    recovers the dead one's journal: every request that got a 200 has its impression row."""
    import os
    import signal
    import threading

    client, log_dir = app
    before = client.get("/healthz").json()
    served: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=10) as c:
            user = 10_000
            while not stop.is_set():
                user += 1
                try:
                    r = c.post("/v1/recommend", json=_body(user, k=1))
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    served.append(r.json()["request_id"])

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while len(served) < 20 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.time() + 180
    replica = before["replica"]
    while time.time() < deadline:
        try:
            r = client.get("/healthz", timeout=5)
            if r.status_code == 200:
                replica = r.json()["replica"]
                if replica != before["replica"]:
                    break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    assert replica != before["replica"], "no new replica answered within 180 s"
    count = len(served)
    deadline = time.time() + 30
    while len(served) < count + 20 and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=30)
    assert len(served) >= count + 20, "the new replica did not serve the traffic"
    deadline = time.time() + 30  # the new replica flushes every 0.5 s
    missing = set(served)
    while missing and time.time() < deadline:
        missing = set(served) - set(_logged_ids(log_dir))
        time.sleep(0.2)
    assert not missing, f"{len(missing)} of {len(served)} served requests have no row"
