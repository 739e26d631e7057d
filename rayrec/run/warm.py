"""Warm starts: a new run begins from the RLModule weights of another checkpoint
(``rayrec train --init-from``), e.g. behaviour cloning on heuristic logs before RL fine-tuning;
optionally only the critic learns for the first iterations (``--critic-warmup N``), so that the
policy's first updates follow a trained value function instead of an untrained one's noise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ray.rllib.core.rl_module.apis import TargetNetworkAPI

from rayrec.contracts.layout import DEFAULT_MODULE_ID, module_dir, module_ids
from rayrec.evaluation.policies import load_module
from rayrec.specs import SpecError

__all__ = ["CRITIC_PREFIXES", "hold_policy", "warm_start"]

CRITIC_PREFIXES = ("critic.", "value_head.")
"""Parameter names of an actor-critic module's critic (its own tower, or the value head)."""


def warm_start(algo: Any, checkpoint: Path, log: Callable[[str], None]) -> list[str]:
    """Load the RLModule weights of ``checkpoint`` (any rayrec checkpoint or module folder with
    the same modules, e.g. behaviour cloning on heuristic logs) into ``algo`` before training;
    optimizer states and counters start fresh. Returns the module ids loaded.

    Every parameter of this run's modules must be in the checkpoint with the same shape, else
    one SpecError naming what differs (RLlib's own loading ignores missing parameters), except
    the target networks' (APPO's old policy, DQN's target Q): a saved module has none, and they
    start as copies of the loaded networks."""
    checkpoint = Path(checkpoint).resolve()
    wanted = _module_ids(algo)
    targets = _target_networks(algo, wanted, sync=False)
    loaded = []
    for module_id in wanted:
        folder = module_dir(checkpoint, module_id)
        if folder is None:
            raise SpecError(
                f"--init-from {checkpoint}: no module {module_id!r} in it "
                f"(it holds: {', '.join(module_ids(checkpoint)) or 'none'})"
            )
        source = load_module(folder).state_dict()
        component = f"learner/rl_module/{module_id}"
        state = algo.learner_group.get_state(components=component)
        target = state["learner"]["rl_module"][module_id]
        missing = sorted(set(target) - set(source) - targets[module_id])
        shapes = sorted(
            k
            for k in set(target) & set(source)
            if tuple(torch.as_tensor(target[k]).shape) != tuple(source[k].shape)
        )
        if missing or shapes:
            detail = f"missing {missing[:4]}" if missing else f"other shapes: {shapes[:4]}"
            raise SpecError(
                f"--init-from {checkpoint}: module {module_id!r} does not fit this run's "
                f"({type(algo.get_module(module_id)).__name__}; {detail}); warm starts need "
                "the same model section and module family"
            )
        algo.restore_from_path(folder, component=f"learner_group/{component}")
        loaded.append(module_id)
    _target_networks(algo, wanted, sync=True)
    log(f"initialised {', '.join(loaded)} from {checkpoint}")
    return loaded


def _target_networks(algo: Any, wanted: list[str], sync: bool) -> dict[str, set[str]]:
    """The parameter names of every module's target networks on the learners (the env runners'
    modules have none); with ``sync`` each target network first becomes a copy of its main one."""

    def names(learner: Any) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for module_id in wanted:
            module = _learner_module(learner, module_id)
            pairs = (
                module.get_target_network_pairs() if isinstance(module, TargetNetworkAPI) else []
            )
            ids = set()
            for main, target in pairs:
                if sync:
                    target.load_state_dict(main.state_dict())
                ids |= {id(t) for t in target.parameters()} | {id(t) for t in target.buffers()}
            tensors = [*module.named_parameters(), *module.named_buffers()]
            out[module_id] = {name for name, t in tensors if id(t) in ids}
        return out

    found: dict[str, set[str]] = {module_id: set() for module_id in wanted}
    for answer in _on_learners(algo, names):
        for module_id, targets in answer.items():
            found[module_id] |= targets
    return found


def hold_policy(algo: Any, held: bool) -> int:
    """Critic warm-up. ``held=True``: every parameter of the run's modules but the critic's
    (:data:`CRITIC_PREFIXES`) gets a zero gradient, on every learner, so the optimizer leaves it
    where the warm start put it while the critic learns the policy's values. ``held=False``:
    the gradients flow again and those parameters' optimizer state (Adam's moments, which saw
    only zeros) is cleared, so their first real steps are Adam's usual first steps. Returns the
    number of parameter tensors held or released (summed over the learners).

    Raises SpecError for modules without a critic (Q-learning presets)."""
    wanted = _module_ids(algo)

    def apply(learner: Any) -> int:
        handles = learner.__dict__.setdefault("_rayrec_held", {})
        count = 0
        for module_id in wanted:
            module = _learner_module(learner, module_id)
            named = list(module.named_parameters())
            if not any(name.startswith(CRITIC_PREFIXES) for name, _ in named):
                return -1  # no critic (the learner's module: the env runners' have none)
            policy = [
                p for name, p in named if p.requires_grad and not name.startswith(CRITIC_PREFIXES)
            ]
            if held and module_id not in handles:
                handles[module_id] = [p.register_hook(torch.zeros_like) for p in policy]
                count += len(policy)
            elif not held and module_id in handles:
                for handle in handles.pop(module_id):
                    handle.remove()
                ids = {id(p) for p in policy}
                for _, optimizer in learner.get_optimizers_for_module(module_id):
                    for param in [q for q in optimizer.state if id(q) in ids]:
                        del optimizer.state[param]
                count += len(policy)
        return count

    counts = _on_learners(algo, apply)
    if any(count < 0 for count in counts):
        raise SpecError(
            "--critic-warmup: the module has no critic (actor-critic presets only: PPO, APPO, "
            "IMPALA)"
        )
    return int(sum(counts))


def _module_ids(algo: Any) -> list[str]:
    """The run's module ids (one for a single-agent run)."""
    return sorted(algo.config.policies) if algo.config.is_multi_agent else [DEFAULT_MODULE_ID]


def _learner_module(learner: Any, module_id: str) -> Any:
    """A learner's module ``module_id`` (unwrapped from distributed training's wrapper)."""
    module = learner.module[module_id]
    return module.unwrapped() if hasattr(module, "unwrapped") else module


def _on_learners(algo: Any, func: Callable[[Any], Any]) -> list[Any]:
    """``func(learner)`` on every learner (local or remote): their answers, or the first error."""
    answers = []
    for result in algo.learner_group.foreach_learner(func):
        if not result.ok:
            raise result.get()
        answers.append(result.get())
    return answers
