"""The served policy: inference-only module, catalog, retrieval, slates and their propensities."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rayrec.contracts.errors import SpecError
from rayrec.serve.policy import ServedPolicy, choose_slate, find_module_dir

NUM_ITEMS = 500  # the world of tests/serve/conftest.py


@pytest.fixture(scope="module")
def policies(module_runs):
    return {name: ServedPolicy.load(path) for name, path in module_runs.items()}


def test_module_id_matches_rllib():
    from ray.rllib.core import DEFAULT_MODULE_ID

    from rayrec.contracts import layout

    assert layout.DEFAULT_MODULE_ID == DEFAULT_MODULE_ID


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_inference_only_module_scores_like_the_full_module(policies, module_runs, name):
    """The served (inference-only) module gives the scores the evaluator's full module gives, on a
    real observation of the environment it was built for."""
    from rayrec.envs import SessionVectorEnv
    from rayrec.evaluation.policies import ModulePolicy

    served = policies[name]
    assert served.module.inference_only
    full = ModulePolicy.from_checkpoint(module_runs[name])
    env = SessionVectorEnv(num_envs=8, seed=0, **served.config.to_dict())
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(np.zeros(8, dtype=np.int64))
    np.testing.assert_allclose(served.scores(obs), full.scores(obs), rtol=1e-5, atol=1e-6)


def test_a_relative_checkpoint_path_loads(module_runs, monkeypatch):
    """`rayrec evaluate --checkpoint runs/x/checkpoints/final` and `make demo`'s final evaluation
    pass relative paths, which RLlib's loader alone rejects ("URI has empty scheme")."""
    from rayrec.evaluation.policies import ModulePolicy

    checkpoint = module_runs["ppo"].resolve()
    monkeypatch.chdir(checkpoint.parent.parent)
    relative = checkpoint.relative_to(checkpoint.parent.parent)
    assert not relative.is_absolute()
    policy = ModulePolicy.from_checkpoint(relative)
    assert policy.module is not None


def test_catalog_is_the_simulators(policies):
    from rayrec.sim import SessionSimulator

    served = policies["ppo"]
    sim = SessionSimulator(served.config, num_users=2, seed=123)
    np.testing.assert_array_equal(served.catalog.embedding, sim.catalog.embedding)
    np.testing.assert_array_equal(served.catalog.scalars, sim.catalog.scalars)
    assert served.catalog.num_items == NUM_ITEMS


