"""The observation a policy sees: history, candidates, context and an action mask.

The latent user state (interest, fatigue, satisfaction, budget) is never part of it.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from rayrec.contracts.observation import Obs
from rayrec.sim import ItemCatalog, SessionSimulator, SimConfig
from rayrec.sim.config import NUM_CANDIDATE_SCALARS, NUM_CONTEXT, NUM_RESPONSES, SCALAR_LIMIT

__all__ = ["Obs", "action_space", "build_observation", "observation_space", "observe"]


def observation_space(config: SimConfig) -> spaces.Dict:
    """The per-user observation space for ``config``."""
    n, d, h, m = config.num_items, config.embed_dim, config.history_len, config.num_candidates
    f32 = np.float32
    return spaces.Dict(
        {
            Obs.HISTORY_ITEMS: spaces.Box(-1, n - 1, (h,), np.int64),
            Obs.HISTORY_FEATURES: spaces.Box(-1.0, 1.0, (h, d), f32),
            Obs.HISTORY_RESPONSES: spaces.Box(0.0, 1.0, (h, NUM_RESPONSES), f32),
            Obs.HISTORY_MASK: spaces.Box(0.0, 1.0, (h,), f32),
            Obs.CANDIDATE_ITEMS: spaces.Box(0, n - 1, (m,), np.int64),
            Obs.CANDIDATE_FEATURES: spaces.Box(-1.0, 1.0, (m, d), f32),
            Obs.CANDIDATE_SCALARS: spaces.Box(
                -SCALAR_LIMIT, SCALAR_LIMIT, (m, NUM_CANDIDATE_SCALARS), f32
            ),
            Obs.CONTEXT: spaces.Box(-1.0, SCALAR_LIMIT, (NUM_CONTEXT,), f32),
            Obs.ACTION_MASK: spaces.Box(0, 1, (m,), np.int8),
        }
    )


def action_space(config: SimConfig) -> spaces.Space:
    """Discrete(M) for k = 1, else MultiDiscrete([M] * k) (a slate of candidate indices)."""
    if config.slate_size == 1:
        return spaces.Discrete(config.num_candidates)
    return spaces.MultiDiscrete(np.full(config.slate_size, config.num_candidates))


def build_observation(
    catalog: ItemCatalog,
    history_items: np.ndarray,
    history_responses: np.ndarray,
    context: np.ndarray,
    candidate_items: np.ndarray,
    candidate_valid: np.ndarray,
) -> dict[str, np.ndarray]:
    """The batched observation of B users from their state: the one builder that the envs (via
    :func:`observe`) and the Serve app (from a request) both call, so training and serving never
    see different inputs.

    Args:
        catalog: the world's items (embeddings and scalars).
        history_items: (B, H) int64 item ids, oldest first, -1 = padding.
        history_responses: (B, H, 4) float32.
        context: (B, 5) float32.
        candidate_items: (B, M) int64 item ids (any valid id where masked).
        candidate_valid: (B, M) bool or int, the candidates that may be chosen.
    """
    hmask = history_items >= 0
    # ndarray.take is several times faster than fancy indexing for these row gathers.
    hist_features = catalog.embedding.take(np.maximum(history_items, 0), axis=0)
    hist_features[~hmask] = 0.0
    return {
        Obs.HISTORY_ITEMS: history_items.copy(),
        Obs.HISTORY_FEATURES: hist_features,
        Obs.HISTORY_RESPONSES: history_responses.copy(),
        Obs.HISTORY_MASK: hmask.astype(np.float32),
        Obs.CANDIDATE_ITEMS: candidate_items.copy(),
        Obs.CANDIDATE_FEATURES: catalog.embedding.take(candidate_items, axis=0),
        Obs.CANDIDATE_SCALARS: catalog.scalars.take(candidate_items, axis=0),
        Obs.CONTEXT: context,
        Obs.ACTION_MASK: candidate_valid.astype(np.int8),
    }


def observe(sim: SessionSimulator) -> dict[str, np.ndarray]:
    """Batched observation of every user slot of the simulator: each value has leading dim B."""
    return build_observation(
        sim.catalog,
        sim.history_items,
        sim.history_responses,
        sim.context(),
        sim.candidates,
        sim.candidate_valid,
    )
