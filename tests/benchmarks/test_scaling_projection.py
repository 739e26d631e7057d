"""benchmarks/scaling_projection.py and scaling_measured.py: the arithmetic on hand-computed
inputs, the reading of the recorded measurements, and the error a missing one gives. No Ray,
nothing measured."""

from __future__ import annotations

import json

import pytest

from benchmarks.scaling_measured import (
    MissingMeasurement,
    json_at,
    md_row,
    md_table,
    read_measurements,
)
from benchmarks.scaling_projection import Assumptions, Projection, Rates, render


def rates(**changes: float) -> Rates:
    values = dict(
        steps_per_user=100.0,
        runner=1_000.0,
        sim_env=4_000.0,
        ppo_epochs=6.0,
        learner_cpu=12_000.0,
        learner_gpu=30_000.0,
        learner_host=5_000.0,
        apex_intensity=2.0,
        learner_apex=4_000.0,
        serve_rps=500.0,
        serve_cpu_ms=2.0,
        proxy_rps=100.0,
        proxy_cpu_ms=10.0,
        cql_rows=1_000.0,
        obs_bytes=1_000.0,
    )
    return Rates(**{**values, **changes})


# 864,000 users x 100 steps over 86,400 s = 1,000 env steps/s; ten times as many, 10,000.
@pytest.mark.parametrize(
    ("users", "expected"),
    [
        (
            864_000,
            dict(
                steps_per_s=1_000, runner_cpus=1.0, runners=1, sim_cores=0.25, ppo_samples=6_000,
                cpu_learners=1, gpu_learners=1, host_learners=2, apex_learners=1, data_mb_s=1.0,
                peak_rps=2_000, replicas=4, serve_cpus=4.0, proxy_replicas=20, proxy_cpus=20.0,
                log_rows=86_400_000, cql_hours=24.0, cql_learners=1, cql_node_hours=3.0,
                learner_cpus=2, nodes_a=1, nodes_b=(1, 1), nodes_c=(1, 2), nodes_serve=1,
            ),
        ),
        (
            8_640_000,
            dict(
                steps_per_s=10_000, runner_cpus=10.0, runners=10, sim_cores=2.5,
                ppo_samples=60_000, cpu_learners=5, gpu_learners=2, host_learners=12,
                apex_learners=5, data_mb_s=10.0, peak_rps=20_000, replicas=40, serve_cpus=40.0,
                proxy_replicas=200, proxy_cpus=200.0, log_rows=864_000_000, cql_hours=240.0,
                cql_learners=10, cql_node_hours=30.0, learner_cpus=10, nodes_a=2, nodes_b=(1, 2),
                nodes_c=(1, 12), nodes_serve=3,
            ),
        ),
    ],
)  # fmt: skip
def test_projection_arithmetic(users, expected):
    p = Projection.of(users, rates(), Assumptions())
    numbers = {k: v for k, v in expected.items() if not isinstance(v, tuple)}
    assert {k: getattr(p, k) for k in numbers} == pytest.approx(numbers)
    assert (p.nodes_b, p.nodes_c) == (expected["nodes_b"], expected["nodes_c"])


def test_a_fraction_of_a_unit_still_takes_one():
    p = Projection.of(8_640, rates(), Assumptions())  # 10 env steps/s
    assert (p.runners, p.cpu_learners, p.gpu_learners, p.replicas, p.nodes_a) == (1, 1, 1, 1, 1)


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"peak_to_mean": 3.0}, "replicas", 6),  # 3,000 requests/s at 500 per replica
        ({"cpus_per_node": 2}, "nodes_a", 2),  # 1 runner CPU + 2 learner CPUs on 2-CPU nodes
        ({"cql_window_h": 12.0}, "cql_learners", 2),  # 24 h of one learner in 12 h
    ],
)
def test_assumptions_move_the_projection(change, field, value):
    assert getattr(Projection.of(864_000, rates(), Assumptions(**change)), field) == value


