"""The log schema, collect, and the reader's errors (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayrec.data import Col, LogError, expand_observations, read_log, validate_log
from rayrec.evaluation.collect import collect
from rayrec.evaluation.collect import parse_behavior
from rayrec.data.schema import OBS_COLUMNS, log_schema
from rayrec.envs.observation import observe
from rayrec.contracts.observation import Obs
from rayrec.sim import SessionSimulator, SimConfig
from rayrec.sim.catalog import world_catalog
from rayrec.specs import EnvSpec
from rayrec.contracts.errors import SpecError

SMALL = {"num_items": 400, "num_candidates": 8, "max_sessions": 2, "max_steps_per_session": 12}


def _env(**extra) -> EnvSpec:
    return EnvSpec.from_dict({"config": {**SMALL, **extra}})


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("logs") / "eg"
    collect(_env(), "epsilon-greedy:0.3", users=60, out=out, seed=5, rows_per_file=300)
    return out


def test_schema_round_trip(log_dir):
    meta, files = validate_log(log_dir)
    assert len(files) > 1, "rows_per_file=300 must split the log into parts"
    table = read_log(log_dir)
    config = SimConfig.from_dict(meta["env"]["config"])
    expected = log_schema(config)
    assert table.schema.names == expected.names
    for field in expected:
        assert table.schema.field(field.name).type == field.type, field.name
    assert table.num_rows == meta["rows"]
    assert len(set(table.column(Col.EPISODE_ID).to_pylist())) == meta["episodes"] == 60
    # Every episode ends exactly once, at its last row.
    done = np.asarray(table.column(Col.TERMINATED)) | np.asarray(table.column(Col.TRUNCATED))
    assert done.sum() == 60


def test_next_observation_is_the_following_rows_observation(log_dir):
    table = read_log(log_dir).to_pydict()
    episode = np.asarray(table[Col.EPISODE_ID])
    t = np.asarray(table[Col.T])
    order = np.lexsort((t, episode))
    same = episode[order][1:] == episode[order][:-1]
    assert same.sum() > 100
    for name in OBS_COLUMNS:
        now = np.asarray(table[name])[order]
        nxt = np.asarray(table[Col.NEXT + name])[order]
        np.testing.assert_array_equal(nxt[:-1][same], now[1:][same], err_msg=name)
    np.testing.assert_array_equal(t[order][1:][same], t[order][:-1][same] + 1)


def test_expanded_observation_matches_the_simulator():
    config = SimConfig.from_dict(SMALL)
    sim = SessionSimulator(config, 16, seed=3)
    sim.reset()
    sim.step(np.zeros((16, 1), dtype=np.int64))
    obs = observe(sim)
    columns = {
        Col.HISTORY_ITEMS: obs[Obs.HISTORY_ITEMS],
        Col.HISTORY_RESPONSES: obs[Obs.HISTORY_RESPONSES].reshape(16, -1),
        Col.CONTEXT: obs[Obs.CONTEXT],
        Col.CANDIDATE_ITEMS: obs[Obs.CANDIDATE_ITEMS],
        Col.ACTION_MASK: obs[Obs.ACTION_MASK],
    }
    rebuilt = expand_observations(columns, world_catalog(config), config)
    assert set(rebuilt) == set(obs)
    for key, value in obs.items():
        np.testing.assert_array_equal(rebuilt[key], value, err_msg=key)


@pytest.mark.parametrize("behavior", ["ctr", "epsilon-ctr:0.5", "popular", "epsilon-popular:0.1"])
def test_observable_rankers_never_peek(behavior):
    """Non-peeking behaviours choose from the observation alone (the simulator is not consulted)."""
    config = SimConfig.from_dict(SMALL)
    sim = SessionSimulator(config, 64, seed=1)
    sim.reset()
    obs = observe(sim)
    policy = parse_behavior(behavior, seed=3)
    slate = policy.act(obs, type("NoOracle", (), {"config": config})())
    assert slate.shape == (64, 1)
    assert np.all(obs[Obs.ACTION_MASK][np.arange(64), slate[:, 0]] == 1)
    column = 1 if "ctr" in behavior else 0
    top = np.where(obs[Obs.ACTION_MASK] == 1, obs[Obs.CANDIDATE_SCALARS][:, :, column], -np.inf)
    exploit = policy.last_propensity > 0.5
    np.testing.assert_array_equal(slate[exploit, 0], top[exploit].argmax(axis=1))


def test_epsilon_greedy_propensities(log_dir):
    table = read_log(log_dir)
    prop = np.asarray(table.column(Col.PROPENSITY))
    n_valid = np.asarray(table.column(Col.ACTION_MASK).to_pylist()).sum(axis=1)
    greedy = np.isclose(prop, 0.7 + 0.3 / n_valid)
    explore = np.isclose(prop, 0.3 / n_valid)
    assert (greedy | explore).all()
    assert 0.6 < greedy.mean() < 0.85


@pytest.mark.parametrize("epsilon", [0.0, 0.25, 1.0])
def test_slate_propensities_match_frequencies(epsilon):
    """Sequential slate probabilities (k=2 of 4 candidates) against sampled frequencies."""
    config = SimConfig.from_dict({**SMALL, "num_candidates": 4, "slate_size": 2})
    b = 20_000
    sim = SessionSimulator(config, 1, seed=0)
    sim.reset()
    one = observe(sim)
    obs = {key: np.repeat(value, b, axis=0) for key, value in one.items()}
    obs[Obs.ACTION_MASK][:] = 1
    policy = parse_behavior(f"epsilon-greedy:{epsilon}", seed=1)
    policy.rng = np.random.default_rng(2)

    class _Sim:
        def __init__(self) -> None:
            self.config = config

        def oracle_click_probability(self) -> np.ndarray:
            return np.tile(np.array([0.4, 0.3, 0.2, 0.1]), (b, 1))

    slates = policy.act(obs, _Sim())
    keys = slates[:, 0] * 4 + slates[:, 1]
    freq = np.bincount(keys, minlength=16) / b
    for key in np.unique(keys):
        rows = keys == key
        assert np.allclose(policy.last_propensity[rows], policy.last_propensity[rows][0])
        assert abs(freq[key] - policy.last_propensity[rows][0]) < 0.015
    np.testing.assert_allclose(policy.last_propensities.prod(axis=1), policy.last_propensity)


def test_truncated_file_names_the_file(log_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(log_dir, copy)
    part = sorted(copy.glob("part-*.parquet"))[1]
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogError, match=part.name):
        validate_log(copy)


def test_foreign_parquet_is_rejected(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), foreign / "part-00000.parquet")
    with pytest.raises(LogError, match="no log.json"):
        validate_log(foreign)
    with pytest.raises(LogError, match="without rayrec metadata"):
        validate_log(foreign / "part-00000.parquet")


def test_missing_column_is_named(log_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(log_dir, copy)
    part = sorted(copy.glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    pq.write_table(table.drop_columns([Col.PROPENSITY]), part)
    with pytest.raises(LogError, match=f"{part.name}: missing column 'propensity'"):
        validate_log(copy)


def test_interrupted_collect_leaves_nothing(tmp_path):
    out = tmp_path / "log"

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        collect(_env(), "random", users=40, out=out, progress=interrupt, batch_size=8)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_collect_never_overwrites(log_dir):
    with pytest.raises(SpecError, match="already exists"):
        collect(_env(), "random", users=4, out=log_dir)


@pytest.mark.parametrize(
    "text",
    [
        "greedyish",
        "epsilon-greedy:1.5",
        "epsilon-greedy:x",
        "epsilon-random:0.1",
        "epsilon-ctr",
        "checkpoint:/no/such",
    ],
)
def test_bad_behavior(text):
    with pytest.raises(SpecError, match="--behavior"):
        parse_behavior(text)


def test_same_seed_same_log(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    collect(_env(), "epsilon-greedy:0.5", users=10, out=a, seed=9)
    collect(_env(), "epsilon-greedy:0.5", users=10, out=b, seed=9)
    ta, tb = read_log(a).drop_columns([Col.TIME]), read_log(b).drop_columns([Col.TIME])
    assert ta.equals(tb)


@pytest.mark.parametrize("epsilon", [None, 0.2])
def test_heuristic_behaviour_logs_the_heuristic_baselines_choices(epsilon):
    """``heuristic`` is the baseline's ranking (propensity 1); ``epsilon-heuristic:E`` mixes in
    uniformly random slates and logs their probabilities."""
    from rayrec.evaluation.baselines import ObservedHeuristicPolicy

    config = SimConfig.from_dict(SMALL)
    sim = SessionSimulator(config, 64, seed=0)
    sim.reset()
    for _ in range(3):
        sim.step(np.zeros(64, dtype=np.int64))
    obs = observe(sim)
    text = "heuristic" if epsilon is None else f"epsilon-heuristic:{epsilon}"
    policy = parse_behavior(text, seed=4)
    slates = policy.act(obs, sim)
    expected = ObservedHeuristicPolicy().act(obs, sim)
    if epsilon is None:
        np.testing.assert_array_equal(slates, expected)
        assert (policy.last_propensity == 1.0).all()
    else:
        same = (slates == expected).all(axis=1)
        assert 0 < (~same).sum() < 64 * 0.5  # about 20% explored (some draw the greedy slate)
        valid = obs[Obs.ACTION_MASK].sum(axis=1)
        k = config.slate_size
        uniform = np.prod([1.0 / (valid - j) for j in range(k)], axis=0)
        np.testing.assert_allclose(policy.last_propensity[~same], 0.2 * uniform[~same])
        np.testing.assert_allclose(
            policy.last_propensity[same], 0.8 + 0.2 * uniform[same], rtol=1e-12
        )
