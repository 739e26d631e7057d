"""How far rayrec scales: a projection from measured parts to 10^6, 10^7 and 10^8 users a day.

Reads the numbers the benchmarks recorded (``docs/results.json``, and the tables that
``bench_simulator.py``, ``bench_serve.py``, ``bench_offline.py`` and ``bench_learner.py`` left in
``docs/*.md``), projects env runners, learners, Serve replicas, CQL hours and node-hours from them,
and writes ``docs/scaling.md`` (atomically). It measures and trains nothing (no Ray; well under a
second): rerun the benchmarks it names, then this script.

    .venv/bin/python benchmarks/scaling_projection.py [--out docs/scaling.md]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scaling_measured import (  # noqa: E402
    Measurement,
    observation_bytes,
    read_measurements,
)
from rayrec.contracts.files import atomic_write_text  # noqa: E402

__all__ = ["Assumptions", "Projection", "Rates", "render"]

COMMAND = ".venv/bin/python benchmarks/scaling_projection.py"
DAY_S = 86_400.0


# ---- the model ------------------------------------------------------------------------------


def _positive(obj: object) -> None:
    for f in fields(obj):  # type: ignore[arg-type]
        if not getattr(obj, f.name) > 0:
            raise ValueError(f"{f.name} ({getattr(obj, f.name)}) must be > 0")


@dataclass(frozen=True)
class Rates:
    """The rates the projection runs on, per unit of hardware."""

    steps_per_user: float
    """Env steps of one simulated lifetime (= Serve requests of one production user)."""
    runner: float
    """Env steps/s of one env runner on one CPU, RLModule forward pass included."""
    sim_env: float
    """The simulator and observation builder alone, user-steps/s per core, at the runner's B."""
    ppo_epochs: float
    """Times PPO trains on each env step."""
    learner_cpu: float
    """PPO learner samples/s of the preset module on 2 CPUs."""
    learner_gpu: float
    """PPO learner samples/s on one GPU (the attention module)."""
    learner_host: float
    """PPO learner samples/s on one 16-core host without GPU (the same attention module)."""
    apex_intensity: float
    """Ape-X DQN's replayed samples per sampled env step."""
    learner_apex: float
    """Ape-X DQN learner replayed samples/s on 2 CPUs."""
    serve_rps: float
    """Requests/s of one Serve replica, direct ingress."""
    serve_cpu_ms: float
    """Server CPU ms per request at that rate."""
    proxy_rps: float
    """Requests/s of one replica reached through Serve's HTTP proxy."""
    proxy_cpu_ms: float
    cql_rows: float
    """CQL learner rows/s from parquet on 2 CPUs."""
    obs_bytes: float
    """Bytes of one observation: the least an env step carries from runner to learner."""

    def __post_init__(self) -> None:
        _positive(self)

    @classmethod
    def from_measurements(cls, m: dict[str, Measurement], obs_bytes: float) -> Rates:
        keys = dict(
            steps_per_user="lifetime.heuristic",
            runner="runner",
            sim_env="sim.env",
            ppo_epochs="ppo.epochs",
            learner_cpu="learner.cpu",
            learner_gpu="learner.gpu_attention",
            learner_host="learner.cpu_attention",
            apex_intensity="apex.intensity",
            learner_apex="learner.apex",
            serve_rps="serve.direct.rps",
            serve_cpu_ms="serve.direct.cpu_ms",
            proxy_rps="serve.proxy.rps",
            proxy_cpu_ms="serve.proxy.cpu_ms",
            cql_rows="cql.rows",
        )
        return cls(obs_bytes=obs_bytes, **{f: m[k].value for f, k in keys.items()})


@dataclass(frozen=True)
class Assumptions:
    """What the projection assumes beyond the measurements (each one stated in the doc)."""

    peak_to_mean: float = 2.0
    """Production requests/s at the daily peak over the day's mean (assumed, not measured)."""
    cpus_per_node: int = 16
    """CPUs of a CPU node (cluster/aws-gpu.yaml's rollout_cpu, c6i.4xlarge)."""
    cpus_per_learner: int = 2
    """CPUs of one CPU learner (PPO's, Ape-X's, CQL's): the machine their rates come from."""
    cql_passes: float = 1.0
    """Passes over a day's log that offline training makes."""
    cql_window_h: float = 24.0
    """Hours in which a day's log must be trained on."""
    link_mb_s: float = 125.0
    """MB/s of one 1 Gbit/s link: where runner-to-learner traffic needs a faster network."""

    def __post_init__(self) -> None:
        _positive(self)


