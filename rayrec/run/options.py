"""How long to train, where, and how to evaluate: a run's options (flags over the spec)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rayrec.evaluation.compare import DEFAULT_BASELINES
from rayrec.specs import PolicySpec

__all__ = ["DEFAULT_BASELINES", "VALIDATION_SEED_OFFSET", "RunOptions", "selection_options"]


# Validation users (checkpoint selection) are drawn from eval_seed + this: other users.
VALIDATION_SEED_OFFSET = 7_777_777


@dataclass
class RunOptions:
    """How long to train and where; command-line flags override the policy spec's ``stop``."""

    out: Path
    seed: int = 0
    iterations: int | None = None
    time_budget: float | None = None
    stop_return: float | None = None
    checkpoint_every: int = 5
    eval_users: int = 1000
    eval_seed: int = 12345
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    address: str | None = None
    data: Path | None = None
    """Log folder of an offline run (``rayrec collect``); None for online training."""
    select_every: int | None = None
    """Evaluate the policy on ``select_users`` validation users every this many iterations and
    report the best of those checkpoints (``checkpoints/selected``) instead of the last one."""
    select_users: int = 500
    init_from: Path | None = None
    """A checkpoint whose RLModule weights the run starts from (a warm start), or None."""
    critic_warmup: int = 0
    """Iterations at the start of a warm-started run in which only the critic learns (the
    policy's parameters get zero gradients, :func:`rayrec.run.warm.hold_policy`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": None if self.data is None else str(Path(self.data).resolve()),
            "seed": self.seed,
            "iterations": self.iterations,
            "time_budget": self.time_budget,
            "stop_return": self.stop_return,
            "checkpoint_every": self.checkpoint_every,
            "eval_users": self.eval_users,
            "eval_seed": self.eval_seed,
            "baselines": list(self.baselines),
            "select_every": self.select_every,
            "select_users": self.select_users,
            "init_from": None if self.init_from is None else str(Path(self.init_from).resolve()),
            "critic_warmup": self.critic_warmup,
        }

    @property
    def select_seed(self) -> int:
        """Seed of the validation users: never the final evaluation's users."""
        return self.eval_seed + VALIDATION_SEED_OFFSET


def selection_options(policy: PolicySpec) -> dict[str, Any]:
    """The RunOptions fields of the policy spec's checkpoint selection (``evaluation.select_*``)."""
    evaluation = policy.evaluation
    return {
        "select_every": evaluation.get("select_every"),
        "select_users": evaluation.get("select_users", 500),
    }
