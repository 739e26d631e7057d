"""A served policy: the inference-only RLModule of a checkpoint plus the catalog it was trained on.

Nothing else of the checkpoint is restored (no Algorithm, no env runners, no learner). The catalog
and the candidate retriever are rebuilt from the run's environment spec exactly as the simulator
builds them (they are a function of the spec's ``SimConfig``, ``world_seed`` included), so item
``i`` means the same item to the server as it did to the policy during training.

Slates and their propensities (documented in docs/serving.md):

- ``sample``: the slate is drawn from the Plackett-Luce distribution of the module's scores over
  the valid candidates (softmax for k = 1; for Q modules the softmax of the Q-values), i.e. k
  draws without replacement. ``propensities[i]`` is the probability of the item at position i
  given the items before it; ``propensity`` is their product, the probability of the whole
  ordered slate. With a propensity floor eps, each position draws from the policy mixed with
  eps-uniform over the candidates left instead, and the propensities are the mixture's.
- ``greedy``: the top k scores (ties: lower candidate index first); the choice is deterministic,
  so every propensity is 1.0.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rayrec.contracts.errors import SpecError
from rayrec.contracts.layout import (
    CTOR_FILE,
    MODULE_STATE,
    find_run_dir,
    is_hierarchical,
    module_dir,
)
from rayrec.contracts.observation import HIGH, LOW, Obs
from rayrec.envs.observation import build_observation
from rayrec.models.scoring import is_q_module, module_scores
from rayrec.serve.hierarchy import OptionChoice, ServedLevels
from rayrec.sim import CandidateRetriever, ItemCatalog, SimConfig
from rayrec.sim.config import NUM_CONTEXT, NUM_RESPONSES
from rayrec.specs import EnvSpec, load_run_spec

__all__ = [
    "ServedPolicy",
    "check_same_world",
    "choose_slate",
    "find_module_dir",
    "module_version",
]


def find_module_dir(checkpoint: Path) -> Path:
    """The RLModule folder of a single-agent checkpoint (``checkpoint`` itself if it is one), or
    of the low level of a two-level checkpoint (the level that scores candidates)."""
    found = module_dir(checkpoint) or module_dir(checkpoint, LOW)
    if found is None:
        raise SpecError(f"{checkpoint}: not an rayrec/RLlib checkpoint (no RLModule state found)")
    return found


def module_version(checkpoint: Path, module_dir: Path, run: Path | None = None) -> str:
    """``RUN/CHECKPOINT@HASH``: the run folder's and the checkpoint's names plus a hash of the
    weights of every module served from it (both levels of a two-level checkpoint), so that two
    different weights never share a version."""
    digest = hashlib.sha256()
    folders = [module_dir.parent / HIGH, module_dir] if module_dir.name == LOW else [module_dir]
    for folder in folders:
        for path in sorted(folder.glob(f"{MODULE_STATE}*")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    name = checkpoint.resolve().name
    if run is not None:
        name = f"{run.name}/{name}"
    return f"{name}@{digest.hexdigest()[:8]}"


def _load_inference_module(module_dir: Path) -> Any:
    """Build the module class of the checkpoint with ``inference_only=True`` and load its weights.

    The constructor arguments are read the way RLlib's ``from_checkpoint`` reads them (a pickle
    written by RLlib into the checkpoint: the checkpoint is trusted, requests never are).
    """
    with (module_dir / CTOR_FILE).open("rb") as f:
        ctor = pickle.load(f)
    args, kwargs = ctor["ctor_args_and_kwargs"]
    module = ctor["class"](*args, **{**kwargs, "inference_only": True})
    module.restore_from_path(module_dir)
    module.eval()
    return module


def build_world(config: SimConfig) -> tuple[ItemCatalog, CandidateRetriever]:
    """The catalog and retriever of ``config``'s world, exactly as the simulator builds them."""
    from rayrec.sim import SessionSimulator

    sim = SessionSimulator(config, num_users=1, seed=0)
    return sim.catalog, sim.retriever


