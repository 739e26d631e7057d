"""docs/results.json and docs/results.md: numbers written by scripts, never by hand.

Each script owns one key of results.json; ``update_results`` replaces that key and regenerates
results.md from the whole JSON, so the two never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rayrec.contracts.files import atomic_write_text

__all__ = ["render_markdown", "update_results"]

DOCS = Path(__file__).resolve().parents[1] / "docs"


def update_results(key: str, record: dict[str, Any], docs: Path = DOCS) -> None:
    """Store ``record`` under ``key`` in results.json and rewrite results.md."""
    path = docs / "results.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = record
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    atomic_write_text(docs / "results.md", render_markdown(data))


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _offline_section(off: dict[str, Any]) -> list[str]:
    lines = [
        f"## Offline learning from logs of `{off['behavior']}`"
        + (f", seed {off['seed']}" if off.get("seed") is not None else ""),
        "",
        f"`benchmarks/compare_offline.py` on `{off['env']}`: `{off['behavior']}` logged "
        f"{off['logged_users']} user lifetimes ({off['logged_rows']} rows); every algorithm trains "
        f"from those logs only, {off['machine']}, {off['date']}"
        + (
            f" (`--seed {off['seed']}`: the log's seed is {off['seed'] + 1}, training's {off['seed']})"
            if off.get("seed") is not None
            else ""
        )
        + ". Evaluated in the simulator over "
        f"{off['eval_users']} users (the same for every row), mean ± 95% CI.",
        "",
        "| policy | return (95% CI) | clicks | sessions/user | return rate | iterations | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in off["algorithms"]:
        label = r["algorithm"] + (f" ({', '.join(r['overrides'])})" if r.get("overrides") else "")
        lines.append(
            f"| {label} | {_fmt(r['return_mean'])} ± {_fmt(r['return_ci95'])} | "
            f"{_fmt(r['clicks_mean'])} | {_fmt(r['sessions_per_user'])} | "
            f"{_fmt(r['return_rate'])} | {r['iterations']} | {_fmt(r['wall_time_s'], 0)} |"
        )
    for name, b in off["baselines"].items():
        label = f"behaviour: {off['behavior']}" if name == "behavior" else f"baseline: {name}"
        lines.append(
            f"| {label} | {_fmt(b['return_mean'])} ± {_fmt(b['return_ci95'])} | "
            f"{_fmt(b['clicks_mean'])} | {_fmt(b['sessions_per_user'])} | "
            f"{_fmt(b['return_rate'])} | - | - |"
        )
    lines.append("")
    return lines


PEEKING_BASELINES = ("greedy", "longterm")


def _baseline_label(name: str) -> str:
    """A baseline's name, marked when it reads the latent user state."""
    return f"{name} (peeks)" if name in PEEKING_BASELINES else name