def whole(x: float) -> int:
    """Whole units for a demand of ``x`` units: at least one."""
    return max(1, math.ceil(x - 1e-9))


@dataclass(frozen=True)
class Projection:
    """What ``users`` simulated users a day, and as many served, need (``Projection.of``)."""

    users: float
    steps_per_s: float
    """Env steps/s to simulate the users evenly over the day; Serve's mean requests/s."""
    runner_cpus: float
    sim_cores: float
    """The simulator's share of runner_cpus."""
    ppo_samples: float
    """PPO learner samples/s: every env step trained on ppo_epochs times, as fast as it comes."""
    cpu_learners: int
    gpu_learners: int
    host_learners: int
    apex_learners: int
    data_mb_s: float
    peak_rps: float
    replicas: int
    serve_cpus: float
    proxy_replicas: int
    proxy_cpus: float
    log_rows: float
    cql_hours: float
    """Hours one CQL learner takes for cql_passes over a day's log."""
    cql_learners: int
    cql_node_hours: float
    """Busy node-hours: the CQL learners' CPU-hours over CPUs per node."""
    runners: int
    learner_cpus: int
    nodes_a: int
    """Setup A: runners and the preset module's CPU learners on CPU nodes."""
    nodes_b: tuple[int, int]
    """Setup B: CPU nodes for the runners, 1-GPU nodes for the attention module's learners."""
    nodes_c: tuple[int, int]
    """Setup C: CPU nodes for the runners, 16-core hosts for the attention module's learners."""
    nodes_serve: int

    @classmethod
    def of(cls, users: float, r: Rates, a: Assumptions) -> Projection:
        if not users > 0:
            raise ValueError(f"users per day ({users}) must be > 0")
        steps = users * r.steps_per_user / DAY_S  # users arrive evenly over the day
        ppo = steps * r.ppo_epochs
        peak = steps * a.peak_to_mean  # one request (one slate) per step
        cql_hours = users * r.steps_per_user * a.cql_passes / r.cql_rows / 3600.0
        runners, cpu_learners = whole(steps / r.runner), whole(ppo / r.learner_cpu)
        nodes = lambda cpus: whole(cpus / a.cpus_per_node)  # noqa: E731
        return cls(
            users=users,
            steps_per_s=steps,
            runner_cpus=steps / r.runner,
            sim_cores=steps / r.sim_env,
            ppo_samples=ppo,
            cpu_learners=cpu_learners,
            gpu_learners=whole(ppo / r.learner_gpu),
            host_learners=whole(ppo / r.learner_host),
            apex_learners=whole(steps * r.apex_intensity / r.learner_apex),
            data_mb_s=steps * r.obs_bytes / 1e6,
            peak_rps=peak,
            replicas=whole(peak / r.serve_rps),
            serve_cpus=peak * r.serve_cpu_ms / 1000.0,
            proxy_replicas=whole(peak / r.proxy_rps),
            proxy_cpus=peak * r.proxy_cpu_ms / 1000.0,
            log_rows=users * r.steps_per_user,
            cql_hours=cql_hours,
            cql_learners=whole(cql_hours / a.cql_window_h),
            cql_node_hours=cql_hours * a.cpus_per_learner / a.cpus_per_node,
            runners=runners,
            learner_cpus=cpu_learners * a.cpus_per_learner,
            nodes_a=nodes(runners + cpu_learners * a.cpus_per_learner),
            nodes_b=(nodes(runners), whole(ppo / r.learner_gpu)),
            nodes_c=(nodes(runners), whole(ppo / r.learner_host)),
            nodes_serve=nodes(peak * r.serve_cpu_ms / 1000.0),
        )


# ---- the doc ---------------------------------------------------------------------------------


