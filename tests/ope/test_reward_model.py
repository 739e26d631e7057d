"""The reward model refitted on every bootstrap replicate (DM, DR, SNDR, Switch-DR) and FQE's.

The refits are checked against a plain weighted ridge fit per fold (step level) and against
FQE on a log whose lifetimes are repeated as many times as the resample draws them (trajectory
level); the intervals against the rows-only bootstrap on a model that fits noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from rayrec.ope import (
    EstimatorConfig,
    StepLog,
    TrajectoryLog,
    estimate,
    estimate_step,
    estimate_trajectory,
    reward_model,
)
from rayrec.ope.estimate import bootstrap_ci
from rayrec.ope.reward_model import CrossFitRidge, ridge_fit
from rayrec.ope.trajectory import _RefittedFQE


def _counts(n: int, replicates: int, seed: int) -> np.ndarray:
    """(1 + replicates, n): the data (all ones) and bootstrap resamples."""
    rng = np.random.default_rng(seed)
    draws = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(replicates)]
    return np.vstack([np.ones(n), *draws]).astype(np.float64)


def _refit_by_hand(
    model: CrossFitRidge, pi: np.ndarray, u: np.ndarray, c: np.ndarray
) -> np.ndarray:
    """The sums of :meth:`CrossFitRidge.replicate_sums` from a weighted ridge fit per fold."""
    x, y, f = model.design, model.reward, model.features
    out = np.zeros(1 + u.shape[1])
    for k in range(len(model.coef)):
        train = model.folds != k
        coef = ridge_fit(
            x[train].T @ (c[train, None] * x[train]),
            x[train].T @ (c[train] * y[train]),
            model.ridge,
        )
        rows = np.flatnonzero(~train)
        per_action = f @ coef[model.dx :] if f.ndim == 2 else f[rows] @ coef[model.dx :]
        q = np.clip(
            (x[rows, : model.dx] @ coef[: model.dx])[:, None] + per_action, *model.bounds[k]
        )
        out[0] += c[rows] @ (pi[rows] * q).sum(axis=1)
        out[1:] += (c[rows] * q[np.arange(len(rows)), model.action[rows]]) @ u[rows]
    return out


def _problem(shared: bool, n: int = 240, num_actions: int = 5, spread: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, 3))
    shape = (num_actions, 2) if shared else (n, num_actions, 2)
    features = rng.normal(size=shape)
    action = rng.integers(0, num_actions, n)
    reward = 0.5 + spread * rng.normal(size=n)
    pi = rng.dirichlet(np.ones(num_actions), size=n)
    u = rng.random((n, 2))
    return context, features, action, reward, pi, u


@pytest.mark.parametrize("shared", [True, False], ids=["shared-features", "per-row-features"])
@pytest.mark.parametrize("ridge", [1.0, 0.0])
def test_exact_refit_matches_a_weighted_ridge_fit_per_fold(shared, ridge):
    # Rewards in {0, 1}: many predictions are clipped, and the clip pattern moves per replicate.
    context, features, action, reward, pi, u = _problem(shared)
    reward = (reward > 0.6).astype(float)
    model = CrossFitRidge(context, features, action, reward, n_folds=3, ridge=ridge, seed=1)
    counts = _counts(len(reward), 6, seed=2)
    got = model.replicate_sums(pi, u, exact=True)(counts)
    expected = np.stack([_refit_by_hand(model, pi, u, c) for c in counts])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # All ones: the model of the whole log, exactly the point estimate's predictions.
    point = [(pi * model.q).sum(), *(model.q[np.arange(len(reward)), action] @ u)]
    np.testing.assert_allclose(got[0], point, rtol=1e-12)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-features", "per-row-features"])
def test_frozen_clip_pattern_is_exact_when_nothing_is_clipped(shared):
    # Two extreme rewards in every fold widen the clipping range far beyond every prediction.
    context, features, action, reward, pi, u = _problem(shared, spread=0.05)
    reward[:8] = [-5.0, 5.0] * 4
    model = CrossFitRidge(context, features, action, reward, ridge=1.0, seed=1)
    assert not model.clipped.any()
    counts = _counts(len(reward), 6, seed=3)
    frozen = model.replicate_sums(pi, u, exact=False)(counts)
    expected = np.stack([_refit_by_hand(model, pi, u, c) for c in counts])
    np.testing.assert_allclose(frozen, expected, rtol=1e-6)


def test_frozen_clip_pattern_is_close_to_exact_on_a_clipped_log():
    """Keeping the whole-log clip pattern moves each replicate by far less than the replicates
    spread (O(1/n) against O(n^-1/2))."""
    context, features, action, reward, pi, u = _problem(False, n=4000, num_actions=8)
    # Clicks that the logged item's features decide: a linear fit leaves [0, 1] at the extremes.
    utility = 3 * features[np.arange(len(reward)), action].sum(axis=1) + reward
    reward = (utility > 0.5).astype(float)
    model = CrossFitRidge(context, features, action, reward, ridge=1.0, seed=0)
    assert model.clipped.mean() > 0.05
    counts = _counts(len(reward), 30, seed=4)[1:]
    exact = model.replicate_sums(pi, u, exact=True)(counts)[:, 0] / len(reward)
    frozen = model.replicate_sums(pi, u, exact=False)(counts)[:, 0] / len(reward)
    assert np.abs(exact - frozen).max() < 0.1 * exact.std()


def _noise_log(n: int = 300, seed: int = 0) -> StepLog:
    """Rewards that are pure noise and twelve context features: the ridge model fits noise."""
    rng = np.random.default_rng(seed)
    num_actions = 4
    action = rng.integers(0, num_actions, n)
    return StepLog(
        reward=(rng.random(n) < 0.5).astype(float),
        pscore=np.full(n, 1 / num_actions),
        action=action,
        eval_dist=np.tile([0.7, 0.1, 0.1, 0.1], (n, 1)),
        context=rng.normal(size=(n, 12)),
        action_features=np.eye(num_actions),
    )


def _width(ci: tuple[float, float]) -> float:
    return ci[1] - ci[0]


def test_refitted_dm_interval_is_wider_than_the_rows_only_one_when_the_model_fits_noise():
    log = _noise_log()
    refit = estimate_step(log, config=EstimatorConfig(n_bootstrap=200, ridge=0.1))
    rows_only = estimate_step(log, config=EstimatorConfig(n_bootstrap=200, ridge=0.1, refit=False))
    for name, e in refit.items():
        assert e.value == rows_only[name].value, name  # the point estimate is the same
    assert _width(refit["dm"].ci95) > 1.5 * _width(rows_only["dm"].ci95)
    for name in ("ipw", "snipw"):  # no model: the same resamples, the same interval
        assert refit[name].ci95 == rows_only[name].ci95
    # Same seed, same interval; another seed, another one.
    again = estimate_step(log, config=EstimatorConfig(n_bootstrap=200, ridge=0.1))
    assert {k: v.ci95 for k, v in again.items()} == {k: v.ci95 for k, v in refit.items()}
    other = estimate_step(log, config=EstimatorConfig(n_bootstrap=200, ridge=0.1, seed=1))
    assert other["dm"].ci95 != refit["dm"].ci95


def test_a_given_reward_model_is_not_refitted():
    log = _noise_log()
    q = np.full((log.n, 4), 0.5)
    config = EstimatorConfig(n_bootstrap=50)
    est = estimate_step(log, ("dm",), config, rewards_model=q)
    assert est["dm"].ci95 == pytest.approx((0.5, 0.5))


def test_bootstrap_batches_do_not_change_the_resamples():
    values = np.random.default_rng(0).random(37)

    def mean(c: np.ndarray) -> np.ndarray:
        return (c @ values) / c.sum(axis=-1)

    # The same resamples; only the rounding of a matrix product against a vector one may differ.
    whole = bootstrap_ci({"mean": mean}, 37, 50, seed=3, batch_entries=37 * 50)["mean"]
    for entries in (37 * 7, 1):
        batched = bootstrap_ci({"mean": mean}, 37, 50, seed=3, batch_entries=entries)["mean"]
        assert batched == pytest.approx(whole, rel=1e-12)


def _reference_step(log: StepLog, config: EstimatorConfig) -> dict[str, tuple[float, float]]:
    """The step estimators' intervals one replicate at a time, as written in ``rayrec.ope.step``:
    the bootstrap's seeded stream, a weighted ridge fit per fold and replicate, np.percentile."""
    model = CrossFitRidge(
        log.context,
        log.action_features,
        log.action,
        log.reward,
        config.n_folds,
        config.ridge,
        config.seed,
    )
    w, r = log.weights, log.reward
    sw = np.where(w <= config.switch_tau, w, 0.0)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xB007]))
    draws = []
    for _ in range(config.n_bootstrap):
        c = np.bincount(rng.integers(0, log.n, log.n), minlength=log.n).astype(float)
        q_pi, q_w, q_sw = _refit_by_hand(model, log.eval_dist, np.stack([w, sw], axis=1), c)
        size, wr, w_sum, swr = c.sum(), c @ (w * r), c @ w, c @ (sw * r)
        draws.append(
            {
                "ipw": wr / size,
                "snipw": wr / w_sum,
                "dm": q_pi / size,
                "dr": (q_pi + wr - q_w) / size,
                "sndr": q_pi / size + (wr - q_w) / w_sum,
                "switch-dr": (q_pi + swr - q_sw) / size,
            }
        )
    return {name: tuple(np.percentile([d[name] for d in draws], [2.5, 97.5])) for name in draws[0]}


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "frozen-clip-pattern"])
def test_step_intervals_match_a_per_replicate_reference(exact, monkeypatch):
    # Per-row candidates; clicks for the exact refit (clipped predictions), and for the frozen
    # clip pattern rewards whose range no prediction reaches (there it is exact too).
    context, features, action, reward, pi, _ = _problem(False, n=300, spread=0.05)
    if exact:
        reward = (reward > 0.5).astype(float)
    else:
        reward[:8] = [-5.0, 5.0] * 4
        monkeypatch.setattr(reward_model, "EXACT_PAIRS", 0)
    pscore = np.random.default_rng(7).uniform(0.1, 1.0, len(reward))
    log = StepLog(reward, pscore, action, pi, context, features)
    config = EstimatorConfig(n_bootstrap=100, seed=4, switch_tau=2.0)
    got = estimate_step(log, config=config)
    for name, ci in _reference_step(log, config).items():
        assert got[name].ci95 == pytest.approx(ci, rel=1e-6), name


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "frozen-clip-pattern"])
def test_refit_in_uneven_batches_with_float32_candidates(exact, monkeypatch):
    # The refit's buffers are reused from batch to batch (30, 30, 30, then 10 replicates), and
    # float32 per-row candidate features (kept float32) give the float64 log's intervals.
    context, features, action, reward, pi, _ = _problem(False, n=300, spread=0.05)
    reward = (reward > 0.5).astype(float)
    if not exact:
        monkeypatch.setattr(reward_model, "EXACT_PAIRS", 0)
    pscore = np.random.default_rng(7).uniform(0.1, 1.0, len(reward))
    config = EstimatorConfig(n_bootstrap=100, seed=4, switch_tau=2.0)
    want = estimate_step(StepLog(reward, pscore, action, pi, context, features), config=config)
    monkeypatch.setattr(estimate, "BATCH_ENTRIES", 300 * 30)
    small = features.astype(np.float32)
    got = estimate_step(StepLog(reward, pscore, action, pi, context, small), config=config)
    for name, estimate_ in want.items():
        assert got[name].value == pytest.approx(estimate_.value, rel=1e-5), name
        assert got[name].ci95 == pytest.approx(estimate_.ci95, rel=1e-5), name


