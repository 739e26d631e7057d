"""The batched session simulator: every user of the batch advances with array operations.

One slot of the batch is one user's lifetime (an episode) of up to ``max_sessions`` sessions.
Equations: docs/simulator.md. No Python loop over users or items runs inside a step.
"""

from __future__ import annotations

import numpy as np

from rayrec.sim.catalog import ItemCatalog, world_streams
from rayrec.sim.choice import (
    CascadeChoice,
    MultinomialLogitChoice,
    make_choice_model,
    sample_choice,
    sigmoid,
)
from rayrec.sim.config import NUM_CONTEXT, NUM_RESPONSES, SCALAR_LIMIT, SimConfig
from rayrec.sim.retrieval import CandidateRetriever, window_goodness
from rayrec.sim.step_result import StepResult
from rayrec.sim.users import UserPopulation

__all__ = ["SessionSimulator", "StepResult"]

_SAT_LIMIT = np.float32(5.0)
# Choice models whose slot 0 is always examined, so that k = 1 clicks with sigmoid(v - v_0).
_SLOT_ZERO_SIGMOID = (MultinomialLogitChoice, CascadeChoice)


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
        catalog_rng, population_rng = world_streams(cfg)
        self.catalog = ItemCatalog.generate(cfg, catalog_rng)
        self.population = UserPopulation.generate(cfg, population_rng)
        self.retriever = CandidateRetriever(cfg, self.catalog)
        # Topic, appeal, quality and duration side by side: a step reads them for its items with
        # one gather (one cache line per item) instead of four.
        cat = self.catalog
        self._item_attrs = np.stack(
            [cat.topic.astype(np.float32), cat.appeal, cat.quality, cat.duration], axis=1
        ).astype(np.float32)
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
        # The pool is stored as offsets into the retriever's item table (see `pool`), with its
        # first M columns repeated at the end so that every window of M slots starting in [0, P)
        # is contiguous (one gather, no modulo per element).
        self._pool_offsets = np.zeros((b, p + m), dtype=np.int32)
        self.pool_valid = np.zeros((b, p + m), dtype=bool)
        self.steps_since_refresh = np.zeros(b, dtype=np.int64)
        # Steps after which a user's pool is re-retrieved: refresh_every, or fewer when the
        # pool is too thin to keep k valid candidates for that long (see _refresh).
        self.refresh_limit = np.full(b, self.config.refresh_every, dtype=np.int64)
        self.window_start = np.zeros(b, dtype=np.int64)
        # Per user and window start: does that window keep enough valid candidates until the
        # next refresh? A bad start drawn is replaced by the user's best start.
        self.good_start = np.zeros((b, p), dtype=bool)
        self.best_start = np.zeros(b, dtype=np.int64)
        # Users whose every window start is good (good_start is not filled in for them).
        self._all_good = np.zeros(b, dtype=bool)
        # Retrieval is deferred until a pool is needed (the next step or a look at the
        # candidates), so the users refreshed by a step and those sampled by the reset_users that
        # follows it share one batched retrieval; window starts are drawn then too.
        self._stale = np.zeros(b, dtype=bool)
        self._window_due = False
        self._window_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._rows = np.arange(b)
        # Flat offsets of each row, for 1-D gathers (cheaper than 2-D fancy indexing).
        self._pool_row = self._rows * (p + m)
        # Each row's pool offset plus 0..M-1: a window is one gather (13x cheaper than a
        # sliding-window view at B = 1, the per-user envs' case; the same at 4096).
        self._window_base = self._pool_row[:, None] + np.arange(m)
        self._fatigue_row = self._rows * t

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
        self.user_id[idx] = np.arange(self._next_user_id, self._next_user_id + idx.size)
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

    def _start_sessions(self, idx: np.ndarray) -> None:
        """Begin a session: draw its budget and start hour, and schedule a pool refresh."""
        z = self._user_rng.standard_normal((2, idx.size), dtype=np.float32)
        self.step_in_session[idx] = 0
        # LogNormal(0, 0.3) budget factor; start hour ~ N(peak hour, 2 h).
        self.budget[idx] = self.base_budget[idx] * np.exp(np.float32(0.3) * z[0])
        self.hour[idx] = (self.peak_hour[idx] + np.float32(2.0) * z[1]) % np.float32(24.0)
        self._schedule_refresh(idx)

    def _schedule_refresh(self, idx: np.ndarray) -> None:
        self._stale[idx] = True
        self.steps_since_refresh[idx] = 0
        self._window_due = True
        self._window_cache = None

    def _sync(self) -> None:
        """Run the deferred retrievals and window draws."""
        if self._window_due:
            stale = np.flatnonzero(self._stale)
            if stale.size:
                self._refresh(stale)
                self._stale[stale] = False
            self._new_window()
            self._window_due = False

    def _refresh(self, idx: np.ndarray) -> None:
        cfg = self.config
        m, k = cfg.num_candidates, cfg.slate_size
        offsets, valid, invalid = self.retriever.retrieve_offsets(
            self.interest.take(idx, axis=0),
            self.history_items.take(idx, axis=0),
            self._retrieval_rng,
            m,
        )
        self._pool_offsets[idx] = offsets
        # At most refresh_every items are consumed before the next refresh, each invalidating one
        # slot: prefer windows that keep k + refresh_every valid candidates (or the most there
        # are). A window holds M of the P slots, so a pool with at most M - k - refresh_every
        # invalid slots has only good windows; only the other pools are counted per window.
        slow = invalid > m - k - cfg.refresh_every
        self._all_good[idx] = ~slow
        self.refresh_limit[idx] = cfg.refresh_every
        if slow.any():
            rows, slow_valid = idx[slow], valid[slow]
            good, best_start, best = window_goodness(slow_valid, m, k, cfg.refresh_every)
            self.good_start[rows], self.best_start[rows] = good, best_start
            # Every window drawn keeps >= k + limit valid candidates; each step consumes at most
            # one, so refreshing after `limit` steps keeps k valid at all times.
            self.refresh_limit[rows] = np.minimum(cfg.refresh_every, best - k)
            valid[slow] = slow_valid
        self.pool_valid[idx] = valid

    def _new_window(self) -> None:
        """Draw which M pool slots each user sees next."""
        p = self.retriever.pool_size
        start = self._rng.integers(0, p, self.num_users)
        if not self._all_good.all():
            good = self.good_start.reshape(-1).take(self._rows * p + start)
            good |= self._all_good
            start = np.where(good, start, self.best_start)
        self.window_start = start
        self._window_cache = None

    def _window(self) -> tuple[np.ndarray, np.ndarray]:
        """(B, M) candidate item ids and validity, materialised on first use after a step."""
        self._sync()
        if self._window_cache is None:
            flat = self._window_base + self.window_start[:, None]
            offsets, valid = self._pool_offsets.take(flat), self.pool_valid.take(flat)
            self._window_cache = (self.retriever.table.take(offsets).astype(np.int64), valid)
        return self._window_cache

    @property
    def pool(self) -> np.ndarray:
        """(B, P + M) int32 item ids of each user's pool, its first M slots repeated at the end."""
        self._sync()
        return self.retriever.table.take(self._pool_offsets)

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
        self._sync()
        cfg, cat, b, rows = self.config, self.catalog, self.num_users, self._rows
        k, m, p = cfg.slate_size, cfg.num_candidates, self.retriever.pool_size
        slate = np.asarray(slate).reshape(b, k).astype(np.int64, copy=False)
        pick = np.minimum(slate, m - 1)
        np.maximum(pick, 0, out=pick)
        # Only the chosen slots are read from the pool: a step costs O(B k), not O(B M).
        slot = self.window_start[:, None] + pick
        flat_slot = slot + self._pool_row[:, None]
        items = self.retriever.table.take(self._pool_offsets.reshape(-1).take(flat_slot))
        items = items.astype(np.int64)
        shown = self.pool_valid.reshape(-1).take(flat_slot)
        shown &= pick == slate
        if k > 1:
            # Out-of-range entries get distinct negative stand-ins, so they never shadow a
            # valid choice of candidate 0 or M - 1 in the repeat check.
            shown &= _first_occurrence(np.where(pick == slate, pick, -1 - np.arange(k)))

        attrs = self._item_attrs.take(items, axis=0)
        topic = attrs[..., 0].astype(np.intp)
        emb = cat.embedding.take(items, axis=0)
        flat_topic = topic + self._fatigue_row[:, None]
        affinity, utility = self._utility(items, topic, emb, attrs[..., 1], flat_topic)
        uni = self._rng.random((4, b), dtype=np.float32)
        if k == 1 and isinstance(self.choice, _SLOT_ZERO_SIGMOID):
            # Slot 0 is always examined: both choice models click with sigmoid(v - v_0).
            clicked = (uni[0] < sigmoid(utility[:, 0] - self.choice.no_click_utility)) & shown[:, 0]
            pos = np.where(clicked, 0, -1)
            at = np.zeros(b, dtype=np.int64)
            item_c = items[:, 0]
            aff_c = affinity[:, 0]
            emb_c = emb[:, 0]
            attrs_c = attrs[:, 0]
        else:
            probs = self.choice.probabilities(utility, shown)
            pos = sample_choice(probs, uni[0])
            clicked = pos >= 0
            at = np.maximum(pos, 0)
            item_c = items[rows, at]
            aff_c = affinity[rows, at]
            emb_c = emb[rows, at]
            attrs_c = attrs[rows, at]
        quality = attrs_c[:, 2]
        noise = self._rng.standard_normal(b, dtype=np.float32)
        watch_logit = (
            cfg.watch_quality_weight * (quality - np.float32(0.5))
            + cfg.watch_affinity_weight * aff_c
            + cfg.watch_noise * noise
        )
        watch = sigmoid(watch_logit)
        watch *= clicked
        like = clicked & (uni[1] < quality * watch)
        skip = clicked & (watch < cfg.skip_threshold)
        reward = np.zeros(b, dtype=np.float32)
        for weight, value in (
            (cfg.reward_click, clicked),
            (cfg.reward_watch, watch),
            (cfg.reward_like, like),
            (cfg.reward_skip, skip),
        ):
            if weight != 0.0:
                reward += np.float32(weight) * value

        # Time, satisfaction, drift, fatigue.
        minutes = cfg.step_minutes + watch * attrs_c[:, 3]
        self.budget -= minutes
        hour = self.hour + minutes / np.float32(60.0)
        late = np.flatnonzero(hour >= np.float32(24.0))
        hour[late] %= np.float32(24.0)
        self.hour = hour
        delta = np.where(
            clicked,
            cfg.satisfaction_quality_weight * (watch - np.float32(cfg.quality_reference)),
            np.float32(-cfg.miss_penalty),
        )
        satisfaction = self.satisfaction + delta
        np.minimum(satisfaction, _SAT_LIMIT, out=satisfaction)
        np.maximum(satisfaction, -_SAT_LIMIT, out=satisfaction)
        self.satisfaction = satisfaction
        clicked_rows = np.flatnonzero(clicked)
        self._drift(clicked_rows, emb_c.take(clicked_rows, axis=0))
        self.fatigue *= np.float32(1.0 - cfg.fatigue_decay)
        fatigue = self.fatigue.reshape(-1)
        if k == 1:
            # One shown slot per row: no repeated index, a plain scatter is exact.
            gain = np.float32(cfg.fatigue_show_gain) * shown[:, 0]
            gain += np.float32(cfg.fatigue_gain) * clicked
            fatigue[flat_topic[:, 0]] += gain
        else:
            np.add.at(fatigue, flat_topic[shown], np.float32(cfg.fatigue_show_gain))
            fatigue[flat_topic[clicked_rows, at[clicked_rows]]] += np.float32(cfg.fatigue_gain)

        # History: the clicked item, else the first shown one (shifted in place, oldest first).
        if k == 1:
            item_h = np.where(shown[:, 0], item_c, -1)
        else:
            first_shown = np.argmax(shown, axis=1)
            item_h = np.where(shown.any(axis=1), items[rows, first_shown], -1)
            item_h = np.where(clicked, item_c, item_h)
        history = self.history_items.reshape(-1)
        history[:-1] = history[1:]
        self.history_items[:, -1] = item_h
        responses = self.history_responses.reshape(-1)
        responses[:-NUM_RESPONSES] = responses[NUM_RESPONSES:]
        last = self.history_responses[:, -1]
        last[:, 0] = clicked
        last[:, 1] = watch
        last[:, 2] = like
        last[:, 3] = skip
        # A consumed item leaves the user's pool until the next refresh (both copies of a slot
        # that is stored twice, see _allocate).
        slot_c = slot[clicked_rows, at[clicked_rows]]
        twin = np.where(slot_c < m, slot_c + p, np.where(slot_c >= p, slot_c - p, slot_c))
        valid = self.pool_valid.reshape(-1)
        valid[slot_c + self._pool_row[clicked_rows]] = False
        valid[twin + self._pool_row[clicked_rows]] = False

        self.step_in_session += 1
        self.lifetime_steps += 1
        self.steps_since_refresh += 1

        # Leaving the session, and coming back.
        leave = uni[2] < sigmoid(cfg.leave_bias - cfg.leave_satisfaction_weight * self.satisfaction)
        ended = leave | (self.budget <= 0) | (self.step_in_session >= cfg.max_steps_per_session)
        p_return = sigmoid(
            cfg.return_bias + self.loyalty + cfg.return_satisfaction_weight * self.satisfaction
        )
        returns = ended & (uni[3] < p_return)
        last_session = self.session_index + 1 >= cfg.max_sessions
        terminated = ended & ~returns
        truncated = returns & last_session
        again = returns & ~last_session
        if again.any():
            self._next_session(np.flatnonzero(again))
        due = ~ended & (self.steps_since_refresh >= self.refresh_limit)
        if due.any():
            self._schedule_refresh(np.flatnonzero(due))
        self._window_due = True
        self._window_cache = None

        return StepResult(
            reward=reward,
            clicked=clicked,
            click_position=pos.astype(np.int64, copy=False),
            item=item_h,
            watch=watch,
            like=like,
            skip=skip,
            shown=shown,
            slate_items=np.where(shown, items, -1),
            session_ended=ended,
            terminated=terminated,
            truncated=truncated,
        )

    def _drift(self, idx: np.ndarray, target: np.ndarray) -> None:
        """Move the interest of users ``idx`` toward the (n, d) embeddings ``target``."""
        if idx.size == 0:
            return
        rate = np.float32(self.config.drift_rate)
        u = self.interest.take(idx, axis=0)
        u += rate * (target - u)
        norm = np.sqrt(np.einsum("nd,nd->n", u, u))
        u /= np.maximum(norm, np.float32(1e-12))[:, None]
        self.interest[idx] = u

    def _next_session(self, idx: np.ndarray) -> None:
        cfg, rng = self.config, self._user_rng
        mean_gap = cfg.gap_mean_days * np.exp(np.float32(-0.5) * self.satisfaction[idx])
        gap = rng.standard_exponential(idx.size, dtype=np.float32) * mean_gap
        self.gap_days[idx] = gap
        self.fatigue[idx] *= np.exp(-gap / np.float32(cfg.fatigue_recovery_days))[:, None]
        self.session_index[idx] += 1
        self._start_sessions(idx)

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
    def _utility(
        self,
        items: np.ndarray,
        topic: np.ndarray,
        emb: np.ndarray | None = None,
        appeal: np.ndarray | None = None,
        flat_topic: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) affinity <u, e> and click utility of the given (B, n) items for each user.

        ``emb``, ``appeal`` and ``flat_topic`` may pass the (B, n, d) embeddings and (B, n) appeal
        of ``items`` and the (B, n) flat indices of their topics into ``fatigue`` when they are
        already computed.
        """
        cfg, cat = self.config, self.catalog
        if emb is None:
            emb = cat.embedding.take(items, axis=0)
        if appeal is None:
            appeal = cat.appeal.take(items)
        affinity = np.einsum("bnd,bd->bn", emb, self.interest)
        if flat_topic is None:
            flat_topic = topic + self._fatigue_row[:, None]
        fatigue = self.fatigue.reshape(-1).take(flat_topic)
        utility = cfg.affinity_weight * affinity
        utility += (cfg.appeal_weight * self.appeal_sensitivity)[:, None] * appeal
        utility -= cfg.fatigue_weight * fatigue
        if cfg.recall_lag:
            # Sequential taste: the topic of the item recorded recall_lag steps ago is wanted now.
            past = self.history_items[:, -cfg.recall_lag]
            target = np.where(past >= 0, self.catalog.topic.take(np.maximum(past, 0)), -1)
            utility += cfg.recall_bonus * (topic == target[:, None])
        return affinity, utility

    def oracle_click_probability(self) -> np.ndarray:
        """(B, M) true probability that each candidate is clicked if shown alone in slot 0.

        Slot 0 is always examined, so both choice models give sigmoid(v - v_0) there.
        """
        _, utility = self._utility(self.candidates, self.catalog.topic[self.candidates])
        return sigmoid(utility - self.config.no_click_utility).astype(np.float32)

    def oracle_expected_watch(self) -> np.ndarray:
        """(B, M) noise-free watch fraction of each candidate if clicked."""
        cfg, cat = self.config, self.catalog
        items = self.candidates
        affinity = np.einsum("bmd,bd->bm", cat.embedding[items], self.interest)
        logit = cfg.watch_quality_weight * (cat.quality[items] - 0.5)
        return sigmoid(logit + cfg.watch_affinity_weight * affinity).astype(np.float32)


def _first_occurrence(pick: np.ndarray) -> np.ndarray:
    """(B, k) bool: True where the value has not appeared earlier in its row."""
    order = np.argsort(pick, axis=1, kind="stable")
    ranked = np.take_along_axis(pick, order, 1)
    first = np.ones_like(ranked, dtype=bool)
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    out = np.empty_like(first)
    np.put_along_axis(out, order, first, 1)
    return out
