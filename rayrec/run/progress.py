"""What a run prints and logs per iteration: the progress line or bar, the metrics.jsonl row,
and the watch that fails a run whose env runners stopped sampling."""

from __future__ import annotations

import math
import sys
from typing import Any

from rayrec.contracts.observation import LOW

__all__ = ["STALL_ITERATIONS", "STALL_SECONDS", "Progress", "SamplingWatch", "metrics_row"]


class Progress:
    """A live progress bar on a terminal, plain lines elsewhere (CI logs)."""

    def __init__(self, total: int | None, budget: float | None, quiet: bool) -> None:
        self.total, self.budget, self.quiet = total, budget, quiet
        self.tty = sys.stderr.isatty() and not quiet
        self._bar = None
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("iter {task.completed:>4}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task("train", total=total, info="")
            self._bar.start()

    def update(self, iteration: int, row: dict[str, Any], elapsed: float) -> None:
        ret = row.get("episode_return_mean")
        trained, loss = (
            row.get("train/num_module_steps_trained_lifetime"),
            row.get("train/total_loss"),
        )
        if not row["env_steps"] and trained is not None:  # offline: no env, rows from the log
            info = f"rows trained {int(trained):>10,}" + (
                "" if loss is None else f"  loss {loss:.4g}"
            )
        else:
            info = (
                f"steps {row['env_steps']:>9,}  return {ret if ret is None else round(ret, 2)!s:>7}"
                f"  {row['env_steps_per_s']:,.0f} steps/s"
            )
        if self.budget:
            info += f"  {elapsed:,.0f}/{self.budget:,.0f}s"
        if self._bar is not None:
            self._bar.update(self._task, completed=iteration, info=info)
        elif not self.quiet:
            sys.stderr.write(f"iter {iteration:>4}  {info}\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _numbers(values: dict[str, Any], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


STALL_ITERATIONS = 10
STALL_SECONDS = 120.0
"""An online run that samples no env step for STALL_ITERATIONS iterations in a row lasting at
least STALL_SECONDS is broken."""


class SamplingWatch:
    """Fails an online run whose env runners sample nothing, instead of "training" on nothing.

    RLlib restarts failed env runners and carries on; if every restart fails again (say, a module
    that no longer loads its synchronised weights), iterations keep coming with zero new env steps
    and the run would end with an untrained policy and a results.json that looks normal.
    """

    def __init__(self, limit: int = STALL_ITERATIONS, seconds: float = STALL_SECONDS) -> None:
        self.limit, self.seconds = limit, seconds
        self.last = 0
        self.idle = 0
        self.idle_since = 0.0

    def update(self, iteration: int, steps_lifetime: int, now: float) -> None:
        if steps_lifetime > self.last or self.idle == 0:
            self.idle_since = now
        self.idle = 0 if steps_lifetime > self.last else self.idle + 1
        self.last = max(self.last, steps_lifetime)
        if self.idle >= self.limit and now - self.idle_since >= self.seconds:
            raise RuntimeError(
                f"no env steps sampled in the last {self.idle} iterations "
                f"({now - self.idle_since:.0f} s, up to iteration "
                f"{iteration}, {self.last:,} steps in all): every env runner keeps failing; "
                "see the env runners' errors in the Ray worker logs (/tmp/ray/session_latest/logs)"
            )


def metrics_row(result: dict[str, Any], iteration: int, seconds: float, steps0: int) -> dict:
    """One metrics.jsonl line. Multi-agent (hierarchical) runs add per-agent returns and steps
    (``agent_returns``, ``sim_steps`` = the low level's steps) and learner stats per module
    (``train/<module>/...``); their ``episode_return_mean`` adds both levels' returns."""
    runners = result.get("env_runners", {})
    steps = int(runners.get("num_env_steps_sampled_lifetime", 0) or 0)
    learners = result.get("learners", {})
    ret = runners.get("episode_return_mean")
    row = {
        "iteration": iteration,
        "env_steps": steps,
        "episode_return_mean": None if ret is None or math.isnan(ret) else float(ret),
        "episode_len_mean": runners.get("episode_len_mean"),
        "num_episodes": runners.get("num_episodes"),
        "env_steps_per_s": (steps - steps0) / max(seconds, 1e-9),
        "time_total_s": result.get("time_total_s"),
    }
    if "default_policy" in learners or not learners:
        row.update(_numbers(learners.get("default_policy", {}), "train/"))
        return row
    agent_steps = runners.get("num_agent_steps_sampled_lifetime") or {}
    if LOW in agent_steps:
        row["sim_steps"] = int(agent_steps[LOW])
    row["agent_returns"] = _numbers(runners.get("agent_episode_returns_mean") or {}, "")
    for module_id, stats in learners.items():
        if module_id != "__all_modules__" and isinstance(stats, dict):
            row.update(_numbers(stats, f"train/{module_id}/"))
    return row
