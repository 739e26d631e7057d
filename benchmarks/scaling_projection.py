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
import inspect
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rayrec import cluster_local  # noqa: E402 - after sys.path
from rayrec.contracts.files import atomic_write_text  # noqa: E402

__all__ = ["Assumptions", "Measurement", "MissingMeasurement", "Projection", "Rates"]
__all__ += ["json_at", "md_row", "md_table", "read_measurements", "render"]

COMMAND = ".venv/bin/python benchmarks/scaling_projection.py"
DAY_S = 86_400.0
# The machine of the tables read from docs/*.md, which their prose names ("this project's 2-CPU
# machine"); results.json records its own ("machine" of each key).
DEV = "x86_64, 2 CPUs"
# docs/cluster.md says it in prose ("On one NVIDIA H200 (16 CPU cores, torch 2.11 with CUDA 13,
# Ray 2.60.0)"): the label is copied here; the numbers and the date are read from the doc.
H200 = "1 NVIDIA H200, 16 CPU cores"
COMPARE = "benchmarks/compare_algorithms.py"
RESULTS = "docs/results.json"
PPO = "policies/ppo.yaml"


class MissingMeasurement(LookupError):
    """A number the projection needs is not where its benchmark records it."""


@dataclass(frozen=True)
class Source:
    """Where a number was measured and recorded."""

    script: str
    """The benchmark that measured it, or what it was derived from."""
    where: str
    """The file (and key or section) that records it."""
    date: str | None
    machine: str


@dataclass(frozen=True)
class Measurement:
    key: str
    value: float
    unit: str
    what: str
    """The configuration measured."""
    source: Source


# ---- reading what the benchmarks recorded ---------------------------------------------------


def json_at(data: Any, path: str, where: str, script: str) -> Any:
    """``data[a][b]...`` for ``path`` "a.b...", or MissingMeasurement naming the key."""
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise MissingMeasurement(
                f"{where} has no key {path!r} (written by {script}): run that benchmark, or "
                "point benchmarks/scaling_projection.py at the key that holds it now"
            )
        node = node[part]
    return node


