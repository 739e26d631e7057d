"""The rollout route over ASGI (no Ray): the API key guards it, a step needs one replica and a
loaded B, a checkpoint must exist and serve the same items; a split moves users by stable hash."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from rayrec.serve.admin import ROLLOUT_PATH
from rayrec.serve.api import make_api
from rayrec.serve.identity import ab_share
from rayrec.serve.service import RecommenderService, ServiceSettings

KEY = "admin-api-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _client(module_runs, tmp_path, replicas: int = 1) -> tuple[TestClient, RecommenderService]:
    path = tmp_path / "api.key"
    path.write_text(KEY + "\n")
    settings = ServiceSettings(checkpoint=str(module_runs["ppo"]), api_key_file=str(path))
    service = RecommenderService.load(settings.resolved())

    async def score(job):
        return service.score([job])[0]

    return TestClient(make_api(service, score, lambda: replicas)), service


def test_rollout_steps_move_users_by_hash(module_runs, tmp_path):
    client, service = _client(module_runs, tmp_path)
    with client:
        assert client.post(ROLLOUT_PATH, json={"share": 0.5}).status_code == 401  # no key
        r = client.post(ROLLOUT_PATH, json={"share": 0.5}, headers=AUTH)
        assert r.status_code == 409 and "no rollout under way" in r.json()["error"]
        body = {"checkpoint": str(module_runs["dqn"]), "share": 0.3}
        status = client.post(ROLLOUT_PATH, json=body, headers=AUTH).json()
        old, new = status["old"], status["new"]
        assert status["share"] == status["split"] == 0.3 and status["versions"] == [old, new]
        for user in range(40):
            served = client.post(
                "/v1/recommend", json={"user_id": user, "k": 1}, headers=AUTH
            ).json()["model_version"]
            assert served == (new if ab_share(user) < 0.3 else old)
        r = client.post("/v1/recommend", json={"user_id": 7, "k": 1}, headers=AUTH).json()
        feedback = {"request_id": r["request_id"], "responses": [{"click": True}]}
        assert client.post("/v1/feedback", json=feedback, headers=AUTH).status_code == 200
        guard = client.get(ROLLOUT_PATH, headers=AUTH).json()["guard"]
        assert guard == {r["model_version"]: {"clicks": 1, "slots": 1, "ctr": 1.0}}
        back = client.post(ROLLOUT_PATH, json={"share": 0.0}, headers=AUTH).json()
        assert back["share"] == back["split"] == 0.0 and back["versions"] == [old, new]
    service.close()


def _served(client: TestClient, users: range) -> list[str]:
    return [
        client.post("/v1/recommend", json={"user_id": u, "k": 1}, headers=AUTH).json()[
            "model_version"
        ]
        for u in users
    ]


def test_rollouts_follow_each_other_without_a_restart(module_runs, tmp_path):
    """After a finished rollout (B serves everyone) the next one goes into A's idle slot: the old
    version is B, and share 0 keeps everyone on it; users move by the other end of the hash."""
    client, service = _client(module_runs, tmp_path)
    with client:
        first = {"checkpoint": str(module_runs["dqn"]), "share": 1.0}
        done = client.post(ROLLOUT_PATH, json=first, headers=AUTH).json()
        assert set(_served(client, range(30))) == {done["new"]}
        second = {"checkpoint": str(module_runs["ppo"]), "share": 0.0}
        status = client.post(ROLLOUT_PATH, json=second, headers=AUTH).json()
        assert status["old"] == done["new"] and status["new"] == done["old"]
        assert status["split"] == 1.0 and status["share"] == 0.0 and status["guard"] == {}
        assert set(_served(client, range(30))) == {status["old"]}
        status = client.post(ROLLOUT_PATH, json={"share": 0.4}, headers=AUTH).json()
        expected = [status["new"] if ab_share(u) >= 0.6 else status["old"] for u in range(40)]
        assert _served(client, range(40)) == expected
        # Mid-rollout, a third checkpoint is refused: both versions serve users.
        r = client.post(ROLLOUT_PATH, json=first, headers=AUTH)
        assert r.status_code == 409 and "both versions serve users" in r.json()["error"]
    service.close()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"checkpoint": "/no/such/run", "share": 0.1}, 422, "no such directory"),
        ({"share": 1.5}, 422, "share"),
        ({"share": 0.1, "extra": 1}, 422, "extra"),
    ],
)
def test_bad_steps_are_refused(module_runs, tmp_path, body, status, message):
    client, service = _client(module_runs, tmp_path)
    with client:
        r = client.post(ROLLOUT_PATH, json=body, headers=AUTH)
        assert r.status_code == status and message in r.json()["error"]
        assert len(service.policies) == 1
    service.close()


def test_several_replicas_are_refused(module_runs, tmp_path):
    client, service = _client(module_runs, tmp_path, replicas=2)
    with client:
        r = client.post(ROLLOUT_PATH, json={"share": 0.1}, headers=AUTH)
        assert r.status_code == 409 and "2 replicas" in r.json()["error"]
    service.close()
