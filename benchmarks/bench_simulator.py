"""User-steps per second of the batched session simulator, on one core, and its memory.

For each catalog (N = 10^5 items in T = 100 topics, N = 10^6 in T = 1000; M = 100 candidates,
d = 32, every other field at its SimConfig default), slate size k in {1, 10} and batch size
B in {1, 64, 1024, 4096}, two loops are timed:

- core: ``sim.step(actions)`` then ``sim.reset_users(terminated | truncated)``, with actions
  drawn beforehand (uniform candidate indices, distinct within a slate, the action mask ignored:
  masked choices show nothing, as a careless policy's would). It includes every pool refresh,
  every new user and every window draw, but no observation.
- env: ``SessionVectorEnv.step(actions)``, which adds next-step autoreset and builds the batched
  observation dict (history and candidate features, scalars, context, action mask).

Each cell is the median of 5 repeats of a fixed number of steps after warm-up steps. numpy runs
single-threaded (OMP/OpenBLAS/MKL threads set to 1 before numpy is imported). The core loop is
timed twice over: by the wall clock, and by the process's CPU time (``time.process_time``), which
on a machine whose cores are shared with other work leaves out the time spent waiting for a core
(it still includes what sharing the caches and memory bandwidth costs). The load average is
printed with the table.

The last column compares the core loop with a per-user reference, ``reference_step`` below: the
math of one k = 1 step (utility, click, watch, like and skip, reward, budget, hour, satisfaction,
interest drift, fatigue, history, consumption of the clicked candidate, leaving and returning)
written as a Python loop over users with scalar arithmetic (``math``, ``random``) and per-row
numpy only for the d-vector and T-vector updates, on the same catalog. To keep the comparison
conservative it does less than the batched step: it never refreshes pools, draws no new windows
and samples no new users (users who leave keep stepping), so the printed speedup understates the
batched simulator's advantage. It is timed on 256 users at k = 1 only.

Memory, for N = 10^6 and d = 32, is measured in a fresh interpreter (so that nothing else the
benchmark built counts): the catalog's arrays (``ItemCatalog.nbytes``), the per-item arrays
derived from it (retrieval index, packed item attributes), the simulator's per-user state at
B = 4096, the peak of numpy allocations traced by ``tracemalloc`` while building the env and
stepping it, and the process's peak resident set size (which includes the interpreter and the
imported libraries). The target is that all of it fits in 1 GiB.

    python benchmarks/bench_simulator.py [--quick] [--only N,k,B] [--out FILE.md]

``--quick`` is a smoke run: N = 10^4, B in {1, 64, 256}, a few steps, N = 10^5 for the memory.
``--only 100000,1,4096`` times that one cell (core and env loops, full step counts) and skips the
per-user reference and the memory probe.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

# One core: set before numpy is imported.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import numpy as np

from rayrec.envs import SessionVectorEnv
from rayrec.sim import SessionSimulator, SimConfig

EMBED_DIM = 32
NUM_CANDIDATES = 100
REPEATS = 5
# Number of topics chosen for each catalog size: about 1000 items per topic bucket.
TOPICS = {10_000: 10, 100_000: 100, 1_000_000: 1000}
ACTION_SETS = 16


def make_config(num_items: int, slate_size: int) -> SimConfig:
    return SimConfig(
        num_items=num_items,
        num_topics=TOPICS[num_items],
        embed_dim=EMBED_DIM,
        num_candidates=NUM_CANDIDATES,
        slate_size=slate_size,
    )


def draw_actions(batch: int, slate_size: int, seed: int = 0) -> list[np.ndarray]:
    """A few (B, k) action arrays of distinct uniform candidate indices, cycled through."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(ACTION_SETS):
        if slate_size == 1:
            sets.append(rng.integers(0, NUM_CANDIDATES, (batch, 1)))
        else:
            sets.append(
                np.argpartition(rng.random((batch, NUM_CANDIDATES)), slate_size, axis=1)[
                    :, :slate_size
                ]
            )
    return sets


def steps_for(batch: int, user_steps: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, math.ceil(user_steps / batch)))


