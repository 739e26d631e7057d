"""The batched session simulator: every user of the batch advances with array operations.

One slot of the batch is one user's lifetime (an episode) of up to ``max_sessions`` sessions.
Equations: docs/simulator.md. No Python loop over users or items runs inside a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from rayrec.sim.catalog import ItemCatalog
from rayrec.sim.choice import make_choice_model, sample_choice
from rayrec.sim.config import NUM_CONTEXT, NUM_RESPONSES, SCALAR_LIMIT, SimConfig
from rayrec.sim.retrieval import CandidateRetriever
from rayrec.sim.users import UserPopulation

__all__ = ["SessionSimulator", "StepResult"]

_SAT_LIMIT = np.float32(5.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class StepResult:
    """What one step produced, per user slot (all arrays have leading dimension B)."""

    reward: np.ndarray
    """(B,) float32 configured weighted sum of the responses."""
    clicked: np.ndarray
    """(B,) bool."""
    click_position: np.ndarray
    """(B,) int64 slate position clicked, -1 for none."""
    item: np.ndarray
    """(B,) int64 item clicked, or the first shown item when nothing was clicked (-1: none shown)."""
    watch: np.ndarray
    """(B,) float32 watch fraction of the clicked item (0 without a click)."""
    like: np.ndarray
    """(B,) bool."""
    skip: np.ndarray
    """(B,) bool: clicked and watched less than ``skip_threshold``."""
    shown: np.ndarray
    """(B, k) bool: slate slots actually shown (masked or duplicate choices show nothing)."""
    slate_items: np.ndarray
    """(B, k) int64 item ids of the slate (-1 where not shown)."""
    session_ended: np.ndarray
    """(B,) bool: the user's session ended at this step."""
    terminated: np.ndarray
    """(B,) bool: the user left for good (churn)."""
    truncated: np.ndarray
    """(B,) bool: the user reached ``max_sessions`` (lifetime bound)."""


