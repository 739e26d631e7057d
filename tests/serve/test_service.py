"""The service without HTTP: request rules, A/B assignment, request ids, feedback rewards."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from pydantic import ValidationError

from rayrec.contracts.errors import SpecError
from rayrec.serve.identity import (
    REQUEST_ID_HEX,
    RequestIdentity,
    SeenFeedback,
    ab_share,
    sign_request_id,
    verify_request_id,
    version_tag,
)
from rayrec.serve.schemas import REQUEST_ID_PATTERN, FeedbackRequest, RecommendRequest
from rayrec.serve.service import RecommenderService, RequestError, ServiceSettings, default_context

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
    tag = version_tag("run/final@0123abcd")
    rid = sign_request_id(KEY, 2**63 - 1, tag, 7, 1_800_000_000)
    assert len(rid) == REQUEST_ID_HEX == 70
    assert re.fullmatch(REQUEST_ID_PATTERN, rid)
    assert verify_request_id(KEY, rid) == RequestIdentity(2**63 - 1, tag, 7, 1_800_000_000)
    assert sign_request_id(KEY, 5, tag, 1, 0) != sign_request_id(KEY, 5, tag, 1, 0)  # nonce
    flipped = rid[:5] + ("0" if rid[5] != "0" else "1") + rid[6:]
    assert verify_request_id(KEY, flipped) is None
    assert verify_request_id(bytes(32), rid) is None
    assert verify_request_id(KEY, "zz" * 35) is None
    assert verify_request_id(KEY, rid[:-2]) is None


def test_seen_feedback_is_bounded_by_count_and_age():
    seen = SeenFeedback(ttl_s=100.0, max_ids=3)
    for i in range(3):
        seen.add(f"id{i}", issued=1000, now=1000.0)
    assert len(seen) == 3 and "id0" in seen
    seen.add("id3", issued=1000, now=1000.0)  # over the bound: the oldest is forgotten
    assert "id0" not in seen and "id3" in seen and seen.evicted == 1
    seen.add("id4", issued=1150, now=1150.0)  # the others are past the TTL: dropped, not evicted
    assert len(seen) == 1 and "id4" in seen and seen.evicted == 1


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
    with pytest.raises(RequestError, match="expected 2") as err:
        service.feedback(
            FeedbackRequest.model_validate({"request_id": out["request_id"], "responses": [{}]})
        )
    assert err.value.status == 422
    req = FeedbackRequest.model_validate(
        {"request_id": out["request_id"], "responses": [{"click": True, "watch": 0.5}, {}]}
    )
    answer = service.feedback(req)
    assert answer["reward"] == 1.0  # reward_click = 1, other weights 0
    assert answer["model_version"] == out["model_version"]
    repeated = service.stats["feedback_repeated"]
    with pytest.raises(RequestError, match="already received") as err:
        service.feedback(req)
    assert err.value.status == 409 and service.stats["feedback_repeated"] == repeated + 1
    other = sign_request_id(bytes(32), 1, version_tag("x"), 2, int(time.time()))
    with pytest.raises(RequestError, match="unknown") as err:
        service.feedback(FeedbackRequest.model_validate({"request_id": other, "responses": [{}]}))
    assert err.value.status == 404
    tag = version_tag(out["model_version"])
    old = sign_request_id(service._key, 1, tag, 1, int(time.time() - 8 * 86400))
    with pytest.raises(RequestError, match="no longer accepted") as err:
        service.feedback(FeedbackRequest.model_validate({"request_id": old, "responses": [{}]}))
    assert err.value.status == 410


def test_feedback_survives_a_redeploy_and_keeps_its_version(module_runs, tmp_path, monkeypatch):
    """Model A serves; B replaces it (same key, from $RAYREC_REQUEST_ID_KEY); feedback for A's
    request is accepted, attributed to A by name, and its replay refused after a restart."""
    from rayrec.data.served import FEEDBACK_DIR, read_served

    monkeypatch.setenv("RAYREC_REQUEST_ID_KEY", "ab" * 32)
    log_dir = str(tmp_path / "log")
    a = RecommenderService.load(
        ServiceSettings(checkpoint=str(module_runs["ppo"]), log_dir=log_dir).resolved()
    )
    _, out = _recommend(a, k=1)
    a.close()
    b = RecommenderService.load(
        ServiceSettings(checkpoint=str(module_runs["dqn"]), log_dir=log_dir).resolved()
    )
    assert b.policies[0].version != out["model_version"]
    req = FeedbackRequest.model_validate(
        {"request_id": out["request_id"], "responses": [{"click": True}]}
    )
    assert b.feedback(req)["model_version"] == out["model_version"]
    b.close()
    rows = read_served(log_dir, FEEDBACK_DIR).to_pylist()
    assert [(r["request_id"], r["policy"]) for r in rows] == [
        (out["request_id"], out["model_version"])
    ]
    again = RecommenderService.load(
        ServiceSettings(checkpoint=str(module_runs["dqn"]), log_dir=log_dir).resolved()
    )
    with pytest.raises(RequestError) as err:  # the restarted replica read the feedback log
        again.feedback(req)
    assert err.value.status == 409
    again.close()
    # Without a shared key the next deployment draws its own: A's ids are then unknown.
    monkeypatch.delenv("RAYREC_REQUEST_ID_KEY")
    fresh = RecommenderService.load(ServiceSettings(checkpoint=str(module_runs["dqn"])).resolved())
    with pytest.raises(RequestError) as err:
        fresh.feedback(req)
    assert err.value.status == 404
    fresh.close()


def test_key_and_api_key_files(module_runs, tmp_path, monkeypatch):
    monkeypatch.delenv("RAYREC_REQUEST_ID_KEY", raising=False)
    key_file, api_file = tmp_path / "rid.key", tmp_path / "api.key"
    key_file.write_text("cd" * 32 + "\n")
    api_file.write_text("s3cret-api-key-0123456789\n")
    settings = ServiceSettings(
        checkpoint=str(module_runs["ppo"]),
        request_id_key_file=str(key_file),
        api_key_file=str(api_file),
    ).resolved()
    assert settings.request_id_key == ""  # the key stays in its file, out of the Serve config
    assert settings.signing_key() == bytes.fromhex("cd" * 32)
    assert settings.api_key() == "s3cret-api-key-0123456789"
    settings.check()
    for name, text, message in (
        ("short.key", "abcd", "16 bytes"),
        ("empty.key", "", "empty"),
        ("nothex.key", "zz" * 32, "hex"),
    ):
        (tmp_path / name).write_text(text)
        bad = ServiceSettings(
            checkpoint=str(module_runs["ppo"]), request_id_key_file=str(tmp_path / name)
        )
        with pytest.raises(SpecError, match=message):
            bad.check()
    (tmp_path / "short.api").write_text("short")
    for path, message in ((tmp_path / "short.api", ">= 16"), (tmp_path / "none", "cannot read")):
        bad = ServiceSettings(checkpoint=str(module_runs["ppo"]), api_key_file=str(path))
        with pytest.raises(SpecError, match=message):
            bad.check()


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