def number(cell: str) -> float:
    """The first number in a table cell: ``"1,483,349"``, ``"14.5 updates/s (...)"``, ``"1e+05"``."""
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?", cell)
    if match is None:
        raise ValueError(f"no number in table cell {cell!r}")
    return float(match.group().replace(",", ""))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def md_table(
    text: str, heading: str, columns: tuple[str, ...], where: str, script: str
) -> tuple[list[dict[str, str]], str]:
    """The first Markdown table after the first heading containing ``heading`` whose header holds
    every one of ``columns``: its rows, and the text between the heading and the table."""
    lines = [s.strip() for s in text.splitlines()]  # tables may sit indented in a list item
    start = next((i for i, s in enumerate(lines) if s.startswith("#") and heading in s), None)
    if start is None:
        raise MissingMeasurement(f"{where} has no section {heading!r} (written by {script})")
    i = start + 1
    while i < len(lines):
        if not (lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|")):
            i += 1
            continue
        header, j = _cells(lines[i]), i + 2
        while j < len(lines) and lines[j].startswith("|"):
            j += 1
        if all(c in header for c in columns):
            rows = [dict(zip(header, _cells(s), strict=False)) for s in lines[i + 2 : j]]
            return rows, "\n".join(lines[start:i])
        i = j
    raise MissingMeasurement(
        f"{where}, section {heading!r}: no table with columns {list(columns)} (written by {script})"
    )


def last_date(text: str) -> str | None:
    """The last ISO date in ``text``: the day a table's prose says it was measured."""
    dates = re.findall(r"\d{4}-\d{2}-\d{2}", text)
    return dates[-1] if dates else None


def md_row(rows: list[dict[str, str]], match: dict[str, Any], where: str) -> dict[str, str]:
    """The first row whose cells equal ``match`` (strings exactly, numbers as numbers)."""

    def fits(row: dict[str, str]) -> bool:
        for col, want in match.items():
            cell = row.get(col, "")
            if isinstance(want, str) and cell.strip("*` ") != want:
                return False
            if not isinstance(want, str) and (not cell or number(cell) != want):
                return False
        return True

    found = [r for r in rows if fits(r)]
    if not found:
        raise MissingMeasurement(f"{where}: no table row with {match}")
    return found[0]


def learner_rate(rows: list[dict], passes: float) -> float:
    """Learner samples/s of a synchronous loop (sample, then update), median over ``rows``.

    Per row, the loop's seconds per env step less the sampling's (the runners sample in
    parallel while the learner waits) are the learner's, which trains ``passes`` samples per env
    step. They also hold the loop's overhead and checkpoint selection: the learner is underrated.
    """
    rates = []
    for r in rows:
        sampling = max(r["num_env_runners"], 1) * r["sampling_steps_per_s_per_runner"]
        rates.append(passes / (r["wall_time_s"] / r["env_steps"] - 1.0 / sampling))
    return statistics.median(rates)


def _from_results(results: dict, ppo: dict, intensity: float) -> list[Measurement]:
    """Runner, loop and derived learner rates from compare_algorithms.py and bench_sampling.py.

    The rows do not record the module they trained: ``ppo`` (policies/ppo.yaml now) is taken to
    be the preset they ran, its epochs to be theirs."""
    epochs, model = float(ppo["training"]["num_epochs"]), ppo["model"]
    # The current PPO preset on a quiet machine, three seeds. online_ppo_400 is newer, but its
    # note says two of its three seeds shared the machine with test runs.
    key = "online_ppo_seeds"
    rec = json_at(results, key, RESULTS, COMPARE)
    rows = json_at(rec, "algorithms", f"{RESULTS} {key}", COMPARE)
    src = Source(COMPARE, f"{RESULTS} `{key}`", rec["date"], rec["machine"])
    der = replace(src, script=f"derived here from {COMPARE}'s rows")
    med, seeds = statistics.median, f"median of {len(rows)} seeds"
    n_env = rows[0]["num_envs_per_env_runner"]
    heuristic = json_at(rec, "baselines.heuristic", src.where, COMPARE)["sessions_per_user"]
    runner = f"policies/ppo.yaml, one env runner, {n_env} envs, RLModule forward + episodes"
    learner = (
        f"PPO preset module ({model['encoder']} encoder, hidden {model['hidden']}, minibatch "
        f"{ppo['training']['minibatch_size']}): the loop's time"
    )
    rows_ = [
        ("runner", med(r["sampling_steps_per_s_per_runner"] for r in rows),
         "env steps/s per runner CPU", f"{runner} (sampling_rate()); {seeds}", src),
        ("loop", med(r["env_steps_per_s"] for r in rows), "env steps/s",
         f"the whole PPO loop: runner, learner, checkpoint selection; {seeds}", src),
        ("learner.cpu", learner_rate(rows, epochs), "samples/s (x epochs) per 2 CPUs",
         f"{learner} per env step less the sampling's; {seeds}", der),
        ("sessions.ppo", med(r["sessions_per_user"] for r in rows), "sessions/user",
         f"trained PPO; {seeds}", src),
        ("sessions.heuristic", heuristic, "sessions/user", "heuristic, the same users", src),
    ]  # fmt: skip
    out = [Measurement(*row) for row in rows_]
    key = "online_relation_presets"
    rec = json_at(results, key, RESULTS, COMPARE)
    apex = [r for r in json_at(rec, "algorithms", key, COMPARE) if r["preset"] == "apex_dqn"]
    if not apex:
        raise MissingMeasurement(f"{RESULTS} {key!r} has no apex_dqn row ({COMPARE})")
    src = Source(
        f"derived here from {COMPARE}'s row", f"{RESULTS} `{key}`", rec["date"], rec["machine"]
    )
    out.append(
        Measurement(
            "learner.apex",
            learner_rate(apex, intensity),
            "replayed samples/s per 2 CPUs",
            "Ape-X DQN preset on RLlib's "
            f"synchronous DQN, {apex[0]['num_env_runners']} runners: derived as "
            "for PPO",
            src,
        )
    )
    script = "benchmarks/bench_sampling.py"
    rec = json_at(results, "sampling", RESULTS, script)
    src = Source(script, f"{RESULTS} `sampling`", rec["date"], rec["machine"])
    rates = {r["envs"]: r["env_steps_per_s"] for r in json_at(rec, "rates", "sampling", script)}
    if rec["preset_envs"] not in rates:
        raise MissingMeasurement(f"{RESULTS} 'sampling.rates' has no preset row ({script})")
    for name, envs in (("preset", rec["preset_envs"]), ("largest", max(rates))):
        what = f"ppo.yaml as of {rec['date']}, one env runner, {envs} envs"
        out.append(
            Measurement(f"sampling.{name}", rates[envs], "env steps/s per runner CPU", what, src)
        )
    return out


def _from_docs(root: Path, batch_envs: int) -> list[Measurement]:
    """Simulator, lifetime, GPU learner, Serve and CQL numbers from the tables in docs/*.md."""
    out = []
    script, where = "benchmarks/bench_simulator.py", "docs/simulator.md"
    text = (root / where).read_text()
    cols = ("N", "k", "B", "core user-steps/s", "env user-steps/s")
    table, above = md_table(text, "Throughput", cols, where, script)
    src = Source(script, f"{where}, Throughput", last_date(above), DEV)
    candidates = re.search(r"\bM\s*=\s*(\d+)", above)  # the table's caption: "M=100, d=32"
    m_text = f", M = {candidates.group(1)}" if candidates else ""
    if candidates:
        what = "the simulator benchmark's candidates per step (its table's caption)"
        out.append(Measurement("sim.candidates", int(candidates.group(1)), "candidates", what, src))
    for b, col, key in ((4096, cols[3], "sim.core"), (batch_envs, cols[4], "sim.env")):
        value = number(md_row(table, {"N": 1e5, "k": 1, "B": b}, where)[col])
        what = f"{col.split()[0]} loop, one thread, N = 10^5{m_text}, k = 1, B = {b}"
        out.append(Measurement(key, value, "user-steps/s per core", what, src))
    heading = "The default scenario"
    table, above = md_table(text, heading, ("policy", "click_rate"), where, "its evaluate() script")
    src = Source("the evaluate() script in the doc", f"{where}, {heading}", last_date(above), DEV)
    for policy in ("heuristic", "longterm"):
        row = md_row(table, {"policy": policy}, where)
        ret = next(c for c in row if c.startswith("return_mean"))
        # The default reward is clicks, so return_mean / click_rate is steps per lifetime exactly
        # (rayrec/evaluation/simulate.py: click_rate = clicks.sum() / steps.sum()).
        what = f"{policy} on envs/session.yaml: return_mean / click_rate"
        steps = number(row[ret]) / number(row["click_rate"])
        out.append(Measurement(f"lifetime.{policy}", steps, "steps/user", what, src))

    script, where = "benchmarks/gpu_learner.sh (bench_learner.py)", "docs/cluster.md"
    col = "samples/s (\N{MULTIPLICATION SIGN} epochs)"  # the doc's own column name
    text = (root / where).read_text()
    table, above = md_table(text, "GPU learners", ("learner", col), where, script)
    src = Source(script, f"{where}, GPU learners", last_date(above), H200)
    # The run's settings, as the doc gives them: "bench_learner.py --iterations 3` (PPO, ...;"
    run = re.search(r"bench_learner\.py[^(\n]*\(([^;)]*)", above)
    for name in ("cpu", "gpu"):
        value = number(md_row(table, {"learner": name}, where)[col])
        what = f"{' '.join(run.group(1).split()) if run else 'PPO'}; {name.upper()} learner"
        out.append(
            Measurement(f"learner.{name}_attention", value, "samples/s (x epochs)", what, src)
        )

    script, where = "benchmarks/bench_serve.py", "docs/serving.md"
    cols = ("server", "clients", "requests/s", "p99 ms", "server CPU ms/request")
    # The first table: Serve's throughput mode, as `rayrec serve` starts it.
    table, above = md_table((root / where).read_text(), "Latency", cols, where, script)
    src = Source(script, f"{where}, Latency", last_date(above), DEV)
    clients = max(number(r["clients"]) for r in table)
    for way, key in (("direct ingress", "serve.direct"), ("via the proxy", "serve.proxy")):
        row = md_row(table, {"server": f"rayrec Serve app, {way}", "clients": clients}, where)
        what = f"one replica, {way}, {clients:g} closed-loop clients on the same 2 CPUs, k = 1"
        for col, name, unit in (
            (cols[2], "rps", "requests/s per replica"),
            (cols[4], "cpu_ms", "server CPU ms/request"),
            (cols[3], "p99_ms", "ms at p99"),
        ):
            out.append(Measurement(f"{key}.{name}", number(row[col]), unit, what, src))

    script, where = "benchmarks/bench_offline.py", "docs/offline.md"
    table, above = md_table((root / where).read_text(), "", ("measurement", "value"), where, script)
    row = next((r for r in table if "parquet" in r["measurement"]), None)
    if row is None or "batch" not in row["measurement"]:
        raise MissingMeasurement(f"{where}: no 'CQL updates (batch B), parquet' row ({script})")
    batch, updates = number(row["measurement"].split("batch", 1)[1]), number(row["value"])
    what = f"discrete CQL from parquet through Ray Data: {updates:g} updates/s x batch {batch:g}"
    src = Source(script, where, last_date(above), DEV)
    out.append(Measurement("cql.rows", updates * batch, "rows/s per 2 CPUs", what, src))
    return out


def read_measurements(root: Path = ROOT) -> dict[str, Measurement]:
    """Every number the projection uses, from where the benchmarks recorded it under ``root``,
    and the settings it needs from the presets (``policies/``, ``envs/``)."""
    path = root / RESULTS
    if not path.is_file():
        raise MissingMeasurement(f"{path} does not exist (benchmarks/results_page.py writes it)")
    ppo_spec = yaml.safe_load((root / PPO).read_text())
    ppo = ppo_spec["training"]
    apex = yaml.safe_load((root / "policies" / "apex_dqn.yaml").read_text())["training"]
    env = yaml.safe_load((root / "envs" / "session.yaml").read_text())["config"]
    epochs, intensity = float(ppo["num_epochs"]), float(apex["training_intensity"])
    minibatches = ppo["train_batch_size_per_learner"] / ppo["minibatch_size"]
    local = inspect.signature(cluster_local.start).parameters
    out = [
        Measurement(key, value, unit, what, Source("(a setting)", where, None, "-"))
        for key, value, unit, what, where in (
            ("ppo.epochs", epochs, "passes over each batch", "training.num_epochs", PPO),
            ("ppo.minibatches", minibatches, "minibatches per batch",
             "train_batch_size_per_learner / minibatch_size", PPO),
            ("apex.intensity", intensity, "replayed samples per env step",
             "training.training_intensity", "policies/apex_dqn.yaml"),
            ("lifetime.cap", env["max_sessions"] * env["max_steps_per_session"], "steps",
             "max_sessions x max_steps_per_session", "envs/session.yaml"),
            ("env.items", env["num_items"], "items", "num_items", "envs/session.yaml"),
            ("env.candidates", env["num_candidates"], "candidates", "num_candidates",
             "envs/session.yaml"),
            ("cluster.head_cpus", local["head_cpus"].default, "CPUs", "head node",
             "cluster/local.sh (rayrec.cluster_local.start)"),
            ("cluster.worker_cpus", local["worker_cpus"].default, "CPUs", "worker node",
             "cluster/local.sh (rayrec.cluster_local.start)"),
        )
    ]  # fmt: skip
    out += _from_results(json.loads(path.read_text()), ppo_spec, intensity)
    batch_envs = int(ppo_spec["env_runners"]["num_envs_per_env_runner"])
    out += _from_docs(root, batch_envs)
    return {m.key: replace(m, value=float(m.value)) for m in out}


def observation_bytes(root: Path = ROOT) -> int:
    """Bytes of one observation of ``envs/session.yaml`` (computed from its space, not measured)."""
    import numpy as np  # here: the projection's arithmetic and its tests need neither

    from rayrec.envs.observation import observation_space
    from rayrec.sim import SimConfig

    config = yaml.safe_load((root / "envs" / "session.yaml").read_text())["config"]
    space = observation_space(SimConfig.from_dict(config))
    return sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in space.spaces.values())


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
