"""The observation a policy sees: history, candidates, context and an action mask.

The latent user state (interest, fatigue, satisfaction, budget) is never part of it.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from rayrec.sim import SessionSimulator, SimConfig
from rayrec.sim.config import NUM_CANDIDATE_SCALARS, NUM_CONTEXT, NUM_RESPONSES, SCALAR_LIMIT

__all__ = ["Obs", "action_space", "observation_space", "observe"]


class Obs:
    """Keys of the observation dict (shapes per user)."""

    HISTORY_ITEMS = "history_items"
    """(H,) int64 item ids, oldest first, -1 = padding."""
    HISTORY_FEATURES = "history_features"
    """(H, d) float32 embeddings of those items, zeros for padding."""
    HISTORY_RESPONSES = "history_responses"
    """(H, 4) float32 click, watch fraction, like, skip."""
    HISTORY_MASK = "history_mask"
    """(H,) float32, 1 where the history entry exists."""
    CANDIDATE_ITEMS = "candidate_items"
    """(M,) int64 item ids."""
    CANDIDATE_FEATURES = "candidate_features"
    """(M, d) float32 item embeddings."""
    CANDIDATE_SCALARS = "candidate_scalars"
    """(M, 6) float32 log-popularity, CTR estimate, watch estimate, duration, freshness, sponsored."""
    CONTEXT = "context"
    """(5,) float32 session index, step in session, sin/cos hour of day, log gap."""
    ACTION_MASK = "action_mask"
    """(M,) int8, 1 where the candidate may be chosen."""


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


def observe(sim: SessionSimulator) -> dict[str, np.ndarray]:
    """Batched observation of every user slot: each value has leading dimension B."""
    cat = sim.catalog
    ids, valid = sim.candidates, sim.candidate_valid
    hist = sim.history_items
    hmask = hist >= 0
    # ndarray.take is several times faster than fancy indexing for these row gathers.
    hist_features = cat.embedding.take(np.maximum(hist, 0), axis=0)
    hist_features[~hmask] = 0.0
    return {
        Obs.HISTORY_ITEMS: hist.copy(),
        Obs.HISTORY_FEATURES: hist_features,
        Obs.HISTORY_RESPONSES: sim.history_responses.copy(),
        Obs.HISTORY_MASK: hmask.astype(np.float32),
        Obs.CANDIDATE_ITEMS: ids.copy(),
        Obs.CANDIDATE_FEATURES: cat.embedding.take(ids, axis=0),
        Obs.CANDIDATE_SCALARS: cat.scalars.take(ids, axis=0),
        Obs.CONTEXT: sim.context(),
        Obs.ACTION_MASK: valid.astype(np.int8),
    }
