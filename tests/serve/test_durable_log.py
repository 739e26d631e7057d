"""At-least-once impression logs through the API (ASGI, no Ray): a full disk twice, and every
served request id still ends up in the log."""

from __future__ import annotations

import errno

from starlette.testclient import TestClient

import rayrec.data.parts as log_module
from rayrec.data.served import read_served
from rayrec.serve.api import make_api
from rayrec.serve.service import RecommenderService, ServiceSettings


def test_enospc_twice_keeps_serving_and_loses_no_impression(module_runs, tmp_path, monkeypatch):
    real, calls = log_module.pq.write_table, [0]

    def write_table(*args, **kwargs):
        calls[0] += 1
        if calls[0] <= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(log_module.pq, "write_table", write_table)
    settings = ServiceSettings(
        checkpoint=str(module_runs["ppo"]),
        log_dir=str(tmp_path / "log"),
        flush_rows=4,
        flush_seconds=0.05,
    )
    service = RecommenderService.load(settings.resolved())

    async def score(job):
        return service.score([job])[0]

    served, health = [], []
    with TestClient(make_api(service, score)) as client:
        for user in range(40):
            r = client.post("/v1/recommend", json={"user_id": user, "k": 1})
            assert r.status_code == 200, r.text
            served.append(r.json()["request_id"])
            health.append(client.get("/healthz").json())
    service.close()
    assert calls[0] > 2 and service.impressions.failed_writes == 2
    assert all(h["status"] in ("ok", "degraded") for h in health)
    assert any("No space left" in " ".join(h["reasons"]) for h in health)
    logged = read_served(tmp_path / "log").column("request_id").to_pylist()
    assert sorted(logged) == sorted(served)  # every one, once