def test_observation_features_come_from_the_catalog(policies):
    served = policies["ppo"]
    history = np.array([[-1] * 7 + [4, 5, 6]])
    cands = [np.array([10, 11, 12]), np.array([7])]
    obs = served.observation(
        np.repeat(history, 2, 0),
        np.zeros((2, 10, 4), np.float32),
        np.zeros((2, 5), np.float32),
        cands,
    )
    cat = served.catalog
    np.testing.assert_array_equal(obs["candidate_features"][0], cat.embedding[[10, 11, 12]])
    np.testing.assert_array_equal(obs["candidate_scalars"][1, 0], cat.scalars[7])
    np.testing.assert_array_equal(obs["action_mask"], [[1, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(obs["history_features"][0, :7], 0.0)
    np.testing.assert_array_equal(obs["history_features"][0, 7:], cat.embedding[[4, 5, 6]])
    np.testing.assert_array_equal(obs["history_mask"][0], [0] * 7 + [1] * 3)


def test_scores_do_not_depend_on_batch_neighbours(policies):
    """Padding a short candidate list to a batch's longest one changes none of its scores."""
    served = policies["ppo"]
    hist = np.full((1, 10), -1)
    resp = np.zeros((1, 10, 4), np.float32)
    ctx = np.zeros((1, 5), np.float32)
    alone = served.scores(served.observation(hist, resp, ctx, [np.array([3, 4])]))[0]
    batched = served.scores(
        served.observation(
            np.repeat(hist, 2, 0),
            np.repeat(resp, 2, 0),
            np.repeat(ctx, 2, 0),
            [np.array([3, 4]), np.arange(30, 60)],
        )
    )[0, :2]
    np.testing.assert_allclose(alone, batched, rtol=1e-5, atol=1e-6)


def test_retrieval_is_deterministic_per_seed_and_skips_history(policies):
    served = policies["ppo"]
    history = np.array([-1, -1, -1, -1, -1, 1, 2, 3, 4, 5])
    a = served.retrieve(history, np.random.default_rng(7))
    b = served.retrieve(history, np.random.default_rng(7))
    c = served.retrieve(history, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(a) == served.config.num_candidates == len(set(a.tolist()))
    assert not set(a.tolist()) & {1, 2, 3, 4, 5}
    assert a.min() >= 0 and a.max() < NUM_ITEMS


def test_retrieval_follows_the_history_topic(policies):
    """A history inside one topic brings that topic's items far above its share of the catalog."""
    served = policies["ppo"]
    cat = served.catalog
    history = np.flatnonzero(cat.topic == 3)[:10].astype(np.int64)
    found = np.concatenate(
        [served.retrieve(history, np.random.default_rng(seed)) for seed in range(20)]
    )
    share = np.mean(cat.topic[found] == 3)
    assert share > 3 * np.mean(cat.topic == 3), share


def test_greedy_slate_is_the_top_k_with_propensity_one():
    scores = np.array([0.1, 2.0, -1.0, 1.5, 3.0])
    valid = np.array([True, True, True, True, False])
    action, props = choose_slate(scores, valid, 3, "greedy", np.random.default_rng(0))
    np.testing.assert_array_equal(action, [1, 3, 0])
    np.testing.assert_array_equal(props, [1.0, 1.0, 1.0])


def _plackett_luce(scores: np.ndarray, slate: tuple[int, ...]) -> float:
    p, rest = 1.0, list(range(len(scores)))
    for j in slate:
        z = np.exp(scores[rest]).sum()
        p *= np.exp(scores[j]) / z
        rest.remove(j)
    return p


def test_sampled_slates_follow_their_propensities():
    """Propensities are the Plackett-Luce probabilities of the sampled slate (hand-computed), they
    sum to one over all slates, and sampled frequencies match them."""
    scores = np.array([1.0, 0.0, -0.5, 0.7])
    valid = np.ones(4, dtype=bool)
    slates = list(itertools.permutations(range(4), 2))
    exact = {s: _plackett_luce(scores, s) for s in slates}
    assert sum(exact.values()) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(slates, 0)
    n = 20_000
    for _ in range(n):
        action, props = choose_slate(scores, valid, 2, "sample", rng)
        slate = tuple(action.tolist())
        assert np.prod(props) == pytest.approx(exact[slate])
        assert props[0] == pytest.approx(np.exp(scores[slate[0]]) / np.exp(scores).sum())
        counts[slate] += 1
    for slate, p in exact.items():
        sd = np.sqrt(p * (1 - p) / n)
        assert abs(counts[slate] / n - p) < 5 * sd, (slate, counts[slate] / n, p)


@pytest.mark.parametrize("mode", ["greedy", "sample"])
def test_invalid_candidates_are_never_chosen(mode):
    scores = np.array([5.0, -np.inf, 0.0, 9.0, 1.0])
    valid = np.array([True, True, True, False, True])
    rng = np.random.default_rng(1)
    for _ in range(200):
        action, props = choose_slate(scores, valid, 3, mode, rng)
        assert 3 not in action and 1 not in action
        assert np.all(props > 0) and np.all(props <= 1)


def test_q_module_serves_q_values(policies):
    served = policies["dqn"]
    assert served.is_q_module and served.describe()["scores"] == "q_values"
    obs = served.observation(
        np.full((1, 10), -1),
        np.zeros((1, 10, 4), np.float32),
        np.zeros((1, 5), np.float32),
        [np.arange(5)],
    )
    assert np.all(np.isfinite(served.scores(obs)))


def test_wrong_environment_is_refused(module_runs, serve_specs):
    env, _ = serve_specs("ppo.yaml", ["env.history_len=4"])
    with pytest.raises(SpecError, match="history_features"):
        ServedPolicy.load(module_runs["ppo"], env)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(SpecError, match="no RLModule state"):
        find_module_dir(tmp_path)
    with pytest.raises(SpecError, match="no such directory"):
        ServedPolicy.load(tmp_path / "missing")


def test_version_names_run_checkpoint_and_weights(policies, module_runs):
    a, b = policies["ppo"].version, policies["dqn"].version
    assert a.startswith("ppo/final@") and b.startswith("dqn/final@") and a[-8:] != b[-8:]
    assert ServedPolicy.load(module_runs["ppo"]).version == a  # stable across loads