def _trajectories(n: int = 30, horizon: int = 5, d: int = 3, seed: int = 0) -> TrajectoryLog:
    rng = np.random.default_rng(seed)
    alive = np.arange(horizon)[None] < rng.integers(1, horizon + 1, n)[:, None]
    return TrajectoryLog(
        reward=np.where(alive, rng.random((n, horizon)), 0.0),
        ratio=np.where(alive, rng.uniform(0.5, 1.5, (n, horizon)), 1.0),
        alive=alive,
        q_features=rng.normal(size=(n, horizon, d)),
        pi_features=rng.normal(size=(n, horizon, d)),
    )


@pytest.mark.parametrize("ridge", [1.0, 0.0])
def test_fqe_refit_is_fqe_on_the_repeated_lifetimes(ridge):
    log = _trajectories()
    config = EstimatorConfig(n_bootstrap=10, ridge=ridge, gamma=0.9)
    counts = _counts(log.n, 3, seed=5)
    discount = config.gamma ** np.arange(log.reward.shape[1])
    theta, start = _RefittedFQE(log, config, discount)(counts)
    for c, th, s in zip(counts, theta, start, strict=True):
        repeat = np.repeat(np.arange(log.n), c.astype(int))
        repeated = TrajectoryLog(
            log.reward[repeat],
            log.ratio[repeat],
            log.alive[repeat],
            log.q_features[repeat],
            log.pi_features[repeat],
        )
        fqe = estimate_trajectory(repeated, ("fqe",), config)["fqe"].value
        assert s @ th / c.sum() == pytest.approx(fqe, rel=1e-8, abs=1e-10)


def test_refitted_fqe_interval_is_wider_when_fqe_fits_noise():
    rng = np.random.default_rng(1)
    log = _trajectories(n=40, d=12, seed=1)
    log = TrajectoryLog(
        np.where(log.alive, rng.random(log.reward.shape), 0.0),
        np.ones_like(log.ratio),
        log.alive,
        log.q_features,
        log.pi_features,
    )
    config = EstimatorConfig(n_bootstrap=200, ridge=0.1, gamma=0.9)
    refit = estimate_trajectory(log, ("fqe", "dr-rl"), config)
    rows_only = estimate_trajectory(
        log, ("fqe", "dr-rl"), EstimatorConfig(n_bootstrap=200, ridge=0.1, gamma=0.9, refit=False)
    )
    assert refit["fqe"].value == rows_only["fqe"].value
    assert _width(refit["fqe"].ci95) > 1.5 * _width(rows_only["fqe"].ci95)
    again = estimate_trajectory(log, ("fqe", "dr-rl"), config)
    assert again["fqe"].ci95 == refit["fqe"].ci95 and again["dr-rl"].ci95 == refit["dr-rl"].ci95
