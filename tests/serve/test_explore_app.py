"""Safe exploration over real HTTP: the exploration budget, the propensity floor, the fallback
policy for a checkpoint with non-finite weights, and the Prometheus metrics Ray exports.

One Serve instance holds two apps: ``rayrec`` (A: an untrained PPO module; B: a copy of it whose
weights are all NaN; explore budget 0.1, propensity floor 0.2, fallback ``popular``) and, under
``/nofb``, the NaN copy alone without a fallback.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from rayrec.data.served import read_served
from rayrec.serve.explore import fallback_name
from rayrec.serve.identity import ab_share
from rayrec.serve.metrics import Series
from tests.serve.conftest import nan_copy, post_all, serve_apps

pytestmark = pytest.mark.integration

BUDGET, FLOOR, SPLIT = 0.1, 0.2, 0.5
CANDIDATES = [11, 42, 99, 250, 301]  # k = m: the log holds every candidate's score
USERS_A = [u for u in range(10_000) if ab_share(u) >= SPLIT]
USERS_B = [u for u in range(10_000) if ab_share(u) < SPLIT]


@pytest.fixture(scope="module")
def apps(ray_session, module_runs, tmp_path_factory):
    from rayrec.serve.app import APP_NAME

    root = tmp_path_factory.mktemp("explore-app")
    broken = nan_copy(module_runs["ppo"], root / "nan-run")
    common = {"flush_rows": 64, "flush_seconds": 0.5, "num_cpus": 0.25, "max_batch_size": 16}
    explore = {
        "checkpoint": str(module_runs["ppo"]),
        "ab_checkpoint": str(broken),
        "split": SPLIT,
        "log_dir": str(root / "log"),
        "explore_budget": BUDGET,
        "propensity_floor": FLOOR,
        "fallback": "popular",
    }
    plain = {"checkpoint": str(broken), "log_dir": str(root / "log-nofb")}
    apps = [(APP_NAME, "/", {**explore, **common}), ("nofallback", "/nofb", {**plain, **common})]
    with serve_apps(*apps) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client, root


def _wait_for_rows(log_dir: Path, ids: set[str], timeout: float = 30.0):
    deadline = time.time() + timeout
    while True:
        rows = read_served(log_dir).to_pylist()
        found = {r["request_id"]: r for r in rows if r["request_id"] in ids}
        if len(found) == len(ids) or time.time() > deadline:
            return found
        time.sleep(0.5)


def _mixed_propensities(scores: list[float], floor: float) -> np.ndarray:
    """Per position: (1 - eps) * Plackett-Luce + eps / (candidates left), from the slate's scores
    in slate order when the slate holds every candidate (k = m)."""
    s = np.asarray(scores, dtype=np.float64)
    out = []
    for i in range(len(s)):
        rest = s[i:]
        policy = np.exp(s[i] - rest.max()) / np.exp(rest - rest.max()).sum()
        out.append((1 - floor) * policy + floor / len(rest))
    return np.array(out)


def test_budget_caps_sampling_and_floor_propensities_are_exact(apps):
    """1,000 requests that all ask to sample: at most the budget's share is sampled, and every
    sampled slate's logged propensity is the mixed policy's, recomputed from its logged scores."""
    client, root = apps
    rng = np.random.default_rng(0)
    bodies = [
        {"user_id": int(rng.choice(USERS_A)), "history": [1, 2], "candidates": CANDIDATES,
         "k": len(CANDIDATES), "mode": "sample", "seed": i}
        for i in range(1000)
    ]  # fmt: skip
    answers = asyncio.run(post_all(str(client.base_url), bodies, limit=16))
    assert [r.status_code for r in answers] == [200] * len(bodies)
    out = [r.json() for r in answers]
    modes = [o["mode"] for o in out]
    share = modes.count("sample") / len(modes)
    assert BUDGET - 0.01 <= share <= BUDGET  # the window starts empty: exactly 100 sampled
    greedy = [o for o in out if o["mode"] == "greedy"]
    assert all("exploration budget" in " ".join(o["warnings"]) for o in greedy)
    assert all(o["propensity"] == 1.0 and not o["fallback"] for o in out if o["mode"] == "greedy")

    rows = _wait_for_rows(root / "log", {o["request_id"] for o in out})
    assert len(rows) == len(out)
    for o in out:
        row = rows[o["request_id"]]
        assert row["mode"] == o["mode"] and row["policy"] == o["model_version"]
        k = row["slate_size"]
        assert k == row["num_candidates"] == len(CANDIDATES)
        if row["mode"] == "greedy":
            assert row["propensity"] == 1.0
            continue
        expected = _mixed_propensities(row["scores"][:k], FLOOR)
        np.testing.assert_allclose(row["propensities"][:k], expected, rtol=1e-9)
        assert row["propensity"] == pytest.approx(float(np.prod(expected)), rel=1e-9)
        assert min(row["propensities"][:k]) >= FLOOR / len(CANDIDATES)


def test_fallback_serves_when_the_model_gives_nan(apps):
    """B's weights are NaN: its users get the most popular candidates, logged as the fallback's
    greedy slate with propensity 1.0."""
    from rayrec.serve.policy import build_world
    from rayrec.specs import load_run_spec

    client, root = apps
    users = USERS_B[:20]
    bodies = [
        {"user_id": u, "candidates": CANDIDATES, "k": 3, "mode": "sample", "seed": 1} for u in users
    ]
    answers = asyncio.run(post_all(str(client.base_url), bodies, limit=16))
    assert [r.status_code for r in answers] == [200] * len(bodies), answers[0].text
    catalog, _ = build_world(load_run_spec(root / "nan-run")[0].config)
    popular = np.argsort(-catalog.scalars[CANDIDATES, 0], kind="stable")[:3]
    want = [CANDIDATES[i] for i in popular]
    out = [r.json() for r in answers]
    for o in out:
        assert o["fallback"] is True and o["fallback_policy"] == fallback_name("popular")
        assert o["items"] == want and o["mode"] == "greedy"
        assert o["propensities"] == [1.0] * 3 and o["propensity"] == 1.0
        assert any("not finite" in w for w in o["warnings"])
    rows = _wait_for_rows(root / "log", {o["request_id"] for o in out})
    assert {r["policy"] for r in rows.values()} == {fallback_name("popular")}
    assert {r["propensity"] for r in rows.values()} == {1.0}
    assert {r["mode"] for r in rows.values()} == {"greedy"}


def test_without_fallback_a_broken_model_is_a_clear_503(apps):
    client, _ = apps
    body = {"user_id": 3, "candidates": CANDIDATES, "k": 3}
    r = client.post("/nofb/v1/recommend", json=body)
    assert r.status_code == 503, r.text
    message = r.json()["error"]
    assert "cannot score this request" in message and "--fallback" in message
    assert client.get("/nofb/healthz").status_code == 200  # the replica itself is fine


def _scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = []
    for line in text.splitlines():
        m = re.match(r"^(ray_rayrec_\w+)\{(.*)\} (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def _total(samples, name: str, **labels: str) -> float:
    return sum(
        v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items())
    )


def test_prometheus_metrics_through_ray(apps):
    """Requests, latency, slates, feedback clicks and CTR, exploration share, fallbacks and the
    log backlog reach Ray's Prometheus endpoint with their tags."""
    import ray

    client, _ = apps
    version = client.get("/v1/models").json()["models"][0]["version"]
    served = []
    for i in range(5):
        body = {"user_id": USERS_A[i], "candidates": CANDIDATES, "k": 2, "mode": "greedy"}
        r = client.post("/v1/recommend", json=body)
        assert r.status_code == 200
        served.append(r.json()["request_id"])
    for request_id in served:
        fb = {"request_id": request_id, "responses": [{"click": True}, {}]}
        assert client.post("/v1/feedback", json=fb).status_code == 200
    client.post("/v1/recommend", json={"user_id": 1, "candidates": [1, 1]})  # 422
    client.post("/nofb/v1/recommend", json={"user_id": 3, "candidates": CANDIDATES, "k": 1})

    port = ray.nodes()[0]["MetricsExportPort"]
    prefix = "ray_"
    requests, latency = prefix + Series.REQUESTS, prefix + Series.LATENCY + "_count"
    checks = {
        "recommend 200": (requests, {"route": "/v1/recommend", "status": "200",
                                     "model_version": version}),
        "feedback 200": (requests, {"route": "/v1/feedback", "status": "200",
                                    "model_version": version}),
        "invalid 422": (requests, {"route": "/v1/recommend", "status": "422"}),
        "no fallback 503": (requests, {"route": "/v1/recommend", "status": "503"}),
        "latency": (latency, {"route": "/v1/recommend", "status": "200"}),
        "greedy slates": (prefix + Series.SLATES, {"model_version": version, "mode": "greedy"}),
        "sampled slates": (prefix + Series.SLATES, {"mode": "sample"}),
        "fallback slates": (prefix + Series.SLATES, {"fallback": "popular"}),
        "clicks": (prefix + Series.CLICKS, {"model_version": version}),
        "positions": (prefix + Series.POSITIONS, {"model_version": version}),
        "ctr": (prefix + Series.CTR, {"model_version": version}),
        "explore share": (prefix + Series.EXPLORE_SHARE, {}),
        "fallbacks": (prefix + Series.FALLBACKS, {"fallback": "popular", "reason": "unsupported"}),
    }  # fmt: skip
    deadline = time.time() + 60  # Ray's workers report every 10 s (metrics_report_interval_ms)
    while True:
        samples = _scrape(port)
        missing = [k for k, (n, lab) in checks.items() if _total(samples, n, **lab) <= 0]
        backlog = [lab for n, lab, _ in samples if n == prefix + Series.LOG_BACKLOG]
        if (not missing and backlog) or time.time() > deadline:
            break
        time.sleep(2)
    assert not missing, f"not exported (or zero): {missing}"
    assert {"impressions", "feedback"} <= {lab["table"] for lab in backlog}
    assert 0 < _total(samples, prefix + Series.CTR, model_version=version) <= 1
    shares = [v for n, _, v in samples if n == prefix + Series.EXPLORE_SHARE]
    assert any(0 < v <= BUDGET for v in shares)  # the budgeted app's replica (the other: 1.0)
