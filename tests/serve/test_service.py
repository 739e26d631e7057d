"""The service without HTTP: request rules, A/B assignment, request ids, feedback rewards."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from rayrec.contracts.errors import SpecError
from rayrec.serve.schemas import FeedbackRequest, RecommendRequest
from rayrec.serve.service import (
    RecommenderService,
    RequestError,
    ServiceSettings,
    ab_share,
    default_context,
    sign_request_id,
    verify_request_id,
)

KEY = bytes(range(32))

NUM_ITEMS = 500  # the world of tests/serve/conftest.py


@pytest.fixture(scope="module")
def service(module_runs):
    settings = ServiceSettings(
        checkpoint=str(module_runs["ppo"]), ab_checkpoint=str(module_runs["dqn"]), split=0.5
    ).resolved()
    svc = RecommenderService.load(settings)
    yield svc
    svc.close()


def _recommend(service, **fields):
    job = service.prepare(RecommendRequest.model_validate({"user_id": 1, **fields}))
    return job, service.finish(job, service.score([job])[0])


def test_request_ids_round_trip_and_reject_tampering():
    rid = sign_request_id(KEY, 2**63 - 1, 1, 7)
    assert len(rid) == 58 and verify_request_id(KEY, rid) == (2**63 - 1, 1, 7)
    assert sign_request_id(KEY, 5, 0, 1) != sign_request_id(KEY, 5, 0, 1)  # fresh nonce
    flipped = rid[:5] + ("0" if rid[5] != "0" else "1") + rid[6:]
    assert verify_request_id(KEY, flipped) is None
    assert verify_request_id(bytes(32), rid) is None
    assert verify_request_id(KEY, "zz" * 29) is None
    assert verify_request_id(KEY, rid[:-2]) is None


def test_ab_share_is_stable_and_uniform():
    shares = np.array([ab_share(u) for u in range(20_000)])
    assert ab_share(12345) == ab_share(12345)
    assert shares.min() >= 0 and shares.max() < 1
    assert abs(np.mean(shares < 0.3) - 0.3) < 0.02
    # Neighbouring ids are not correlated (no ranges of users stuck on one variant).
    assert abs(np.corrcoef(shares[:-1], shares[1:])[0, 1]) < 0.03


def test_variant_follows_the_split(service):
    for user in range(200):
        assert service.variant(user) == int(ab_share(user) < 0.5)
    job, out = _recommend(service, user_id=next(u for u in range(100) if ab_share(u) < 0.5))
    assert out["model_version"] == service.policies[1].version and job.version == 1


def test_unknown_history_ids_are_dropped_with_a_warning(service):
    job, out = _recommend(service, history=[1, NUM_ITEMS + 5, {"item_id": 2, "watch": 0.5}])
    assert job.history_items.tolist() == [-1] * 8 + [1, 2]
    np.testing.assert_allclose(job.history_responses[-2:], [[1, 0, 0, 0], [1, 0.5, 0, 0]])
    assert len(out["warnings"]) == 1 and str(NUM_ITEMS + 5) in out["warnings"][0]


def test_long_history_keeps_the_last_h(service):
    job, _ = _recommend(service, history=list(range(40)))
    assert job.history_items.tolist() == list(range(30, 40))


def test_unknown_candidate_ids_are_an_error_naming_them(service):
    with pytest.raises(RequestError, match=str(NUM_ITEMS)) as err:
        _recommend(service, candidates=[1, 2, NUM_ITEMS])
    assert err.value.status == 422


def test_k_larger_than_the_candidates_is_an_error(service):
    with pytest.raises(ValidationError, match="k \\(3\\) must be <="):
        RecommendRequest.model_validate({"user_id": 1, "candidates": [1, 2], "k": 3})


def test_slate_comes_from_the_given_candidates(service):
    _, out = _recommend(service, candidates=[9, 8, 7, 6], k=3, mode="greedy")
    assert len(out["items"]) == 3 and set(out["items"]) <= {9, 8, 7, 6}
    assert out["propensities"] == [1.0, 1.0, 1.0] and out["propensity"] == 1.0
    assert out["scores"] == sorted(out["scores"], reverse=True)


def test_seeded_requests_are_reproducible(service):
    fields = {"seed": 5, "k": 2, "context": [0.0, 0.1, 0.0, 1.0, 0.2]}
    a = _recommend(service, **fields)[1]
    b = _recommend(service, **fields)[1]
    assert (a["items"], a["propensities"]) == (b["items"], b["propensities"])
    assert a["request_id"] != b["request_id"]


def test_default_context_is_the_hour_of_day():
    ctx = default_context(6 * 3600.0)  # 06:00 UTC
    np.testing.assert_allclose(ctx, [0, 0, 1, 0, 0], atol=1e-6)


def test_feedback_reward_and_checks(service):
    _, out = _recommend(service, k=2)
    req = FeedbackRequest.model_validate(
        {"request_id": out["request_id"], "responses": [{"click": True, "watch": 0.5}, {}]}
    )
    assert service.feedback(req)["reward"] == 1.0  # reward_click = 1, other weights 0
    with pytest.raises(RequestError, match="expected 2") as err:
        service.feedback(
            FeedbackRequest.model_validate({"request_id": out["request_id"], "responses": [{}]})
        )
    assert err.value.status == 422
    other = sign_request_id(bytes(32), 1, 0, 2)
    with pytest.raises(RequestError, match="unknown") as err:
        service.feedback(FeedbackRequest.model_validate({"request_id": other, "responses": [{}]}))
    assert err.value.status == 404


def test_ab_needs_the_same_catalog(module_runs, serve_specs, tmp_path):
    from rayrec.experiment import save_untrained_run

    other = save_untrained_run(tmp_path / "other", *serve_specs("ppo.yaml", ["env.world_seed=9"]))
    settings = ServiceSettings(checkpoint=str(module_runs["ppo"]), ab_checkpoint=str(other))
    with pytest.raises(SpecError, match="another catalog"):
        RecommenderService.load(settings)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"split": 1.5}, "--split"),
        ({"split": True}, "--split"),
        ({"flush_rows": 0}, "flush_rows"),
        ({"flush_seconds": float("inf")}, "flush_seconds"),
        ({"request_id_key": "xyz"}, "hex"),
        ({"request_id_key": "abcd"}, "16 bytes"),
    ],
)
def test_settings_are_validated(fields, message):
    with pytest.raises(SpecError, match=message):
        ServiceSettings(checkpoint="x", **fields)


def test_settings_reject_unknown_keys():
    with pytest.raises(SpecError, match="unknown serve setting"):
        ServiceSettings.from_dict({"checkpoint": "x", "replica": 2})


def test_settings_resolve_paths_and_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = ServiceSettings(checkpoint="ckpt", log_dir="logs").resolved()
    assert s.checkpoint == str(tmp_path / "ckpt") and s.log_dir == str(tmp_path / "logs")
    assert len(bytes.fromhex(s.request_id_key)) == 32
    assert s.resolved().request_id_key == s.request_id_key
