"""Hierarchical PPO: one policy per level of ``HierarchicalSessionEnv``, each with its own discount.

``build_hierarchical_config`` turns an env spec with a ``hierarchy`` section and a policy spec with
``levels`` into RLlib's multi-agent PPO: agent ids ``high`` and ``low`` map to module ids of the
same name (:class:`rayrec.models.hierarchical.OptionPolicyModule` and
:class:`~rayrec.models.hierarchical.OptionCandidateModule`); ``levels.<level>.training`` become
RLlib's ``algorithm_config_overrides_per_module``, ``levels.<level>.model`` the module's model.

RLlib 2.60's PPO learner builds one ``GeneralAdvantageEstimation(gamma=config.gamma)`` for every
module (``ray/rllib/algorithms/ppo/ppo_learner.py``), so per-module gammas would be silently
ignored in the advantages; :class:`PerModuleGammaPPOLearner` swaps in :class:`PerModuleGammaGAE`,
which reads ``config.get_config_for_module(module_id)`` (gamma and lambda).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.utils.annotations import override

from rayrec.envs.hierarchical.config import HIGH, LOW
from rayrec.envs.observation import Obs

__all__ = [
    "HIERARCHICAL_RLLIB_ENV_NAME",
    "LEVELS",
    "HierarchicalPolicy",
    "PerModuleGammaGAE",
    "PerModuleGammaPPOLearner",
    "build_hierarchical_config",
    "level_model_config",
    "load_level_modules",
    "make_hierarchical_env",
    "map_level",
    "module_actor",
]

HIERARCHICAL_RLLIB_ENV_NAME = "rayrec_hierarchical"
LEVELS = (HIGH, LOW)


class PerModuleGammaGAE(GeneralAdvantageEstimation):
    """GAE with each module's own gamma and lambda (RLlib's GAE uses one pair for all modules).

    Args:
        gammas, lambdas: module id -> value; modules not listed use ``gamma`` / ``lambda_``.
    """

    def __init__(
        self,
        *args: Any,
        gammas: dict[str, float],
        lambdas: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gammas = dict(gammas)
        self.lambdas = dict(lambdas or {})
        self.default_gamma, self.default_lambda = self.gamma, self.lambda_

    @override(GeneralAdvantageEstimation)
    def __call__(self, *, rl_module: Any, episodes: Any, batch: dict, **kwargs: Any) -> Any:
        try:
            for module_id in list(batch):
                self.gamma = self.gammas.get(module_id, self.default_gamma)
                self.lambda_ = self.lambdas.get(module_id, self.default_lambda)
                # The parent writes advantages and value targets into batch[module_id] in place;
                # it only reads the episodes of the module ids present in the batch it is given.
                super().__call__(
                    rl_module=rl_module,
                    episodes=episodes,
                    batch={module_id: batch[module_id]},
                    **kwargs,
                )
        finally:
            self.gamma, self.lambda_ = self.default_gamma, self.default_lambda
        return batch


class PerModuleGammaPPOLearner(PPOTorchLearner):
    """PPO's torch learner with :class:`PerModuleGammaGAE` in place of the one-gamma GAE."""

    @override(PPOTorchLearner)
    def build(self) -> None:
        import torch

        # Torch's default intra-op threads (one per core) thrash when env runners share those
        # cores: on 2 busy CPUs a learner update took 13x longer than with one thread (measured:
        # 34 s vs 2.5 s per 4096-step PPO iteration). A learner uses the CPUs it was given.
        cpus = self.config.num_cpus_per_learner
        torch.set_num_threads(cpus if isinstance(cpus, int) and cpus > 0 else 1)
        super().build()
        pipeline = self._learner_connector
        if pipeline is None or not any(
            type(c) is GeneralAdvantageEstimation for c in pipeline.connectors
        ):
            return  # no default GAE to replace (custom pipeline)
        modules = list(self.config.policies)
        per_module = {mid: self.config.get_config_for_module(mid) for mid in modules}
        pipeline.remove(GeneralAdvantageEstimation)
        pipeline.append(
            PerModuleGammaGAE(
                gamma=self.config.gamma,
                lambda_=self.config.lambda_,
                gammas={mid: c.gamma for mid, c in per_module.items()},
                lambdas={mid: c.lambda_ for mid, c in per_module.items()},
            )
        )


def make_hierarchical_env(env_config: dict[str, Any]) -> Any:
    """RLlib env creator: an env spec's dict ``{"id", "config", "hierarchy"}`` ->
    ``HierarchicalSessionEnv``. Runs inside every EnvRunner process (imports rayrec itself)."""
    from rayrec.envs.hierarchical import HierarchicalSessionEnv

    return HierarchicalSessionEnv(
        {**dict(env_config.get("config", {})), "hierarchy": env_config.get("hierarchy") or {}}
    )