def _online_section(online: dict[str, Any]) -> list[str]:
    title = online.get("title", "Online training: algorithms under the same wall-clock budget")
    budget = online["budget_s"]
    budget_text = (
        "each preset's own budget (its `stop` section)"
        if budget == "preset"
        else f"{budget:.0f} s of training per row"
    )
    seeds = {r.get("seed") for r in online["algorithms"]}
    lines = [
        f"## {title}",
        "",
        f"`benchmarks/compare_algorithms.py` on `{online['env']}`, {budget_text}, "
        f"{online['machine']}, {online['date']}. Long-term return is "
        f"clicks over a user's lifetime, mean ± 95% CI over {online['users']} simulated users "
        "(the same users for every row).",
        "",
    ]
    if online.get("note"):
        lines += [online["note"], ""]
    lines += [
        "| policy | return (95% CI) | clicks | sessions/user | return rate | env steps | "
        "wall s | env steps/s | sampling steps/s per runner |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in online["algorithms"]:
        label = f"{r['algorithm']}, seed {r['seed']}" if len(seeds) > 1 else r["algorithm"]
        lines.append(
            f"| {label} | {_fmt(r['return_mean'])} ± {_fmt(r['return_ci95'])} | "
            f"{_fmt(r['clicks_mean'])} | {_fmt(r['sessions_per_user'])} | "
            f"{_fmt(r['return_rate'])} | {_fmt(r['env_steps'])} | {_fmt(r['wall_time_s'], 0)} | "
            f"{_fmt(r['env_steps_per_s'], 0)} | {_fmt(r['sampling_steps_per_s_per_runner'], 0)} "
            f"({r['num_envs_per_env_runner']} envs) |"
        )
    for name, b in online["baselines"].items():
        lines.append(
            f"| baseline: {_baseline_label(name)} | {_fmt(b['return_mean'])} ± {_fmt(b['return_ci95'])} | "
            f"{_fmt(b['clicks_mean'])} | {_fmt(b['sessions_per_user'])} | "
            f"{_fmt(b['return_rate'])} | - | - | - | - |"
        )
    lines.append("")
    return lines


def _hierarchical_section(h: dict[str, Any]) -> list[str]:
    lines = [
        "## Hierarchical (options) vs flat PPO",
        "",
        f"`benchmarks/compare_hierarchical.py` on `{h['env']}` ({', '.join(h['policies'])}), "
        f"seed {h['seed']}, {h['machine']}, {h['date']}. Two budgets: equal simulator steps "
        f"({_fmt(h['sim_steps_budget'])}; the hierarchical agent's are its low level's) and equal "
        f"wall time ({_fmt(h['time_budget_s'], 0)} s of training). Flat return (simulator reward "
        f"only), mean ± 95% CI over {h['eval_users']} users. {h['note']}.",
        "",
        "| budget | agent | return (95% CI) | clicks | sessions/user | topics/user | sim steps | "
        "iterations | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in h["runs"]:
        lines.append(
            f"| {r['budget']} | {r['agent']} | {_fmt(r['return_mean'])} ± "
            f"{_fmt(r['return_ci95'])} | {_fmt(r['clicks_mean'])} | "
            f"{_fmt(r['sessions_per_user'])} | {_fmt(r['topics_per_user'])} | "
            f"{_fmt(r['sim_steps'])} | {r['iterations']} | {_fmt(r['wall_time_s'], 0)} |"
        )
    for name, b in h["baselines"].items():
        lines.append(
            f"| - | baseline: {_baseline_label(name)} | {_fmt(b['return_mean'])} ± "
            f"{_fmt(b['return_ci95'])} | {_fmt(b['clicks_mean'])} | "
            f"{_fmt(b['sessions_per_user'])} | {_fmt(b['topics_per_user'])} | - | - | - |"
        )
    lines.append("")
    return lines


def _sampling_section(s: dict[str, Any]) -> list[str]:
    lines = [
        "## Sampling: env steps/s of one env runner against its vectorised envs",
        "",
        f"`benchmarks/bench_sampling.py`: `{s['policy']}` on `{s['env']}`, one local env runner "
        "(env steps, episode bookkeeping and batched RLModule inference, no learner), "
        f"{s['per_call']} env steps per `sample()` call, median of {s['repeats']} x "
        f"{s['seconds']:g} s, {s['machine']}, {s['date']}. rayrec's `VectorEnvRunner` "
        "(batched loop, the default) against RLlib's own per-env loop, measured alternately in "
        "the same run.",
        "",
        "| envs per runner | RLlib's loop | rayrec's batched loop | speedup |",
        "|---|---|---|---|",
    ]
    for r in s["rates"]:
        mark = " (preset)" if r["envs"] == s["preset_envs"] else ""
        fast, base = r["env_steps_per_s"], r["rllib_loop_steps_per_s"]
        lines.append(
            f"| {r['envs']}{mark} | {_fmt(base, 0)} | {_fmt(fast, 0)} | {fast / base:.2f}x |"
        )
    lines.append("")
    return lines


def render_markdown(data: dict[str, Any]) -> str:
    lines = [
        "# Results",
        "",
        "Written by scripts from `docs/results.json`; do not edit by hand.",
        "",
    ]
    for key, record in data.items():
        if key.startswith("online"):
            lines += _online_section(record)
    for key, record in data.items():
        if key.startswith("offline"):
            lines += _offline_section(record)
    if "sampling" in data:
        lines += _sampling_section(data["sampling"])
    if "hierarchical" in data:
        lines += _hierarchical_section(data["hierarchical"])
    for key, record in data.items():
        if key in ("hierarchical", "sampling") or key.startswith(("online", "offline")):
            continue
        lines += [f"## {key}", "", "```json", json.dumps(record, indent=2), "```", ""]
    return "\n".join(lines)