def time_loop(
    step: Callable[[np.ndarray], None], actions: list[np.ndarray], steps: int
) -> tuple[float, float]:
    """Median wall and CPU seconds per step over REPEATS repeats of ``steps`` steps (after
    warm-up)."""
    for i in range(max(3, steps // 4)):
        step(actions[i % ACTION_SETS])
    wall, cpu = [], []
    for _ in range(REPEATS):
        t, c = time.perf_counter(), time.process_time()
        for i in range(steps):
            step(actions[i % ACTION_SETS])
        cpu.append((time.process_time() - c) / steps)
        wall.append((time.perf_counter() - t) / steps)
    return statistics.median(wall), statistics.median(cpu)


def bench_core(config: SimConfig, batch: int, steps: int) -> tuple[float, float]:
    """User-steps/s of sim.step + sim.reset_users, per wall-clock second and per CPU second."""
    sim = SessionSimulator(config, batch, seed=0)
    sim.reset()

    def step(a: np.ndarray) -> None:
        r = sim.step(a)
        sim.reset_users(r.terminated | r.truncated)

    wall, cpu = time_loop(step, draw_actions(batch, config.slate_size), steps)
    return batch / wall, batch / cpu


def bench_env(config: SimConfig, batch: int, steps: int) -> float:
    """User-steps/s of SessionVectorEnv.step (autoreset and observations included)."""
    env = SessionVectorEnv(num_envs=batch, seed=0, **config.to_dict())
    env.reset(seed=0)
    actions = [
        a[:, 0] if config.slate_size == 1 else a for a in draw_actions(batch, config.slate_size)
    ]
    return batch / time_loop(env.step, actions, steps)[0]


# ---- the per-user reference ---------------------------------------------------------------------
def reference_state(sim: SessionSimulator) -> dict[str, Any]:
    """Copies of the simulator's state and its current candidate window, for reference_step."""
    names = (
        "interest fatigue satisfaction appeal_sensitivity budget loyalty hour "
        "session_index step_in_session history_items history_responses"
    ).split()
    state = {name: getattr(sim, name).copy() for name in names}
    state["candidates"] = sim.candidates.copy()
    state["valid"] = sim.candidate_valid.copy()
    return state


def reference_step(
    sim: SessionSimulator, s: dict[str, Any], actions: np.ndarray, rnd: random.Random
) -> None:
    """One k = 1 step of every user, one user at a time (see the module docstring)."""
    cfg, cat = sim.config, sim.catalog
    m, v0 = cfg.num_candidates, cfg.no_click_utility
    emb, topic_of, appeal, quality, duration = (
        cat.embedding,
        cat.topic,
        cat.appeal,
        cat.quality,
        cat.duration,
    )
    decay = 1.0 - cfg.fatigue_decay
    for i in range(len(actions)):
        a = int(actions[i])
        pick = min(max(a, 0), m - 1)
        item = int(s["candidates"][i, pick])
        shown = a == pick and bool(s["valid"][i, pick])
        u = s["interest"][i]
        e = emb[item]
        affinity = float(e @ u)
        topic = int(topic_of[item])
        fatigue = s["fatigue"][i]
        utility = (
            cfg.affinity_weight * affinity
            + cfg.appeal_weight * float(s["appeal_sensitivity"][i]) * float(appeal[item])
            - cfg.fatigue_weight * float(fatigue[topic])
        )
        clicked = shown and rnd.random() < 1.0 / (1.0 + math.exp(v0 - utility))
        watch = like = skip = 0.0
        if clicked:
            q = float(quality[item])
            logit = (
                cfg.watch_quality_weight * (q - 0.5)
                + cfg.watch_affinity_weight * affinity
                + cfg.watch_noise * rnd.gauss(0.0, 1.0)
            )
            watch = 1.0 / (1.0 + math.exp(-logit))
            like = float(rnd.random() < q * watch)
            skip = float(watch < cfg.skip_threshold)
        minutes = cfg.step_minutes + watch * float(duration[item])
        s["budget"][i] -= minutes
        s["hour"][i] = (s["hour"][i] + minutes / 60.0) % 24.0
        delta = (
            cfg.satisfaction_quality_weight * (watch - cfg.quality_reference)
            if clicked
            else -cfg.miss_penalty
        )
        sat = min(max(float(s["satisfaction"][i]) + delta, -5.0), 5.0)
        s["satisfaction"][i] = sat
        if clicked:
            u += cfg.drift_rate * (e - u)
            u /= max(float(np.linalg.norm(u)), 1e-12)
            s["valid"][i, pick] = False
        fatigue *= decay
        if shown:
            fatigue[topic] += cfg.fatigue_show_gain + (cfg.fatigue_gain if clicked else 0.0)
        history = s["history_items"][i]
        history[:-1] = history[1:]
        history[-1] = item if shown else -1
        responses = s["history_responses"][i]
        responses[:-1] = responses[1:]
        responses[-1] = (float(clicked), watch, like, skip)
        s["step_in_session"][i] += 1
        leave = rnd.random() < 1.0 / (
            1.0 + math.exp(-(cfg.leave_bias - cfg.leave_satisfaction_weight * sat))
        )
        ended = leave or s["budget"][i] <= 0 or s["step_in_session"][i] >= cfg.max_steps_per_session
        if ended:
            p_return = 1.0 / (
                1.0
                + math.exp(
                    -(
                        cfg.return_bias
                        + float(s["loyalty"][i])
                        + cfg.return_satisfaction_weight * sat
                    )
                )
            )
            if rnd.random() < p_return and s["session_index"][i] + 1 < cfg.max_sessions:
                s["session_index"][i] += 1
                s["step_in_session"][i] = 0


def bench_reference(config: SimConfig, batch: int, steps: int) -> float:
    """User-steps/s of reference_step."""
    sim = SessionSimulator(config, batch, seed=0)
    sim.reset()
    state = reference_state(sim)
    rnd = random.Random(0)
    actions = [a[:, 0] for a in draw_actions(batch, 1)]
    return batch / time_loop(lambda a: reference_step(sim, state, a, rnd), actions, steps)[0]


# ---- memory ---------------------------------------------------------------------------------
def memory_probe(num_items: int) -> None:
    """Run in a fresh interpreter: build and step the env at B = 4096, print memory figures."""
    config = make_config(num_items, 1)
    batch = 4096
    tracemalloc.start()
    env = SessionVectorEnv(num_envs=batch, seed=0, **config.to_dict())
    env.reset(seed=0)
    actions = draw_actions(batch, 1)
    for i in range(10):
        env.step(actions[i % ACTION_SETS][:, 0])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sim = env.sim
    # Per-item arrays derived from the catalog: the retrieval index and the step's attributes.
    derived = sum(v.nbytes for v in vars(sim.retriever).values() if isinstance(v, np.ndarray))
    derived += sum(
        v.nbytes
        for v in vars(sim).values()
        if isinstance(v, np.ndarray) and v.shape[:1] == (num_items,)
    )
    state = sum(
        v.nbytes
        for v in vars(sim).values()
        if isinstance(v, np.ndarray) and v.shape[:1] == (batch,)
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(sim.catalog.nbytes, derived, state, peak, rss)


def measure_memory(num_items: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-probe", str(num_items)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    names = ("catalog", "index and derived", "user state (B=4096)", "tracemalloc peak", "peak RSS")
    return {name: int(v) / 2**20 for name, v in zip(names, out, strict=True)}


# ---- tables ---------------------------------------------------------------------------------
def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def parse_cell(text: str) -> tuple[int, int, int]:
    """'N,k,B' (e.g. '100000,1,4096') -> (N, k, B), N one of the catalogs in TOPICS."""
    try:
        n, k, b = (int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--only ({text!r}) must be N,k,B, e.g. 100000,1,4096"
        ) from err
    if n not in TOPICS or k < 1 or b < 1:
        raise argparse.ArgumentTypeError(
            f"--only ({text!r}): N must be one of {sorted(TOPICS)}, k and B at least 1"
        )
    return n, k, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument(
        "--only", type=parse_cell, metavar="N,k,B", help="time this one cell, nothing else"
    )
    parser.add_argument("--out", help="also write the tables as Markdown here")
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return

    start = time.perf_counter()
    if args.quick:
        catalogs, batches, core_steps, env_steps, memory_items = (
            [10_000],
            [1, 64, 256],
            4,
            2,
            100_000,
        )
    else:
        catalogs, batches = [100_000, 1_000_000], [1, 64, 1024, 4096]
        core_steps, env_steps, memory_items = 200_000, 30_000, 1_000_000
    cells = [(n, k, b) for n in catalogs for k in (1, 10) for b in batches]
    if args.only:
        cells = [args.only]

    reference = {}
    if not args.only:
        for n in catalogs:
            steps = 2 if args.quick else 10
            reference[n] = bench_reference(make_config(n, 1), 256, steps)

    header = [
        "N",
        "T",
        "k",
        "B",
        "core user-steps/s",
        "core user-steps per CPU s",
        "env user-steps/s",
        "env / core",
        "core / per-user loop",
    ]
    rows = []
    for n, k, b in cells:
        config = make_config(n, k)
        if args.quick:
            cs, es = core_steps, env_steps
        else:
            cs = steps_for(b, core_steps, 20, 2000)
            es = steps_for(b, env_steps, 10, 500)
        core, core_cpu = bench_core(config, b, cs)
        env = bench_env(config, b, es)
        ratio = f"{core / reference[n]:,.2g}x" if k == 1 and n in reference else "-"
        rows.append(
            [
                f"{n:.0e}",
                str(TOPICS[n]),
                str(k),
                str(b),
                f"{core:,.0f}",
                f"{core_cpu:,.0f}",
                f"{env:,.0f}",
                f"{env / core:.2f}",
                ratio,
            ]
        )
        print("  " + " | ".join(rows[-1]), flush=True)
    load = os.getloadavg()
    title = (
        f"rayrec simulator, 1 thread, median of {REPEATS} repeats; M={NUM_CANDIDATES}, "
        f"d={EMBED_DIM}, T chosen as N/1000; numpy {np.__version__}, Python "
        f"{platform.python_version()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end"
    )
    parts = [title, markdown(header, rows)]
    if not args.only:
        ref_rows = [[f"{n:.0e}", "1", "256", f"{reference[n]:,.0f}"] for n in catalogs]
        ref_table = markdown(["N", "k", "B", "per-user loop user-steps/s"], ref_rows)
        memory = measure_memory(memory_items)
        mem_table = markdown(
            ["N", "d", *memory],
            [
                [
                    f"{memory_items:.0e}",
                    str(EMBED_DIM),
                    *(f"{v:,.1f} MiB" for v in memory.values()),
                ]
            ],
        )
        fits = memory["peak RSS"] <= 1024
        parts += [
            "Per-user Python loop (reference_step, see the docstring):",
            ref_table,
            "Memory (fresh process, env at B=4096 stepped 10 times); peak RSS fits in 1 GiB: "
            f"{fits}",
            mem_table,
        ]
    parts.append(f"Total benchmark time: {time.perf_counter() - start:.0f} s")
    report = "\n\n".join(parts)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