def map_level(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """Policy mapping: each level (agent id) has its own module of the same id."""
    return agent_id


def level_model_config(policy: Any, level: str) -> dict[str, Any]:
    """The policy spec's ``model`` with ``levels.<level>.model`` on top (a module's model_config)."""
    from rayrec.models.towers import ModelConfig

    base = {
        "encoder": policy.model.encoder,
        "hidden": policy.model.hidden,
        "scorer": policy.model.scorer,
        "value_hidden": policy.model.value_hidden,
    }
    base.update((policy.levels or {}).get(level, {}).get("model", {}))
    ModelConfig.from_dict(base)
    return base


def build_hierarchical_config(env: Any, policy: Any, seed: int = 0) -> Any:
    """The multi-agent PPO AlgorithmConfig of a hierarchical preset (``levels``) on ``env``."""
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune.registry import register_env

    from rayrec.envs import SESSION_ENV_ID
    from rayrec.envs.hierarchical import HierarchicalSessionEnv
    from rayrec.experiment import _algorithm_config_class, apply_sections, seeded_and_validated
    from rayrec.models.hierarchical import OptionCandidateModule, OptionPolicyModule
    from rayrec.specs import SpecError

    if policy.algorithm != "PPO":
        raise SpecError(
            f"policy spec: a hierarchical preset (levels) trains with algorithm PPO only, "
            f"not {policy.algorithm}"
        )
    if env.id != SESSION_ENV_ID or env.hierarchy is None:
        raise SpecError(
            "env spec: a hierarchical preset (levels) needs a session env spec with a "
            "'hierarchy' section (e.g. envs/hierarchical.yaml)"
        )
    register_env(HIERARCHICAL_RLLIB_ENV_NAME, make_hierarchical_env)
    probe = HierarchicalSessionEnv({**env.config.to_dict(), "hierarchy": env.hierarchy})
    classes = {HIGH: OptionPolicyModule, LOW: OptionCandidateModule}
    specs = {
        level: RLModuleSpec(
            module_class=classes[level],
            observation_space=probe.observation_spaces[level],
            action_space=probe.action_spaces[level],
            model_config=level_model_config(policy, level),
        )
        for level in LEVELS
    }
    levels = policy.levels or {}
    config = _algorithm_config_class(policy.algorithm)()
    config.environment(HIERARCHICAL_RLLIB_ENV_NAME, env_config=env.to_dict())
    apply_sections(config, policy)
    # An ordered tuple, not a set: RLlib orders the modules (and so their draws from the seeded
    # RNGs) as given, and a set of strings iterates in an order that changes with PYTHONHASHSEED.
    config.multi_agent(policies=LEVELS, policy_mapping_fn=map_level, policies_to_train=list(LEVELS))
    config.rl_module(
        rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs),
        algorithm_config_overrides_per_module={
            level: dict(levels.get(level, {}).get("training", {})) for level in LEVELS
        },
    )
    config.learners(learner_class=PerModuleGammaPPOLearner)
    return seeded_and_validated(config, seed)


def module_actor(modules: dict[str, Any]) -> Any:
    """An evaluation actor (:data:`rayrec.evaluation.hierarchical.LevelActor`) from the two
    levels' RLModules: the arg-max (top-k for slates) of each module's masked logits."""
    import torch
    from ray.rllib.core.columns import Columns

    from rayrec.evaluation import top_k_valid

    def act(level: str, obs: dict[str, np.ndarray]) -> np.ndarray:
        batch = {
            Columns.OBS: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in obs.items()}
        }
        with torch.no_grad():
            logits = modules[level].forward_inference(batch)[Columns.ACTION_DIST_INPUTS].numpy()
        space = modules[level].action_space
        k = len(space.nvec) if hasattr(space, "nvec") else 1
        picks = top_k_valid(logits, obs[Obs.ACTION_MASK], k)
        return picks if k > 1 else picks[:, 0]

    return act


def load_level_modules(checkpoint: str | Path) -> dict[str, Any]:
    """The two levels' RLModules (eval mode) from an algorithm checkpoint (or its rl_module
    folder), without building the Algorithm."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    from rayrec.specs import SpecError

    path = Path(checkpoint).resolve()  # RLlib's loader rejects relative paths (no URI scheme)
    for root in (path / "learner_group" / "learner" / "rl_module", path / "rl_module", path):
        if all((root / level).is_dir() for level in LEVELS):
            modules = {level: RLModule.from_checkpoint(root / level) for level in LEVELS}
            for module in modules.values():
                module.eval()
            return modules
    raise SpecError(f"{path}: not a hierarchical checkpoint (no '{HIGH}' and '{LOW}' modules)")


class HierarchicalPolicy:
    """A trained two-level agent as an evaluation policy: plays ``HierarchicalSessionEnv`` on an
    env spec's scenario (arg-max of each level's masked logits), scored on the flat return."""

    def __init__(self, modules: dict[str, Any], name: str = "hierarchical") -> None:
        self.modules = modules
        self.name = name

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> HierarchicalPolicy:
        return cls(load_level_modules(path), **kwargs)

    def evaluate_on(self, env: Any, users: int, seed: int) -> dict[str, Any]:
        """Metrics (:class:`rayrec.keys.Metrics`) over ``users`` lifetimes of ``env`` (an env spec
        with a ``hierarchy`` section)."""
        from rayrec.evaluation.hierarchical import evaluate_hierarchical
        from rayrec.specs import SpecError

        if env.hierarchy is None:
            raise SpecError("env spec: evaluating a hierarchical agent needs a 'hierarchy' section")
        actor = module_actor(self.modules)
        return evaluate_hierarchical(actor, env.config, env.hierarchy, users=users, seed=seed)
