"""``api_key_file``: the API over HTTP (ASGI, no Ray) refuses /v1/* without the key."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from rayrec.serve.api import make_api
from rayrec.serve.service import RecommenderService, ServiceSettings

KEY = "s3cret-api-key-0123456789"


@pytest.fixture(scope="module")
def client(module_runs, tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "api.key"
    path.write_text(KEY + "\n")
    settings = ServiceSettings(checkpoint=str(module_runs["ppo"]), api_key_file=str(path))
    service = RecommenderService.load(settings.resolved())

    async def score(job):
        return service.score([job])[0]

    with TestClient(make_api(service, score)) as c:
        yield c
    service.close()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"X-API-Key": KEY[:-1]},
        {"Authorization": KEY},
    ],
)
def test_v1_needs_the_key(client, headers):
    for method, path in (
        ("post", "/v1/recommend"),
        ("post", "/v1/feedback"),
        ("get", "/v1/models"),
    ):
        r = client.request(method, path, json={"user_id": 1}, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer" and "API key" in r.json()["error"]


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}])
def test_the_key_opens_v1_and_health_stays_open(client, headers):
    r = client.post("/v1/recommend", json={"user_id": 1, "k": 1}, headers=headers)
    assert r.status_code == 200, r.text
    feedback = {"request_id": r.json()["request_id"], "responses": [{"click": True}]}
    assert client.post("/v1/feedback", json=feedback, headers=headers).status_code == 200
    assert client.post("/v1/feedback", json=feedback, headers=headers).status_code == 409
    assert client.get("/healthz").status_code == 200