def _n(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _users(users: float) -> str:
    e = math.log10(users)
    return f"10^{round(e)}" if abs(e - round(e)) < 1e-9 else _n(users)


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _nh(nodes: int) -> str:
    return f"{nodes} ({_n(nodes * 24)})"


def _bottleneck(p: Projection, a: Assumptions, loop: float) -> str:
    """Where the limit lies at this size, decided from the numbers."""
    if p.steps_per_s <= loop:
        parts = [
            f"nothing yet: the 2-CPU machine's measured loop ({_n(loop)} env steps/s) keeps up, "
            f"and one {a.cpus_per_node}-CPU node would be mostly idle"
        ]
    else:
        side = "the learner" if p.learner_cpus > p.runners else "sampling"
        parts = [f"{side}: PPO's learners need {p.learner_cpus} CPUs, its runners {p.runners}"]
    if p.cpu_learners > 1:
        parts.append(f"{p.cpu_learners} data-parallel learners (their allreduce: not measured)")
    if p.data_mb_s > a.link_mb_s:
        link = f"{a.link_mb_s * 8 / 1000:g} Gbit/s"
        parts.append(f"runner-to-learner data ({_n(p.data_mb_s)} MB/s) outgrows a {link} link")
    if p.nodes_serve > p.nodes_a:
        parts.append(
            f"serving the same users takes more nodes ({p.nodes_serve}) than training "
            f"them ({p.nodes_a})"
        )
    return "; ".join(parts)


def _sources(m: dict[str, Measurement]) -> list[str]:
    lines = [
        "| key | value | unit | measured | script | recorded in | date | machine |",
        "|---|---:|---|---|---|---|---|---|",
    ]
    for x in m.values():
        whole_number = x.value == round(x.value)
        digits = 0 if whole_number or x.value >= 100 else (2 if x.value < 10 else 1)
        s = x.source
        lines.append(
            f"| `{x.key}` | {_n(x.value, digits)} | {x.unit} | {x.what} | {s.script} | "
            f"{s.where} | {s.date or ('-' if s.machine == '-' else 'not dated')} | {s.machine} |"
        )
    return lines


def _summary(ps: list[Projection], a: Assumptions, loop_users: float) -> list[str]:
    lines = [
        f"In short (section 6 has the node-hours): the development machine's measured loop "
        f"trains on {_n(loop_users / 1e6, 1)} million simulated users a day on 2 CPUs.",
        "",
    ]
    for p in ps:
        lines.append(
            f"- **{_users(p.users)} users a day** = {_n(p.steps_per_s)} env steps/s: "
            f"{_count(p.runners, 'runner CPU')} and {_count(p.cpu_learners, 'CPU learner')} for "
            f"the PPO preset ({_count(p.nodes_a, 'node')} of {a.cpus_per_node} CPUs), or "
            f"{_count(p.gpu_learners, 'H200 learner')} for the heavier attention module; serving "
            f"as many users takes {_count(p.replicas, 'Serve replica')} at the peak; one CQL "
            f"learner needs {_n(p.cql_hours, 1)} h for a day's log."
        )
    return [*lines, ""]


def render(m: dict[str, Measurement], r: Rates, a: Assumptions, levels: list[float]) -> str:
    """docs/scaling.md from the measurements, the rates taken from them and the assumptions."""
    ps = [Projection.of(u, r, a) for u in levels]
    loop = m["loop"].value
    runner_per_learner_cpu = (r.learner_cpu / a.cpus_per_learner / r.ppo_epochs) / r.runner
    scarce = "the learner" if runner_per_learner_cpu < 1 else "sampling"
    big = ps[-1]
    scarce_gpu = "the learner" if big.nodes_b[1] > big.nodes_b[0] else "sampling"
    lines = [
        "# How far rayrec scales: a projection from measured parts",
        "",
        f"Written by `{COMMAND}`; do not edit by hand. The script runs nothing: to change a "
        "number, rerun the benchmark named beside it in section 1, then the script. Every other "
        "figure is arithmetic on those measurements under the assumptions of section 2; nothing "
        "here was measured at the projected sizes.",
        "",
        *_summary(ps, a, loop * DAY_S / r.steps_per_user),
        "## 1. Measured parts, and the settings they rest on",
        "",
        *_sources(m),
        "",
        f"One observation of `envs/session.yaml` is {_n(r.obs_bytes)} bytes (computed from its "
        "space): the least an env step carries from a runner to a learner.",
        "",
        "## 2. The model and its assumptions",
        "",
        f"1. **A simulated user is one lifetime of N = {_n(r.steps_per_user, 1)} steps**: the "
        "heuristic's on the default env (`lifetime.heuristic`). Evaluation computes `steps_mean` "
        "but compare_algorithms.py does not keep it in results.json, so N is the doc's "
        "return_mean / click_rate, which is exact for the click reward. Trained PPO plays "
        f"{_n(m['sessions.ppo'].value, 2)} sessions per user against "
        f"the heuristic's {_n(m['sessions.heuristic'].value, 2)} on the same users, so its "
        "lifetimes are about as long. A better policy keeps users longer (longterm: "
        f"{_n(m['lifetime.longterm'].value, 1)} steps; the cap is {_n(m['lifetime.cap'].value)}), "
        "a policy early in training shorter. Users arrive evenly over the day: env steps/s = "
        "U x N / 86,400.",
        f"2. **One env runner is one CPU at {_n(r.runner)} env steps/s** (`runner`: sampling with "
        "the RLModule's forward pass and episode building, not the bare simulator). The simulator "
        f"and its observations alone do {_n(r.sim_env)} user-steps/s per core at the same batch "
        f"(`sim.env`): {_n(100 * r.runner / r.sim_env)}% of a runner's time. `runner` was "
        "timed in a process free to use both cores' torch threads; bench_sampling.py's rate at "
        f"the same batch with one thread, on an older module, is {_n(m['sampling.preset'].value)} "
        "(`sampling.preset`).",
        f"3. **PPO trains on every env step {r.ppo_epochs:g} times** ({r.ppo_epochs:g} epochs of "
        f"{_n(m['ppo.minibatches'].value)} minibatches over each batch), on-policy: the learners "
        f"must keep up with the runners, so learner samples/s = {r.ppo_epochs:g} x env steps/s. "
        f"Ape-X DQN replays {r.apex_intensity:g} samples per env step (`apex.intensity`).",
        f"4. **Learners.** On CPUs, the preset module: {_n(r.learner_cpu)} samples/s per "
        f"{a.cpus_per_learner} CPUs (`learner.cpu`, derived from the training loop; an "
        "underestimate, since the loop's overhead and checkpoint selection count as learning). "
        f"On one H200: {_n(r.learner_gpu)} samples/s, against {_n(r.learner_host)} on that "
        f"host's 16 cores ({r.learner_gpu / r.learner_host:.1f}x), for a heavier module and "
        "larger minibatches (`learner.*_attention`). **The preset module was never timed on a "
        "GPU**, so the GPU setups below train that heavier module.",
        "5. **Linear scaling**: n runners sample n times as fast and n data-parallel learners "
        "learn n times as fast. Measured for one runner and one learner only (section 10).",
        "6. **Serving** as many users in production: each step is one request (one slate of one "
        f"item), U x N requests a day, with a peak {a.peak_to_mean:g}x the day's mean (assumed). "
        f"A replica answers {_n(r.serve_rps)} requests/s at {_n(r.serve_cpu_ms, 1)} ms of server "
        f"CPU each through direct ingress (p99 {_n(m['serve.direct.p99_ms'].value)} ms at that "
        f"load), {_n(r.proxy_rps)} requests/s at {_n(r.proxy_cpu_ms, 1)} ms through Serve's "
        "HTTP proxy.",
        f"7. **Offline**: a day's log is U x N rows; CQL makes {a.cql_passes:g} pass over it at "
        f"{_n(r.cql_rows)} rows/s per {a.cpus_per_learner}-CPU learner, within "
        f"{a.cql_window_h:g} h.",
        f"8. **Nodes** (cluster/aws-gpu.yaml): CPU nodes of {a.cpus_per_node} CPUs (rollout_cpu); "
        "1-GPU learner nodes (learner_gpu, a g5.2xlarge: its A10G is slower than the measured "
        "H200, so its count is a lower bound). Whole nodes for 24 h; head nodes not counted "
        "(+24 node-hours a day per cluster); no prices.",
        "",
        "## 3. Training against the simulator",
        "",
        "| users/day | env steps/s | runner CPUs | of which simulator | PPO learner samples/s | "
        f"CPU learners ({a.cpus_per_learner} CPUs, preset) | H200 learners (attention) | "
        "16-core learner hosts (attention) | Ape-X CPU learners | runner-to-learner MB/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in ps:
        lines.append(
            f"| {_users(p.users)} | {_n(p.steps_per_s)} | {_n(p.runner_cpus, 2)} -> {p.runners} | "
            f"{_n(p.sim_cores, 2)} | {_n(p.ppo_samples)} | {p.cpu_learners} | {p.gpu_learners} | "
            f"{p.host_learners} | {p.apex_learners} | {_n(p.data_mb_s, 1)} |"
        )
    lines += [
        "",
        "## 4. Serving as many users (production load)",
        "",
        "| users/day | requests/s, mean | at peak | replicas, direct ingress | server CPUs | "
        "replicas via the proxy | server CPUs via the proxy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in ps:
        lines.append(
            f"| {_users(p.users)} | {_n(p.steps_per_s)} | {_n(p.peak_rps)} | {p.replicas} | "
            f"{_n(p.serve_cpus, 1)} | {p.proxy_replicas} | {_n(p.proxy_cpus, 1)} |"
        )
    lines += [
        "",
        "## 5. Offline: CQL on a day's logs",
        "",
        f"| users/day | rows a day | hours, one learner | learners to finish in {a.cql_window_h:g} "
        "h | busy node-hours |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in ps:
        lines.append(
            f"| {_users(p.users)} | {_n(p.log_rows)} | {_n(p.cql_hours, 1)} | {p.cql_learners} | "
            f"{_n(p.cql_node_hours, 1)} |"
        )
    lines += [
        "",
        "## 6. Nodes and node-hours per day",
        "",
        "Nodes (node-hours a day). A: CPU nodes only, the PPO preset. B: CPU nodes for the "
        "runners and H200 learner nodes, attention module. C: the same attention module on "
        "16-core CPU learner hosts. Serve: sized for the peak all day (an autoscaler would pay "
        "less). CQL: busy node-hours.",
        "",
        "| users/day | A: CPU nodes | B: CPU + GPU nodes | C: CPU nodes + hosts | Serve: CPU nodes "
        "| CQL |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in ps:
        (b_cpu, b_gpu), (c_cpu, c_host) = p.nodes_b, p.nodes_c
        lines.append(
            f"| {_users(p.users)} | {_nh(p.nodes_a)} | {b_cpu} + {b_gpu} "
            f"({_n((b_cpu + b_gpu) * 24)}) | {c_cpu} + {c_host} ({_n((c_cpu + c_host) * 24)}) | "
            f"{_nh(p.nodes_serve)} | {_n(p.cql_node_hours, 1)} |"
        )
    lines += [
        "",
        "## 7. Where the bottleneck moves",
        "",
        f"In this model a runner CPU keeps up with {_n(1 / runner_per_learner_cpu, 1)}x as many "
        f"env steps as a learner CPU (PPO preset) at every size, so {scarce} is the scarce part "
        "of training as soon as it outgrows one machine; what moves with load is which limit "
        f"comes next. With H200 learners for the attention module it is {scarce_gpu} too: "
        f"{_count(big.nodes_b[1], 'GPU node')} against {_count(big.nodes_b[0], 'CPU node')} of "
        f"runners at {_users(big.users)}.",
        "",
        *[f"- **{_users(p.users)} users a day**: {_bottleneck(p, a, loop)}." for p in ps],
        "",
        *_sensitivity(m, r, a, levels[-1]),
        *_prose(m, r, a),
    ]
    return "\n".join(lines) + "\n"


def _sensitivity(m: dict[str, Measurement], r: Rates, a: Assumptions, users: float) -> list[str]:
    vector = m["sampling.largest"].value / m["sampling.preset"].value
    longterm, cap = m["lifetime.longterm"].value, m["lifetime.cap"].value
    cases = [
        ("as projected", r, a),
        (
            f"lifetimes of longterm ({_n(longterm, 1)} steps)",
            replace(r, steps_per_user=longterm),
            a,
        ),
        (f"lifetimes at the cap ({_n(cap)} steps)", replace(r, steps_per_user=cap), a),
        (
            f"runners at the largest vector measured ({vector:.2f}x: `sampling.largest` / "
            "`sampling.preset`)",
            replace(r, runner=r.runner * vector),
            a,
        ),
        ("one pass per env step (epochs = 1, IMPALA-like)", replace(r, ppo_epochs=1.0), a),
        ("peak 3x the mean", r, replace(a, peak_to_mean=3.0)),
    ]
    lines = [
        "## 8. Sensitivity at the largest size",
        "",
        f"{_users(users)} simulated users a day, one assumption changed at a time:",
        "",
        "| change | runner CPUs | CPU learners | H200 learners | Serve replicas | CQL hours |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, rates, assumptions in cases:
        p = Projection.of(users, rates, assumptions)
        lines.append(
            f"| {label} | {p.runners} | {p.cpu_learners} | {p.gpu_learners} | {p.replicas} | "
            f"{_n(p.cql_hours)} |"
        )
    return [*lines, ""]


def _prose(m: dict[str, Measurement], r: Rates, a: Assumptions) -> list[str]:
    head, worker = int(m["cluster.head_cpus"].value), int(m["cluster.worker_cpus"].value)
    crowded = ""
    if 4 + 1 > head + worker:  # four runners and a learner
        crowded = (
            f" On {head + worker} CPUs, four runners and a learner oversubscribe the cores: that "
            "run will show the arrangement's overheads, not its scaling."
        )
    items, cands = m["env.items"].value, m["env.candidates"].value
    bench = m["sim.candidates"].value if "sim.candidates" in m else None
    catalog = f"the default env has {_n(items)} items and {_n(cands)} candidates per step"
    if bench is not None and items <= 1e5 and cands <= bench:
        catalog += (
            f"; the simulator rows used here have 10^5 items and {_n(bench)} candidates, so the "
            "simulator's share above is an upper bound"
        )
    return [
        "## 9. Not measured yet: asynchronous Ape-X on the local 2-node cluster",
        "",
        "Issue #27 also asks for an asynchronous Ape-X measured with 1, 2 and 4 env runners on "
        f"the local 2-node cluster (`cluster/local.sh`: a head with {_count(head, 'CPU')}, a "
        f"worker with {_count(worker, 'CPU')}). That "
        "algorithm does not exist yet: `rayrec/algorithms/apex.py` is the exploration ladder on "
        "RLlib's DQN, which samples and then learns in turn, and `learner.apex` above is derived "
        "from that synchronous loop. What will be measured, per number of runners: env steps/s "
        "sampled, replayed samples/s learned, the replay ratio reached, and whether sampling "
        f"grows with runners while the learner's rate holds.{crowded}",
        "",
        "## 10. What 2 cores can and cannot show",
        "",
        "**Measured on the 2-CPU development machine**: the simulator on one core "
        f"({_n(m['sim.core'].value)} user-steps/s, core loop at B = 4,096), one env runner, the "
        "whole PPO loop (one runner and one learner taking turns), one Ape-X loop, one Serve "
        "replica with its load generator on the same 2 CPUs, one CQL learner reading parquet. "
        "**Measured on one H200 host**: one PPO learner, CPU against GPU, for one module. "
        "Everything else above is arithmetic.",
        "",
        "**Not measured anywhere here**: more than one learner (data-parallel allreduce, "
        "multi-node NCCL or gloo); many runners feeding one driver (RLlib's synchronous gather "
        "and weight broadcast every iteration); the object store and network between nodes; the "
        "GCS with hundreds of actors; Serve's routing over many replicas and nodes, and its proxy "
        "on its own node; autoscaling times; a GPU learner for the preset module. The local "
        "2-node cluster (`cluster/local.sh`, `tests/cluster`) runs on one machine over loopback: "
        "it shows that jobs, token authentication and two raylets work, not what a network costs.",
        "",
        "**What would change the numbers**: the module (the attention module learns "
        f"{r.learner_cpu / r.learner_host:.1f}x slower on a whole 16-core host than the preset "
        f"module on {a.cpus_per_learner} CPUs); the epochs and minibatch size; how long a policy "
        f"keeps its users (section 8); the catalog and candidate count ({catalog}); the vector "
        "size per runner; Serve's path (direct ingress or the proxy) and the peak. This virtual "
        "machine's speed also varies from day to day (docs/simulator.md, Throughput), and the "
        "CPU rates were taken on 2 shared cores: read every rate as good to about 2x (a "
        "judgement, not a measurement).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "scaling.md")
    args = parser.parse_args()
    launcher = yaml.safe_load((ROOT / "cluster" / "aws-gpu.yaml").read_text())
    cpus = int(launcher["available_node_types"]["rollout_cpu"]["resources"]["CPU"])
    measurements = read_measurements(ROOT)
    rates = Rates.from_measurements(measurements, observation_bytes(ROOT))
    text = render(measurements, rates, Assumptions(cpus_per_node=cpus), [1e6, 1e7, 1e8])
    atomic_write_text(args.out, text)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