def test_invalid_inputs_are_refused_with_their_name():
    with pytest.raises(ValueError, match="runner"):
        rates(runner=0.0)
    with pytest.raises(ValueError, match="peak_to_mean"):
        Assumptions(peak_to_mean=-1.0)
    with pytest.raises(ValueError, match="users per day"):
        Projection.of(0, rates(), Assumptions())


# ---- reading the measurements --------------------------------------------------------------

RESULTS = {
    "online_ppo_seeds": {
        "date": "2026-01-01",
        "machine": "x86_64, 2 CPUs",
        # 1/1,000 s per env step in all, 1/2,000 of it sampling: the learner has 1/2,000 s for
        # 6 passes, 12,000 samples/s.
        "algorithms": [
            {
                "env_steps": 1_000, "wall_time_s": 1.0, "env_steps_per_s": 1_000.0,
                "sampling_steps_per_s_per_runner": 2_000.0, "num_env_runners": 1,
                "num_envs_per_env_runner": 64, "sessions_per_user": 3.0,
            }
        ],
        "baselines": {"heuristic": {"sessions_per_user": 3.5}},
    },
    "online_relation_presets": {
        "date": "2026-01-01",
        "machine": "x86_64, 2 CPUs",
        # 2/1,000 s per env step, 1/2,000 sampling on two runners: 2 replayed / 0.0015 s.
        "algorithms": [
            {
                "preset": "apex_dqn", "env_steps": 1_000, "wall_time_s": 2.0,
                "sampling_steps_per_s_per_runner": 1_000.0, "num_env_runners": 2,
            }
        ],
    },
    "sampling": {
        "date": "2026-01-01",
        "machine": "x86_64, 2 CPUs",
        "preset_envs": 64,
        "rates": [{"envs": 64, "env_steps_per_s": 1_000.0}, {"envs": 1024, "env_steps_per_s": 2_500.0}],
    },
}  # fmt: skip

DOCS = {
    "simulator.md": """# Simulator

## Throughput

Measured 2026-01-02.

| N | T | k | B | core user-steps/s | env user-steps/s |
|---:|---:|---:|---:|---:|---:|
| 1e+05 | 100 | 1 | 64 | 100,000 | 50,000 |
| 1e+05 | 100 | 1 | 4096 | 1,000,000 | 200,000 |

## The default scenario: `envs/session.yaml`

| policy | return_mean ± 95% CI | click_rate |
|---|---|---|
| heuristic | 30.00 ± 1.10 | 0.500 |
| longterm | 40.00 ± 0.80 | 0.400 |
""",
    "cluster.md": """# Cluster

### GPU learners, as measured

On one GPU, 2026-01-03:

  | learner | device | update s/iter | samples/s (\N{MULTIPLICATION SIGN} epochs) | speed-up vs CPU |
  |---|---|---|---|---|
  | cpu | cpu | 10.00 | 2,000 | 1.0x |
  | gpu | cuda:0 | 1.00 | 20,000 | 10.0x |
""",
    "serving.md": """# Serving

## Latency

Run 2026-01-04.

| server | clients | p50 ms | p99 ms | requests/s | server CPU ms/request | errors |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
| rayrec Serve app, direct ingress | 1 | 3.0 | 6.0 | 300 | 3.0 | 0 |
| rayrec Serve app, direct ingress | 8 | 5.0 | 10.0 | 400 | 2.0 | 0 |
| rayrec Serve app, via the proxy | 8 | 20.0 | 40.0 | 100 | 9.0 | 0 |
""",
    "offline.md": """# Offline

Throughput (2026-01-05):

| measurement | value |
| --- | --- |
| CQL updates (batch 512), in-memory batch | 20.0 updates/s (10,240 rows/s) |
| CQL updates (batch 512), parquet through Ray Data | 10.0 updates/s (5,120 rows/s), ratio 0.50 |
""",
}

SPECS = {
    "policies/ppo.yaml": "model: {encoder: gated, hidden: 64}\n"
    "training: {num_epochs: 6, train_batch_size_per_learner: 4096, minibatch_size: 256}\n"
    "env_runners: {num_envs_per_env_runner: 64}\n",
    "policies/apex_dqn.yaml": "training: {training_intensity: 2.0}\n",
    "envs/session.yaml": "config: {max_sessions: 5, max_steps_per_session: 50, num_items: 5000, "
    "num_candidates: 20}\n",
}