class SessionSimulator:
    """B users stepping in lock-step through their sessions.

    Args:
        config: the simulator configuration.
        num_users: B, the number of user slots.
        seed: seeds new users, retrieval and per-step draws (``SeedSequence.spawn``); the catalog
            and segments come from ``config.world_seed``.
    """

    def __init__(self, config: SimConfig, num_users: int, seed: int | None = None) -> None:
        if isinstance(num_users, bool) or not isinstance(num_users, int) or num_users < 1:
            raise ValueError(f"num_users ({num_users!r}) must be an integer >= 1")
        self.config = config
        self.num_users = num_users
        self._build_world()
        self._allocate()
        self.seed(seed)

    # ---- construction --------------------------------------------------------------------------
    def _build_world(self) -> None:
        cfg = self.config
        catalog_seq, population_seq = np.random.SeedSequence(cfg.world_seed).spawn(2)
        self.catalog = ItemCatalog.generate(cfg, np.random.default_rng(catalog_seq))
        self.population = UserPopulation.generate(cfg, np.random.default_rng(population_seq))
        self.retriever = CandidateRetriever(cfg, self.catalog)
        self.choice = make_choice_model(
            cfg.choice_model, cfg.no_click_utility, cfg.slate_size, cfg.position_bias
        )

    def seed(self, seed: int | None) -> None:
        """Re-seed the streams of new users, retrieval and per-step draws (not the world)."""
        users, retrieval, steps = np.random.SeedSequence(seed).spawn(3)
        self._user_rng = np.random.default_rng(users)
        self._retrieval_rng = np.random.default_rng(retrieval)
        self._rng = np.random.default_rng(steps)
        self._next_user_id = 0

    def _allocate(self) -> None:
        cfg, b = self.config, self.num_users
        d, t, h, p = cfg.embed_dim, cfg.num_topics, cfg.history_len, cfg.pool_size
        m = cfg.num_candidates
        self.user_id = np.full(b, -1, dtype=np.int64)
        self.segment = np.zeros(b, dtype=np.int32)
        self.interest = np.zeros((b, d), dtype=np.float32)
        self.fatigue = np.zeros((b, t), dtype=np.float32)
        self.satisfaction = np.zeros(b, dtype=np.float32)
        self.appeal_sensitivity = np.zeros(b, dtype=np.float32)
        self.base_budget = np.zeros(b, dtype=np.float32)
        self.budget = np.zeros(b, dtype=np.float32)
        self.loyalty = np.zeros(b, dtype=np.float32)
        self.peak_hour = np.zeros(b, dtype=np.float32)
        self.hour = np.zeros(b, dtype=np.float32)
        self.gap_days = np.zeros(b, dtype=np.float32)
        self.session_index = np.zeros(b, dtype=np.int64)
        self.step_in_session = np.zeros(b, dtype=np.int64)
        self.lifetime_steps = np.zeros(b, dtype=np.int64)
        self.history_items = np.full((b, h), -1, dtype=np.int64)
        self.history_responses = np.zeros((b, h, NUM_RESPONSES), dtype=np.float32)
        # The pool is stored with its first M columns repeated at the end so that every window of
        # M slots starting in [0, P) is contiguous (a strided view, no modulo per element).
        self.pool = np.zeros((b, p + m), dtype=np.int32)
        self.pool_valid = np.zeros((b, p + m), dtype=bool)
        self.steps_since_refresh = np.zeros(b, dtype=np.int64)
        self.window_start = np.zeros(b, dtype=np.int64)
        # Per user and window start: does that window keep enough valid candidates until the
        # next refresh? A bad start drawn is replaced by the user's best start.
        self.good_start = np.zeros((b, p), dtype=bool)
        self.best_start = np.zeros(b, dtype=np.int64)
        self._window_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._rows = np.arange(b)

    # ---- lifecycle -----------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Fill every slot with a new user (re-seeding the streams first when ``seed`` is given)."""
        if seed is not None:
            self.seed(seed)
        self.reset_users(np.ones(self.num_users, dtype=bool))

    def reset_users(self, mask: np.ndarray) -> None:
        """Replace the users in the slots where ``mask`` is True by newly sampled users."""
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        cfg = self.config
        new = self.population.sample(idx.size, cfg, self.catalog.topic_centres, self._user_rng)
        self.user_id[idx] = self._next_user_id + np.arange(idx.size)
        self._next_user_id += idx.size
        self.segment[idx] = new.segment
        self.interest[idx] = new.interest
        self.appeal_sensitivity[idx] = new.appeal_sensitivity
        self.base_budget[idx] = new.base_budget
        self.loyalty[idx] = new.loyalty
        self.satisfaction[idx] = new.satisfaction
        self.peak_hour[idx] = new.peak_hour
        self.fatigue[idx] = 0.0
        self.session_index[idx] = 0
        self.lifetime_steps[idx] = 0
        self.gap_days[idx] = 0.0
        self.history_items[idx] = -1
        self.history_responses[idx] = 0.0
        self._start_sessions(idx)
        self._new_window(idx)

    def _start_sessions(self, idx: np.ndarray, refresh: bool = True) -> None:
        rng = self._user_rng
        self.step_in_session[idx] = 0
        self.budget[idx] = self.base_budget[idx] * rng.lognormal(0.0, 0.3, idx.size)
        self.hour[idx] = (self.peak_hour[idx] + rng.normal(0.0, 2.0, idx.size)) % 24.0
        if refresh:
            self._refresh(idx)

    def _refresh(self, idx: np.ndarray) -> None:
        cfg = self.config
        p, m, k = self.retriever.pool_size, cfg.num_candidates, cfg.slate_size
        pool, valid = self.retriever.retrieve(
            self.interest[idx], self.history_items[idx], self._retrieval_rng
        )
        # Valid candidates in each window of M slots (windows may wrap around the pool's end).
        wrapped = np.concatenate([valid, valid[:, : m - 1]], axis=1)
        csum = np.zeros((idx.size, p + m), dtype=np.int32)
        np.cumsum(wrapped, axis=1, out=csum[:, 1:])
        count = csum[:, m : m + p] - csum[:, :p]
        best = count.max(axis=1)
        if (best < k).any():
            # Only a catalog smaller than the pool gets here: duplicates are shown then.
            valid[best < k] = True
            count[best < k] = m
            best = count.max(axis=1)
        # At most refresh_every items are consumed before the next refresh, each invalidating one
        # slot: prefer windows that keep k valid candidates after that.
        need = np.minimum(k + cfg.refresh_every, best)
        self.good_start[idx] = count >= need[:, None]
        self.best_start[idx] = count.argmax(axis=1)
        self.pool[idx, :p] = pool
        self.pool[idx, p:] = pool[:, :m]
        self.pool_valid[idx, :p] = valid
        self.pool_valid[idx, p:] = valid[:, :m]
        self.steps_since_refresh[idx] = 0

    def _new_window(self, idx: np.ndarray | None = None) -> None:
        """Draw which M pool slots each user sees next (all users when ``idx`` is None)."""
        rows = self._rows if idx is None else idx
        start = self._rng.integers(0, self.retriever.pool_size, rows.size)
        good = self.good_start[rows, start]
        self.window_start[rows] = np.where(good, start, self.best_start[rows])
        self._window_cache = None

    def _window(self) -> tuple[np.ndarray, np.ndarray]:
        """(B, M) candidate item ids and validity, materialised on first use after a step."""
        if self._window_cache is None:
            m = self.config.num_candidates
            ids = sliding_window_view(self.pool, m, axis=1)[self._rows, self.window_start]
            valid = sliding_window_view(self.pool_valid, m, axis=1)[self._rows, self.window_start]
            self._window_cache = (ids.astype(np.int64), valid)
        return self._window_cache

    @property
    def candidates(self) -> np.ndarray:
        """(B, M) int64 item ids of the candidates each user is offered now."""
        return self._window()[0]

    @property
    def candidate_valid(self) -> np.ndarray:
        """(B, M) bool: candidates that may be shown (False for repeats and recent items)."""
        return self._window()[1]

    # ---- the step ------------------------------------------------------------------------------
    def step(self, slate: np.ndarray) -> StepResult:
        """Show each user a slate of candidate indices; (B,) or (B, k) ints in [0, M).

        Out-of-range, masked and repeated choices show nothing in their slot (documented rule).
        Users whose episode ended must be replaced with :meth:`reset_users` before their slot's
        result means anything again.
        """
        cfg, cat, b, rows = self.config, self.catalog, self.num_users, self._rows
        k, m = cfg.slate_size, cfg.num_candidates
        slate = np.asarray(slate).reshape(b, k).astype(np.int64, copy=False)
        pick = np.clip(slate, 0, m - 1)
        # Only the chosen slots are read from the pool: a step costs O(B k), not O(B M).
        slot = self.window_start[:, None] + pick
        items = self.pool[rows[:, None], slot].astype(np.int64)
        shown = (slate >= 0) & (slate < m) & self.pool_valid[rows[:, None], slot]
        if k > 1:
            shown &= _first_occurrence(pick)

        topic = cat.topic[items]
        affinity, utility = self._utility(items, topic)
        probs = self.choice.probabilities(utility, shown)
        uni = self._rng.random((4, b), dtype=np.float32)
        pos = sample_choice(probs, uni[0])
        clicked = pos >= 0
        at = np.maximum(pos, 0)
        item_c = items[rows, at]
        quality = cat.quality[item_c]
        aff_c = affinity[rows, at]
        noise = self._rng.standard_normal(b, dtype=np.float32)
        watch_logit = (
            cfg.watch_quality_weight * (quality - 0.5)
            + cfg.watch_affinity_weight * aff_c
            + cfg.watch_noise * noise
        )
        watch = np.where(clicked, _sigmoid(watch_logit), 0.0).astype(np.float32)
        like = clicked & (uni[1] < quality * watch)
        skip = clicked & (watch < cfg.skip_threshold)
        reward = (
            cfg.reward_click * clicked
            + cfg.reward_watch * watch
            + cfg.reward_like * like
            + cfg.reward_skip * skip
        ).astype(np.float32)

        # Time, satisfaction, drift, fatigue.
        minutes = cfg.step_minutes + watch * cat.duration[item_c]
        self.budget -= minutes
        self.hour = (self.hour + minutes / 60.0) % 24.0
        delta = np.where(
            clicked,
            cfg.satisfaction_quality_weight * (watch - cfg.quality_reference),
            -cfg.miss_penalty,
        )
        self.satisfaction = np.clip(self.satisfaction + delta, -_SAT_LIMIT, _SAT_LIMIT)
        self._drift(np.flatnonzero(clicked), item_c)
        self.fatigue *= np.float32(1.0 - cfg.fatigue_decay)
        shown_rows, shown_cols = np.nonzero(shown)
        np.add.at(self.fatigue, (shown_rows, topic[shown_rows, shown_cols]), cfg.fatigue_show_gain)
        self.fatigue[rows[clicked], topic[clicked, at[clicked]]] += cfg.fatigue_gain

        # History: the clicked item, else the first shown one.
        first_shown = np.argmax(shown, axis=1)
        any_shown = shown.any(axis=1)
        item_h = np.where(clicked, item_c, np.where(any_shown, items[rows, first_shown], -1))
        self.history_items[:, :-1] = self.history_items[:, 1:]
        self.history_items[:, -1] = item_h
        self.history_responses[:, :-1] = self.history_responses[:, 1:]
        self.history_responses[:, -1] = np.stack([clicked, watch, like, skip], axis=1)
        # A consumed item leaves the user's pool until the next refresh.
        slot = slot[rows, at][clicked]
        p = self.retriever.pool_size
        self.pool_valid[rows[clicked], slot] = False
        wrap = slot < m
        self.pool_valid[rows[clicked][wrap], slot[wrap] + p] = False
        wrap = slot >= p
        self.pool_valid[rows[clicked][wrap], slot[wrap] - p] = False

        self.step_in_session += 1
        self.lifetime_steps += 1
        self.steps_since_refresh += 1

        # Leaving the session, and coming back.
        leave = uni[2] < _sigmoid(
            cfg.leave_bias - cfg.leave_satisfaction_weight * self.satisfaction
        )
        ended = leave | (self.budget <= 0) | (self.step_in_session >= cfg.max_steps_per_session)
        p_return = _sigmoid(
            cfg.return_bias + self.loyalty + cfg.return_satisfaction_weight * self.satisfaction
        )
        returns = ended & (uni[3] < p_return)
        last = self.session_index + 1 >= cfg.max_sessions
        terminated = ended & ~returns
        truncated = returns & last
        again = returns & ~last
        if again.any():
            self._next_session(np.flatnonzero(again))
        due = again | (~ended & (self.steps_since_refresh >= cfg.refresh_every))
        if due.any():
            self._refresh(np.flatnonzero(due))
        self._new_window()

        slate_items = np.where(shown, items, -1)
        return StepResult(
            reward=reward,
            clicked=clicked,
            click_position=pos.astype(np.int64),
            item=item_h.astype(np.int64),
            watch=watch,
            like=like,
            skip=skip,
            shown=shown,
            slate_items=slate_items,
            session_ended=ended,
            terminated=terminated,
            truncated=truncated,
        )

    def _drift(self, idx: np.ndarray, item: np.ndarray) -> None:
        if idx.size == 0:
            return
        rate = np.float32(self.config.drift_rate)
        u = self.interest[idx]
        u += rate * (self.catalog.embedding[item[idx]] - u)
        u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), np.float32(1e-12))
        self.interest[idx] = u

    def _next_session(self, idx: np.ndarray) -> None:
        cfg, rng = self.config, self._user_rng
        mean_gap = cfg.gap_mean_days * np.exp(-0.5 * self.satisfaction[idx])
        gap = rng.exponential(1.0, idx.size) * mean_gap
        self.gap_days[idx] = gap
        self.fatigue[idx] *= np.exp(-gap / cfg.fatigue_recovery_days)[:, None].astype(np.float32)
        self.session_index[idx] += 1
        self._start_sessions(idx, refresh=False)

    # ---- observation ---------------------------------------------------------------------------
    def context(self) -> np.ndarray:
        """(B, NUM_CONTEXT) float32: session index, step, sin/cos hour, log gap (all scaled)."""
        cfg = self.config
        angle = self.hour * np.float32(2.0 * np.pi / 24.0)
        out = np.empty((self.num_users, NUM_CONTEXT), dtype=np.float32)
        out[:, 0] = self.session_index / max(cfg.max_sessions - 1, 1)
        out[:, 1] = self.step_in_session / cfg.max_steps_per_session
        out[:, 2] = np.sin(angle)
        out[:, 3] = np.cos(angle)
        out[:, 4] = np.log1p(self.gap_days) / np.log1p(10.0 * cfg.gap_mean_days)
        return np.minimum(out, SCALAR_LIMIT, out=out)

    # ---- peeking (for baselines that are allowed to see the latent state) ---------------------
    def _utility(self, items: np.ndarray, topic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) affinity <u, e> and click utility of the given (B, n) items for each user."""
        cfg, cat = self.config, self.catalog
        affinity = np.einsum("bnd,bd->bn", cat.embedding[items], self.interest)
        fatigue = np.take_along_axis(self.fatigue, topic, 1)
        utility = (
            cfg.affinity_weight * affinity
            + cfg.appeal_weight * self.appeal_sensitivity[:, None] * cat.appeal[items]
            - cfg.fatigue_weight * fatigue
        )
        return affinity, utility

    def oracle_click_probability(self) -> np.ndarray:
        """(B, M) true probability that each candidate is clicked if shown alone in slot 0.

        Slot 0 is always examined, so both choice models give sigmoid(v - v_0) there.
        """
        _, utility = self._utility(self.candidates, self.catalog.topic[self.candidates])
        return _sigmoid(utility - self.config.no_click_utility).astype(np.float32)

    def oracle_expected_watch(self) -> np.ndarray:
        """(B, M) noise-free watch fraction of each candidate if clicked."""
        cfg, cat = self.config, self.catalog
        items = self.candidates
        affinity = np.einsum("bmd,bd->bm", cat.embedding[items], self.interest)
        logit = cfg.watch_quality_weight * (cat.quality[items] - 0.5)
        return _sigmoid(logit + cfg.watch_affinity_weight * affinity).astype(np.float32)


def _first_occurrence(pick: np.ndarray) -> np.ndarray:
    """(B, k) bool: True where the value has not appeared earlier in its row."""
    order = np.argsort(pick, axis=1, kind="stable")
    ranked = np.take_along_axis(pick, order, 1)
    first = np.ones_like(ranked, dtype=bool)
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    out = np.empty_like(first)
    np.put_along_axis(out, order, first, 1)
    return out