def choose_slate(
    scores: np.ndarray,
    valid: np.ndarray,
    k: int,
    mode: str,
    rng: np.random.Generator,
    floor: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A slate of k candidate indices and its per-position propensities.

    Args:
        scores: (M,) scores of the candidates (logits or Q-values).
        valid: (M,) bool, candidates that may be chosen (at least k).
        k: slate size.
        mode: 'greedy' or 'sample' (see the module docstring).
        rng: the draws of 'sample'.
        floor: the propensity floor eps of 'sample': position i draws from
            (1 - eps) * Plackett-Luce + eps * uniform over the valid candidates not chosen yet
            (m_i of them), so each keeps a probability >= eps / m_i >= eps / m.

    Returns:
        (k,) int64 indices in slate order and (k,) float64 propensities.
    """
    logits = np.where(valid, scores.astype(np.float64), -np.inf)
    if mode == "greedy":
        order = np.argsort(-logits, kind="stable")[:k]
        return order.astype(np.int64), np.ones(k)
    if mode != "sample":
        raise ValueError(f"mode ({mode!r}) must be 'greedy' or 'sample'")
    if floor > 0.0:
        return _mixed_slate(logits, valid, k, rng, floor)
    # Gumbel-top-k draws an ordered sample without replacement from Plackett-Luce (Kool et al.
    # 2019); the propensities are then computed exactly, position by position.
    noisy = logits + rng.gumbel(size=logits.shape)
    order = np.argsort(-noisy, kind="stable")[:k]
    rest = logits.copy()
    props = np.empty(k)
    for i, j in enumerate(order):
        top = rest.max()
        log_z = top + np.log(np.exp(rest - top).sum())
        props[i] = np.exp(logits[j] - log_z)
        rest[j] = -np.inf
    return order.astype(np.int64), props


def _mixed_slate(
    logits: np.ndarray, valid: np.ndarray, k: int, rng: np.random.Generator, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Position by position from the policy mixed with eps-uniform (the propensity floor): the
    mixture is no Plackett-Luce model, so Gumbel-top-k does not apply; the logged propensities
    are the mixture's, exactly."""
    left = valid.copy()
    order = np.empty(k, dtype=np.int64)
    props = np.empty(k)
    for i in range(k):
        rest = np.where(left, logits, -np.inf)
        policy = np.exp(rest - rest.max())
        policy /= policy.sum()
        mixed = (1.0 - floor) * policy + floor * left / left.sum()
        j = int(rng.choice(len(mixed), p=mixed / mixed.sum()))
        order[i], props[i] = j, mixed[j]
        left[j] = False
    return order, props


@dataclass(frozen=True, eq=False)
class ServedPolicy:
    """One served model version: module, environment config, catalog and retriever."""

    version: str
    checkpoint: Path
    env: EnvSpec
    module: Any
    algorithm: str
    catalog: ItemCatalog
    retriever: CandidateRetriever
    levels: ServedLevels | None = None
    """The high level of a two-level checkpoint (``module`` is then its low level)."""

    @classmethod
    def load(cls, checkpoint: str | Path, env: EnvSpec | None = None) -> ServedPolicy:
        """Load ``checkpoint``; the environment spec is the run's own unless ``env`` is given."""
        checkpoint = Path(checkpoint)
        if not checkpoint.is_dir():
            raise SpecError(f"--checkpoint {checkpoint}: no such directory")
        module_dir = find_module_dir(checkpoint)
        algorithm = "unknown"
        run = find_run_dir(checkpoint.resolve())
        if run is not None:
            run_env, policy, _ = load_run_spec(run)
            algorithm = policy.algorithm
            env = env or run_env
        if env is None:
            raise SpecError(f"--checkpoint {checkpoint}: no spec.yaml above it; pass --env")
        module = _load_inference_module(module_dir)
        _check_spaces(module, env.config, checkpoint)
        catalog, retriever = build_world(env.config)
        levels = None
        if is_hierarchical(checkpoint.resolve()):
            if env.hierarchy is None:
                raise SpecError(
                    f"--checkpoint {checkpoint}: a two-level checkpoint needs an env spec with a "
                    "'hierarchy' section (its run's, or --env)"
                )
            high = _load_inference_module(module_dir.parent / HIGH)
            levels = ServedLevels(high, env.hierarchy, catalog, env.config.num_topics)
        return cls(
            version=module_version(checkpoint, module_dir, run),
            checkpoint=checkpoint.resolve(),
            env=env,
            module=module,
            algorithm=algorithm,
            catalog=catalog,
            retriever=retriever,
            levels=levels,
        )

    @property
    def config(self) -> SimConfig:
        return self.env.config

    @property
    def is_q_module(self) -> bool:
        return is_q_module(self.module)

    def retrieve(self, history: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Up to M candidate ids for a user with ``history`` (H,) (-1 = none): the simulator's
        retriever probed with the normalised mean embedding of the history as the user's interest
        (zeros without history: random topics), recent items excluded, M valid pool slots drawn
        at random."""
        known = history[history >= 0]
        interest = np.zeros(self.catalog.embedding.shape[1], np.float32)
        if len(known):
            # Unit length, as the simulator's user interests.
            mean = self.catalog.embedding[known].mean(axis=0)
            interest = mean / max(float(np.linalg.norm(mean)), 1e-12)
        pool, valid = self.retriever.retrieve(
            interest[None].astype(np.float32), history[None].astype(np.int64), rng
        )
        found = pool[0][valid[0]]
        m = self.config.num_candidates
        if len(found) > m:
            # A random M of the pool, in pool order: the pool's runs of one topic are contiguous,
            # so its first M slots would show only the first probed topics.
            found = found[np.sort(rng.choice(len(found), m, replace=False))]
        return found.astype(np.int64)

    def scores(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """(B, M) scores of a batched observation: logits, or Q-values for Q modules."""
        return module_scores(self.module, batch)

    def slate_scores(
        self, batch: dict[str, np.ndarray], modes: list[str], rngs: list[np.random.Generator]
    ) -> tuple[np.ndarray, list[OptionChoice] | None]:
        """(B, M) scores of the candidates, and for a two-level checkpoint the option its high
        level chose for each request (the low level scores under it)."""
        if self.levels is None:
            return self.scores(batch), None
        low, choices = self.levels.low_inputs(batch, modes, rngs)
        return self.scores(low), choices

    def observation(
        self,
        history_items: np.ndarray,
        history_responses: np.ndarray,
        context: np.ndarray,
        candidates: list[np.ndarray],
    ) -> dict[str, np.ndarray]:
        """A batched observation; candidate lists of different lengths are padded and masked.

        Args:
            history_items: (B, H) int64, -1 padding. history_responses: (B, H, 4) float32.
            context: (B, 5) float32. candidates: B arrays of item ids.
        """
        b, m = len(candidates), max(len(c) for c in candidates)
        ids = np.zeros((b, m), dtype=np.int64)
        valid = np.zeros((b, m), dtype=bool)
        for i, c in enumerate(candidates):
            ids[i, : len(c)] = c
            valid[i, : len(c)] = True
        return build_observation(
            self.catalog, history_items, history_responses, context, ids, valid
        )

    def reward(self, responses: np.ndarray) -> float:
        """The environment's reward of (k, 4) responses, summed over the slate."""
        c = self.config
        weights = np.array([c.reward_click, c.reward_watch, c.reward_like, c.reward_skip])
        return float(responses.astype(np.float64).reshape(-1, NUM_RESPONSES).sum(0) @ weights)

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "version": self.version,
            "checkpoint": str(self.checkpoint),
            "algorithm": self.algorithm,
            "module": type(self.module).__name__,
            "scores": "q_values" if self.is_q_module else "logits",
            "levels": None if self.levels is None else [HIGH, LOW],
            "num_items": c.num_items,
            "embed_dim": c.embed_dim,
            "catalog": self.catalog.fingerprint,
            "num_candidates": c.num_candidates,
            "history_len": c.history_len,
            "slate_size": c.slate_size,
            "world_seed": c.world_seed,
        }


def check_same_world(a: ServedPolicy, b: ServedPolicy, what: str) -> None:
    """Raise unless ``b`` serves the same items as ``a`` (catalog, history length): two versions
    served side by side (A/B, a rollout) must rank the same items."""
    same = (
        a.config.num_items == b.config.num_items
        and a.config.history_len == b.config.history_len
        and a.catalog.embedding.shape == b.catalog.embedding.shape
        and np.array_equal(a.catalog.embedding, b.catalog.embedding)
        and np.array_equal(a.catalog.scalars, b.catalog.scalars)
    )
    if not same:
        raise SpecError(
            f"{what} {b.checkpoint}: its environment has another catalog or history length "
            f"than {a.checkpoint}; serving both needs the same items"
        )


def _check_spaces(module: Any, config: SimConfig, checkpoint: Path) -> None:
    """The module must consume the observation this environment produces."""
    space = module.observation_space
    want = {
        Obs.HISTORY_FEATURES: (config.history_len, config.embed_dim),
        Obs.CONTEXT: (NUM_CONTEXT,),
    }
    for key, shape in want.items():
        got = tuple(space[key].shape)
        if got != shape:
            raise SpecError(
                f"--checkpoint {checkpoint}: the module expects {key} of shape {got}, the "
                f"environment spec gives {shape} (wrong --env?)"
            )
