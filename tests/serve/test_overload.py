"""Overload over real HTTP: a slowed scorer under 150 concurrent requests gets fast 503s with
Retry-After, no request outlives the timeout, and the service answers normally afterwards."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.serve.conftest import serve_apps

pytestmark = pytest.mark.integration

TIMEOUT_S = 3.0
DELAY_S = 0.4  # each scoring batch (up to 4 requests) takes this long: 10 requests/s at most
ONGOING, QUEUED = 4, 8


@pytest.fixture(scope="module")
def slow_app(ray_session, module_runs):
    from rayrec.serve.app import APP_NAME

    config = {
        "checkpoint": str(module_runs["ppo"]),
        "num_cpus": 0.25,
        "max_batch_size": ONGOING,
        "max_ongoing_requests": ONGOING,
        "max_queued_requests": QUEUED,
        "retry_after_s": 2.0,
        "score_delay_s": DELAY_S,
    }
    with serve_apps((APP_NAME, "/", config), request_timeout_s=TIMEOUT_S) as url:
        yield url


async def _storm(base_url: str, n: int) -> list[tuple[int, float, str | None]]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:

        async def one(user: int) -> tuple[int, float, str | None]:
            start = time.monotonic()
            r = await client.post("/v1/recommend", json={"user_id": user, "k": 1})
            return r.status_code, time.monotonic() - start, r.headers.get("retry-after")

        return await asyncio.gather(*(one(u) for u in range(n)))


def test_overload_gets_fast_503s_and_no_request_outlives_the_timeout(slow_app):
    # 150 at once: 12 times what the replica holds (ONGOING + QUEUED). At 300 the proxy's own
    # per-connection cost dominated on a slow host (2026-12-07: median refusal 3.3-4.3 s, served
    # answers 7.3 s, on a CPU 2-3x slower than when this test was written), which measured the
    # machine, not the shedding.
    results = asyncio.run(_storm(slow_app, 150))
    codes = [c for c, _, _ in results]
    assert set(codes) <= {200, 408, 503}, sorted(set(codes))
    refused = [(t, after) for c, t, after in results if c == 503]
    # At most ONGOING + QUEUED wait at a time and the replica serves about 10 per second, so most
    # of a 150-request burst is refused, each at once and with the Retry-After of the config.
    assert len(refused) >= 100, {c: codes.count(c) for c in set(codes)}
    assert all(after == "2" for _, after in refused)
    # Refusals do not wait in a queue: they take what 150 connections at once cost the proxy on
    # 2 CPUs (measured while another test suite ran on the machine: median 1.3-1.8 s, 90% 2.6 s).
    waits = sorted(t for t, _ in refused)
    assert waits[len(waits) // 2] < TIMEOUT_S
    assert codes.count(200) >= ONGOING
    # Nothing hangs: every answer (served, refused or timed out) came by the timeout plus slack.
    assert max(t for _, t, _ in results) < TIMEOUT_S + 2.5
    # And the service recovers: a request after the storm is served.
    time.sleep(TIMEOUT_S)
    r = httpx.post(f"{slow_app}/v1/recommend", json={"user_id": 1, "k": 1}, timeout=30)
    assert r.status_code == 200, r.text