@pytest.fixture
def root(tmp_path):
    for name, text in {**SPECS, **{f"docs/{k}": v for k, v in DOCS.items()}}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "docs" / "results.json").write_text(json.dumps(RESULTS))
    return tmp_path


def test_reads_and_derives_the_recorded_numbers(root):
    m = read_measurements(root)
    values = {k: m[k].value for k in m}
    assert values == pytest.approx(
        {
            "ppo.epochs": 6, "ppo.minibatches": 16, "apex.intensity": 2, "lifetime.cap": 250,
            "env.items": 5_000, "env.candidates": 20, "cluster.head_cpus": 1,
            "cluster.worker_cpus": 2,
            "runner": 2_000, "loop": 1_000, "learner.cpu": 12_000, "sessions.ppo": 3.0,
            "sessions.heuristic": 3.5, "learner.apex": 2 / 0.0015, "sampling.preset": 1_000,
            "sampling.largest": 2_500, "sim.core": 1_000_000, "sim.env": 50_000,
            "lifetime.heuristic": 60, "lifetime.longterm": 100, "learner.cpu_attention": 2_000,
            "learner.gpu_attention": 20_000, "serve.direct.rps": 400, "serve.direct.cpu_ms": 2.0,
            "serve.direct.p99_ms": 10.0, "serve.proxy.rps": 100, "serve.proxy.cpu_ms": 9.0,
            "serve.proxy.p99_ms": 40.0, "cql.rows": 5_120,
        }
    )  # fmt: skip
    dates = {k: m[k].source.date for k in ("sim.core", "learner.gpu_attention", "serve.proxy.rps")}
    assert dates == {
        "sim.core": "2026-01-02",
        "learner.gpu_attention": "2026-01-03",
        "serve.proxy.rps": "2026-01-04",
    }
    text = render(m, Rates.from_measurements(m, obs_bytes=1_000), Assumptions(), [1e6, 1e8])
    assert text.startswith("# How far rayrec scales")
    assert "benchmarks/scaling_projection.py" in text.splitlines()[2]
    assert "| 10^8 |" in text


@pytest.mark.parametrize("key", ["online_ppo_seeds", "online_relation_presets", "sampling"])
def test_a_missing_results_key_is_named(root, key):
    data = {k: v for k, v in RESULTS.items() if k != key}
    (root / "docs" / "results.json").write_text(json.dumps(data))
    with pytest.raises(MissingMeasurement, match=f"'{key}'"):
        read_measurements(root)


@pytest.mark.parametrize(
    ("doc", "old", "new", "named"),
    [
        ("simulator.md", "## Throughput", "## Speed", "'Throughput'"),
        ("simulator.md", "| 1e+05 | 100 | 1 | 64 |", "| 1e+04 | 100 | 1 | 64 |", "'B': 64"),
        ("cluster.md", "| gpu | cuda:0", "| tpu | xla", "'learner': 'gpu'"),
        ("serving.md", "requests/s", "rps", "requests/s"),
        ("offline.md", "parquet through Ray Data", "from files", "parquet"),
    ],
)
def test_a_missing_table_entry_is_named(root, doc, old, new, named):
    path = root / "docs" / doc
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(MissingMeasurement, match=named.replace("|", r"\|")) as e:
        read_measurements(root)
    assert f"docs/{doc}" in str(e.value)


def test_json_at_names_the_key_and_the_script():
    with pytest.raises(MissingMeasurement, match=r"'sampling\.rates'.*bench_sampling\.py"):
        json_at({"sampling": {}}, "sampling.rates", "docs/results.json", "bench_sampling.py")


def test_md_row_compares_numbers_as_numbers():
    rows, _ = md_table(DOCS["simulator.md"], "Throughput", ("N", "B"), "doc", "script")
    assert md_row(rows, {"N": 100_000, "B": 4096}, "doc")["core user-steps/s"] == "1,000,000"
    with pytest.raises(MissingMeasurement, match="no table row"):
        md_row(rows, {"N": 1e6}, "doc")
