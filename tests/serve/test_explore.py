"""Safe exploration without HTTP: the budget's window, the propensity floor's mixture, the
fallback policy's slates and the settings' bounds."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from rayrec.contracts.errors import SpecError
from rayrec.serve.explore import ExplorationBudget, fallback_name, unsupported
from rayrec.serve.metrics import Series
from rayrec.serve.policy import ServedPolicy, choose_slate
from rayrec.serve.schemas import RecommendRequest
from rayrec.serve.service import RecommenderService, RequestError, ServiceSettings


@pytest.mark.parametrize("budget", [0.0, 0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("window", [10, 100])
def test_budget_caps_every_window_and_prefix(budget, window):
    """Whatever mix of sample and greedy requests arrives, no prefix and no window of the last
    ``window`` slates holds more than ``budget`` sampled; all-sample traffic gets the budget."""
    rng = np.random.default_rng(7)
    gate = ExplorationBudget(budget, window)
    asks = rng.random(5 * window) < 0.8
    got = np.array([gate.take(bool(a)) for a in asks])
    assert not np.any(got & ~asks)  # greedy requests stay greedy
    counts = np.cumsum(got)
    assert np.all(counts <= budget * np.arange(1, len(got) + 1) + 1e-9)
    windows = np.convolve(got, np.ones(window, dtype=int), mode="valid")
    assert windows.max() <= budget * window + 1e-9
    assert gate.share == pytest.approx(got[-window:].mean())
    all_sample = ExplorationBudget(budget, window)
    taken = sum(all_sample.take(True) for _ in range(window))
    assert taken == int(np.floor(budget * window + 1e-9))


def _mixed(scores: np.ndarray, slate: tuple[int, ...], floor: float) -> float:
    """The mixed policy's probability of an ordered slate, by hand."""
    left, p = list(range(len(scores))), 1.0
    for j in slate:
        z = sum(np.exp(scores[i]) for i in left)
        p *= (1 - floor) * np.exp(scores[j]) / z + floor / len(left)
        left.remove(j)
    return p


def test_floor_propensities_are_the_mixture_and_match_frequencies():
    scores = np.array([4.0, 0.0, -3.0, 2.0])
    valid = np.ones(4, dtype=bool)
    floor = 0.3
    slates = list(itertools.permutations(range(4), 2))
    exact = {s: _mixed(scores, s, floor) for s in slates}
    assert sum(exact.values()) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(slates, 0)
    n = 20_000
    for _ in range(n):
        action, props = choose_slate(scores, valid, 2, "sample", rng, floor)
        slate = tuple(action.tolist())
        assert np.prod(props) == pytest.approx(exact[slate], rel=1e-12)
        assert props.min() >= floor / 4
        counts[slate] += 1
    for slate, p in exact.items():
        sd = np.sqrt(p * (1 - p) / n)
        assert abs(counts[slate] / n - p) < 5 * sd, (slate, counts[slate] / n, p)


def test_floor_never_chooses_masked_candidates():
    scores = np.array([5.0, 0.0, 9.0, 1.0])
    valid = np.array([True, True, False, True])
    rng = np.random.default_rng(1)
    for _ in range(200):
        action, props = choose_slate(scores, valid, 3, "sample", rng, 0.5)
        assert 2 not in action and np.all(props >= 0.5 / 3)


def test_non_finite_scores_are_unsupported():
    assert unsupported(np.array([0.1, 2.0])) is None
    assert "1 of 3" in unsupported(np.array([0.1, np.nan, 2.0]))
    assert "2 of 2" in unsupported(np.array([np.inf, -np.inf]))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("explore_budget", 1.5, "--explore-budget (1.5) must be a number in [0, 1]"),
        ("explore_budget", -0.1, "must be a number in [0, 1]"),
        ("explore_budget", True, "must be a number in [0, 1]"),
        ("propensity_floor", 1.0, "--propensity-floor (1.0) must be a number in [0, 1)"),
        ("propensity_floor", -0.5, "must be a number in [0, 1)"),
        ("fallback", "best", "--fallback ('best') must be one of popular, ctr"),
    ],
)
def test_bad_exploration_settings(field, value, message):
    with pytest.raises(SpecError) as e:
        ServiceSettings.from_dict({"checkpoint": "x", field: value})
    assert str(e.value).endswith(message) and str(e.value).startswith(
        f"--{field.replace('_', '-')} ("
    )


@pytest.fixture(scope="module")
def broken_service(module_runs, serve_specs):
    """A service whose model raises in its forward pass: the module of another world (embed_dim
    8) scoring this world's 16-dimensional features."""
    from rayrec.experiment import save_untrained_run

    def make(tmp, fallback):
        other_ckpt = save_untrained_run(
            tmp / f"narrow-{fallback}", *serve_specs("ppo.yaml", ["env.embed_dim=8"]), seed=5
        )
        good = ServedPolicy.load(module_runs["ppo"])
        wrong = dataclasses.replace(good, module=ServedPolicy.load(other_ckpt).module)
        settings = ServiceSettings(checkpoint=str(module_runs["ppo"]), fallback=fallback)
        return RecommenderService([wrong], settings.resolved())

    return make


@pytest.mark.parametrize("fallback", ["popular", "ctr"])
def test_a_raising_model_is_served_by_the_fallback(broken_service, tmp_path, fallback):
    service = broken_service(tmp_path, fallback)
    body = {"user_id": 1, "candidates": [3, 30, 300, 7], "k": 2, "seed": 0}
    job = service.prepare(RecommendRequest.model_validate(body))
    scored = service.score([job])[0]
    assert scored.failure is not None  # the forward pass raised (shape mismatch)
    out = service.finish(job, scored)
    column = {"popular": 0, "ctr": 1}[fallback]
    scalars = service.policies[0].catalog.scalars[[3, 30, 300, 7], column]
    assert out["items"] == [[3, 30, 300, 7][i] for i in np.argsort(-scalars, kind="stable")[:2]]
    assert out["fallback"] and out["fallback_policy"] == fallback_name(fallback)
    assert out["propensity"] == 1.0 and out["mode"] == "greedy"
    assert service.stats["fallbacks"] == 1


def test_a_raising_model_without_fallback_is_503(broken_service, tmp_path):
    service = broken_service(tmp_path, None)
    job = service.prepare(RecommendRequest.model_validate({"user_id": 1, "k": 2}))
    with pytest.raises(RequestError) as e:
        service.finish(job, service.score([job])[0])
    assert e.value.status == 503 and "no fallback policy" in e.value.message


def test_grafana_dashboard_charts_every_series():
    """configs/grafana/rayrec-serve.json is valid JSON whose queries name only series the
    replicas export, and every one of them."""
    path = Path(__file__).resolve().parents[2] / "configs" / "grafana" / "rayrec-serve.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {
        re.sub(r"_(bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"ray_\w+", e)
    }
    series = {f"ray_{v}" for k, v in vars(Series).items() if k.isupper()}
    assert names == series
