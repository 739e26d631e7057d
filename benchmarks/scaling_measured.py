"""What the scaling projection rests on: the numbers rayrec's benchmarks recorded, read back.

``docs/results.json`` (compare_algorithms.py, bench_sampling.py) and the tables that
``bench_simulator.py``, ``bench_serve.py``, ``bench_offline.py`` and ``bench_learner.py`` left in
``docs/*.md``, each with its source (script, file, date, machine). A number that is not where its
benchmark records it raises :class:`MissingMeasurement` naming the file and the key, table or
row. Used by ``benchmarks/scaling_projection.py``.
"""

from __future__ import annotations

import inspect
import json
import re
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rayrec import cluster_local  # noqa: E402 - after sys.path

__all__ = ["Measurement", "MissingMeasurement", "Source", "json_at", "md_row", "md_table"]
__all__ += ["observation_bytes", "read_measurements"]

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
