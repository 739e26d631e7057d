"""Candidate retrieval: a coarse, IVF-style index over topics, plus popular and fresh pools.

Retrieval never scores all N items: it scores the T topic centres against a noisy view of the
user's interest, probes the best few topics, splits the personal slots among them in proportion to
a softmax over their scores, and takes consecutive items of each probed topic's popularity-sorted
bucket from a random start. Popular and fresh items fill the rest. Each user's pool of P items is
retrieved at session start and every ``refresh_every`` steps; each step shows a window of M of them.
"""

from __future__ import annotations

import numpy as np

from rayrec.sim.catalog import ItemCatalog
from rayrec.sim.config import SimConfig

__all__ = ["CandidateRetriever", "window_goodness"]

_PERSONAL, _POPULAR, _FRESH = 0, 1, 2
_INT32_MAX = np.iinfo(np.int32).max


def _top_keys(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) column indices and values of the k largest of the float32 (n, c) ``x``.

    ``x`` holds positive values or -inf (which ranks last). It is overwritten with the keys: the
    float's bits, which order like the floats, with the column in the lowest bits, so that a
    partition of ints finds the top k (much faster than an argpartition of floats). The values
    returned lose those lowest bits (a relative error below 2**-16 for c <= 128; exact for
    c > 4096, which uses int64 keys).
    """
    c = x.shape[1]
    bits = max(int(c - 1).bit_length(), 1)
    low = (1 << bits) - 1
    if bits > 12:
        key = (x.view(np.int32).astype(np.int64) << bits) | np.arange(c)
        best = np.partition(key, c - k, axis=1)[:, c - k :]
        values = (best >> bits).astype(np.int32).view(np.float32)
    else:
        key = x.view(np.int32)
        key &= np.int32(~low)
        key |= np.arange(c, dtype=np.int32)
        best = np.partition(key, c - k, axis=1)[:, c - k :]
        values = (best & np.int32(~low)).view(np.float32)
    return (best & low).astype(np.intp), values


def _interleave(counts: list[int]) -> np.ndarray:
    """Source of each pool slot, spread so every window holds about the same mix."""
    total = sum(counts)
    keys = np.concatenate([(np.arange(c) + 0.5) / c if c else np.zeros(0) for c in counts])
    sources = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    return sources[np.argsort(keys, kind="stable")].astype(np.int8)[:total]


class CandidateRetriever:
    """Retrieves each user's pool of candidate items in batch.

    Every item of a pool is read from one flat int32 table: each topic's bucket padded with its own
    first items (so a run of consecutive items never needs a modulo), then the popular pool, then
    the fresh pool. A pool is built as table offsets in slot order and gathered once.
    """

    def __init__(self, config: SimConfig, catalog: ItemCatalog) -> None:
        self.catalog = catalog
        self.pool_size = p = config.pool_size
        n_personal = round(config.personal_fraction * p)
        n_popular = min(round(config.popular_fraction * p), p - n_personal)
        n_fresh = p - n_personal - n_popular
        self.source = _interleave([n_personal, n_popular, n_fresh])
        self.n_personal, self.n_popular, self.n_fresh = n_personal, n_popular, n_fresh
        self.temperature = config.retrieval_temperature
        self.noise = config.retrieval_noise
        self.bucket_size = np.diff(catalog.topic_start)
        t = len(self.bucket_size)
        self.num_probe = min(config.retrieval_probe, t)
        self._build_table()
        # Slots of the personal items (in order), then of the popular and the fresh ones.
        personal = self.source == _PERSONAL
        self._personal_slots = np.flatnonzero(personal)
        self._other_slots = np.concatenate(
            [np.flatnonzero(self.source == _POPULAR), np.flatnonzero(self.source == _FRESH)]
        )
        # Personal index of each slot (junk on other slots), and the slot personal index j
        # starts at (P for j = n_personal): runs are laid out directly in slot order.
        self._personal_rank = np.maximum(np.cumsum(personal) - 1, 0).astype(np.int32)
        self._run_slot = np.append(self._personal_slots, p)
        # Topic and bucket position of each item; index -1 (an empty history entry) reads the
        # sentinel topic T, which is never probed.
        self._topic_ext = np.append(catalog.topic, np.int32(t))
        self._bucket_pos = np.empty(catalog.num_items, dtype=np.int32)
        self._bucket_pos[catalog.topic_items] = np.arange(catalog.num_items) - np.repeat(
            catalog.topic_start[:-1], self.bucket_size
        )
        # Runs never repeat an item when no bucket is shorter than the personal part.
        self._distinct_runs = (
            self._padded and n_personal > 0 and int(self.bucket_size.min()) >= n_personal
        )
        # Two-stage top-k over blocks of g topics (see _probe), for enough topics; the last block
        # is padded with topics that score -inf.
        g = round((t / self.num_probe) ** 0.5) if t >= 16 * self.num_probe else 1
        t_pad = -(-t // g) * g
        self._block = g
        self._centres_padded = np.zeros((t_pad, catalog.topic_centres.shape[1]), np.float32)
        self._centres_padded[:t] = catalog.topic_centres

    def _build_table(self) -> None:
        cat, n_p = self.catalog, self.n_personal
        t, n = len(self.bucket_size), cat.num_items
        sizes = self.bucket_size
        # Padding each bucket by n_p items makes every run contiguous; skip it where it would
        # more than double the index (tiny buckets with a huge pool), and wrap with a modulo.
        self._padded = t * n_p <= max(n, 1 << 20)
        if self._padded and n_p:
            length = sizes + n_p
            start = np.zeros(t + 1, dtype=np.int64)
            np.cumsum(length, out=start[1:])
            # Row r of the padded table lists bucket items (r - start) mod size.
            owner = np.repeat(np.arange(t), length)
            within = (np.arange(start[-1]) - start[owner]) % sizes[owner]
            personal = cat.topic_items[cat.topic_start[owner] + within]
        else:
            start = cat.topic_start.astype(np.int64)
            personal = cat.topic_items
        self._table_start = start[:-1]
        self._other_offset = len(personal)
        others = np.concatenate([cat.popular_items, cat.fresh_items]).astype(np.int32)
        self._table = np.concatenate([personal, others]).astype(np.int32)
        if len(self._table) > _INT32_MAX:
            raise ValueError("the retrieval index needs more than 2**31 entries")
        # Popular and fresh items, and their topics (their draws index these directly).
        self._others = others
        self._others_topic = cat.topic[others]

    @property
    def table(self) -> np.ndarray:
        """(L,) int32 item id of each table offset (pools are stored as offsets into it)."""
        return self._table

    def retrieve(
        self, interest: np.ndarray, history: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pools for n users.

        Args:
            interest: (n, d) the users' interest vectors.
            history: (n, H) recently consumed item ids (-1 = none); they are masked out.
            rng: the retriever's generator.

        Returns:
            (n, P) int32 item ids and (n, P) bool validity (duplicates and recent items are False).
        """
        offsets, valid, _ = self.retrieve_offsets(interest, history, rng, 0)
        return self._table.take(offsets), valid

    def retrieve_offsets(
        self, interest: np.ndarray, history: np.ndarray, rng: np.random.Generator, wrap: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`retrieve`, as offsets into :attr:`table`, the first ``wrap`` slots repeated.

        Pools kept as offsets skip gathering the item ids of every slot at retrieval time;
        ``table.take(offsets)`` gives them.

        Returns:
            (n, P + wrap) int32 table offsets, (n, P + wrap) bool validity and (n,) int64 upper
            bounds of the number of invalid slots among the first P (exact but for rare repeats
            found twice).
        """
        n, p = interest.shape[0], self.pool_size
        if n == 0:
            return (
                np.empty((0, p + wrap), dtype=np.int32),
                np.zeros((0, p + wrap), dtype=bool),
                np.zeros(0, dtype=np.int64),
            )
        # int32 offsets (the table is smaller than 2**31) halve the memory traffic.
        offsets = np.empty((n, p + wrap), dtype=np.int32)
        runs = self._personal(interest, rng, offsets[:, :p]) if self.n_personal else None
        # Popular and fresh draws index self._others.
        picks = []
        if self.n_popular:
            picks.append(rng.integers(0, len(self.catalog.popular_items), (n, self.n_popular)))
        if self.n_fresh:
            pick = rng.integers(0, len(self.catalog.fresh_items), (n, self.n_fresh))
            picks.append(pick + len(self.catalog.popular_items))
        others = None
        if picks:
            others = picks[0] if len(picks) == 1 else np.concatenate(picks, axis=1)
            offsets[:, self._other_slots] = others + self._other_offset
        for first in range(0, wrap, p):
            width = min(p, wrap - first)
            offsets[:, p + first : p + first + width] = offsets[:, :width]
        # (The per-row topic table of the run-based search must be int32-indexable.)
        if runs is not None and self._distinct_runs and n * (len(self.bucket_size) + 1) < 2**31:
            rows, slots = self._repeats_by_runs(others, runs, history)
        else:
            rows, slots = self._repeats(self._table.take(offsets[:, :p]), history)
        valid = np.ones((n, p + wrap), dtype=bool)
        valid[rows, slots] = False
        # A slot repeated in the wrapped tail shares its validity.
        for first in range(0, wrap, p):
            twin = slots < wrap - first
            valid[rows[twin], slots[twin] + first + p] = False
        return offsets, valid, np.bincount(rows, minlength=n)

    def _personal(
        self, interest: np.ndarray, rng: np.random.Generator, out: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Write the table offsets of each personal slot into the (n, P) ``out``; return the runs.

        ``out`` gets junk on the other slots. The runs are (n, probe) arrays: the probed topics,
        the bucket position each run starts at, the number of items it takes, its first personal
        index and its bucket's size.
        """
        cat = self.catalog
        n, n_p, probe = interest.shape[0], self.n_personal, self.num_probe
        noisy = rng.standard_normal(interest.shape, dtype=np.float32)
        noisy *= np.float32(self.noise)
        noisy += interest
        if probe < len(self.bucket_size):
            top, top_scores = self._probe(noisy)
        else:
            top_scores = noisy @ cat.topic_centres.T
            top = np.broadcast_to(np.arange(top_scores.shape[1]), top_scores.shape)
        # Split the slots among the probed topics by a softmax over their scores. Systematic
        # sampling: a topic gets its expected share n_p * w rounded up or down at random (unbiased,
        # and the slots of one topic come out contiguous).
        weights = np.exp((top_scores - top_scores.max(axis=1, keepdims=True)) / self.temperature)
        cdf = np.cumsum(weights, axis=1)
        cdf *= (n_p / cdf[:, -1])[:, None]
        u = rng.random((n, probe + 1), dtype=np.float32)
        cut = np.empty((n, probe + 1), dtype=np.int64)
        cut[:, 0] = 0
        np.floor(cdf + u[:, :1], out=cdf)
        cut[:, 1:] = cdf
        cut[:, -1] = n_p
        np.minimum(cut, n_p, out=cut)
        counts = cut[:, 1:] - cut[:, :-1]
        first = cut[:, :-1]
        # Start near the top of each bucket (popular first), at a random depth: U^2 favours the top.
        size = self.bucket_size[top]
        depth = u[:, 1:]
        depth *= depth
        begin = (size * depth).astype(np.int64)
        np.minimum(begin, size - 1, out=begin)
        runs = (top, begin, counts, first, size)
        if self._padded:
            # Personal index j of a run starting at index `first` reads table row base + j. Run
            # i covers the slots from where its first index sits to where the next run's does.
            base = (self._table_start[top] + begin - first).astype(np.int32)
            bound = self._run_slot.take(cut)
            bound[:, 0] = 0
            spans = bound[:, 1:] - bound[:, :-1]
            rows = np.repeat(base.ravel(), spans.ravel()).reshape(out.shape)
            np.add(rows, self._personal_rank, out=out)
            return runs
        group = np.repeat(np.arange(n * probe), counts.ravel()).reshape(n, n_p)
        rank = np.arange(n_p) - first.ravel()[group]
        offset = (begin.ravel()[group] + rank) % size.ravel()[group]
        out[:, self._personal_slots] = self._table_start[top].ravel()[group] + offset
        return runs

    def _probe(self, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, probe) best-scoring topics for the (n, d) noisy interests (IVF's nprobe), and their
        scores plus a per-row constant (softmax weights ignore it).

        Exact top-k in two stages: the best k blocks of g topics by their maximum score (a topic
        among the best k lies in a block whose maximum is among the best k maxima), then the best
        topics of those k blocks. Both select with a partition of int keys, the score's bits
        with the index in the lowest bits, which is much faster than an argpartition of floats;
        scores are shifted per row to be positive (|score| <= |noisy|, the centres are unit
        vectors), where a float's bits order like the float.
        """
        n, probe = noisy.shape[0], self.num_probe
        g, t_pad = self._block, len(self._centres_padded)
        scores = noisy @ self._centres_padded.T
        scores[:, len(self.bucket_size) :] = -np.inf
        lift = np.sqrt(np.einsum("nd,nd->n", noisy, noisy)) + np.float32(1.0)
        if g == 1:
            scores += lift[:, None]
            return _top_keys(scores, probe)
        # Block b holds topics b, b + t_pad / g, ...: the maximum over the middle axis runs over
        # contiguous rows of blocks (fast), unlike a maximum over an inner axis of g.
        nb = t_pad // g
        blocks = scores.reshape(n, g, nb).max(axis=1)
        blocks += lift[:, None]
        best, _ = _top_keys(blocks, probe)
        cols = (best[:, :, None] + nb * np.arange(g)).reshape(n, probe * g)
        candidates = scores.reshape(-1).take(cols + np.arange(0, n * t_pad, t_pad)[:, None])
        candidates += lift[:, None]
        top, values = _top_keys(candidates, probe)
        return np.take_along_axis(cols, top, 1), values

    def _repeats_by_runs(
        self, others: np.ndarray | None, runs: tuple[np.ndarray, ...], history: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`_repeats` finds, given the runs and the (n, n_other) popular/fresh draws.

        The personal items of a row are distinct (each run holds consecutive items of one bucket,
        and no bucket is shorter than a run), so only the few popular, fresh and history items
        are sorted; whether one of them lies in a personal run follows from its topic and its
        position in the topic's bucket.
        """
        n, h = history.shape
        n_o = 0 if others is None else others.shape[1]
        width = h + n_o
        key = np.empty((n, width), dtype=np.int32)
        topic = np.empty((n, width), dtype=np.int32)
        np.copyto(key[:, :h], history, casting="unsafe")
        self._topic_ext.take(history, out=topic[:, :h])
        if n_o:
            self._others.take(others, out=key[:, h:])
            self._others_topic.take(others, out=topic[:, h:])
        # Which of the history and non-personal items fall in a probed topic...
        top, begin, counts, first, size = runs
        probe = top.shape[1]
        t = len(self.bucket_size) + 1
        probed = np.full(n * t, -1, dtype=np.int8 if probe < 2**7 else np.int32)
        row_t = np.arange(0, n * t, t, dtype=np.int32)[:, None]
        probed[top + row_t] = np.arange(probe, dtype=probed.dtype)
        topic += row_t
        which = probed.take(topic)
        hit = np.flatnonzero(which >= 0)
        rows, cols = np.divmod(hit, width)
        run = which.reshape(-1).take(hit) + probe * rows
        # ... and in that topic's run: its bucket position is within the run's (cyclic) range.
        rel = self._bucket_pos.take(key.reshape(-1).take(hit)) - begin.reshape(-1).take(run)
        rel %= size.reshape(-1).take(run)
        inside = np.flatnonzero(rel < counts.reshape(-1).take(run))
        rows, cols, rel, run = rows[inside], cols[inside], rel[inside], run[inside]
        # The personal copy's slot; of two copies the later slot is the repeat, and a personal
        # copy of a history item is always one.
        slot_p = self._personal_slots.take(first.reshape(-1).take(run) + rel)
        slot_o = np.concatenate([np.full(h, -1), self._other_slots]).take(cols)
        # Repeats among the history and non-personal items: sort their keys.
        rows_a, slots_a = self._sorted_repeats(key, h, self._other_slots, self.catalog.num_items)
        return (
            np.concatenate([rows_a, rows]),
            np.concatenate([slots_a, np.maximum(slot_p, slot_o)]).astype(np.intp),
        )

    @staticmethod
    def _valid(pool: np.ndarray, history: np.ndarray) -> np.ndarray:
        """(n, P) bool: False for the second and later copies of an item in a row and recent items."""
        valid = np.ones_like(pool, dtype=bool)
        valid[CandidateRetriever._repeats(pool, history)] = False
        return valid

    @staticmethod
    def _repeats(
        pool: np.ndarray, history: np.ndarray, slots: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and slots of the second and later copies of an item in a row, and recent items.

        ``slots`` are the pool slots of the columns of ``pool`` (default: column j is slot j).
        """
        n, c = pool.shape
        h = history.shape[1]
        top = max(int(pool.max(initial=0)), int(history.max(initial=0))) + 1
        dtype = np.int32 if top <= _INT32_MAX else np.int64
        key = np.empty((n, h + c), dtype=dtype)
        np.copyto(key[:, :h], history, casting="unsafe")
        key[:, h:] = pool
        return CandidateRetriever._sorted_repeats(
            key, h, np.arange(c) if slots is None else slots, top
        )

    @staticmethod
    def _sorted_repeats(
        key: np.ndarray, h: int, slots: np.ndarray, num_items: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_repeats` of the (n, H + C) item ids [history | pool columns], in place.

        One sort per row over history and pool together: the key holds the item in its high bits
        and a code in its low bits that puts history entries (codes 0..H-1) before pool slots
        (codes H + slot), so a pool entry equal to its predecessor in sorted order is either a
        repeat or a recent item. Sorting values is several times faster than argsort, and int32
        keys (whenever they fit) sort about twice as fast as int64 ones.
        """
        code = np.concatenate([np.arange(h), slots + h])
        shift = max(int(code.max(initial=0)).bit_length(), 1)
        if key.dtype == np.int32 and num_items << shift > _INT32_MAX:
            key = key.astype(np.int64)
        key <<= shift
        key |= code.astype(key.dtype)
        key.sort(axis=1)
        # Equal items differ only in their code bits: an unsigned XOR of neighbours (empty
        # history entries, -1, have the sign bit and pair only among themselves) is at most
        # `low`. The hits are few, so they are found in one flat pass (2-D nonzero is slower).
        low = (1 << shift) - 1
        same = key[:, 1:] ^ key[:, :-1]
        unsigned = np.uint32 if key.dtype == np.int32 else np.uint64
        hit = np.flatnonzero(same.view(unsigned) <= low)
        rows, cols = np.divmod(hit, key.shape[1] - 1)
        found = key[rows, cols + 1] & low
        # Repeats within the history itself (codes < H) are no pool slots.
        keep = np.flatnonzero(found >= h)
        return rows[keep], (found[keep] - h).astype(np.intp)


def window_goodness(
    valid: np.ndarray, m: int, k: int, refresh_every: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Good window starts (n, P), best start (n,) and its valid count (n,) of (n, P + M)
    wrapped pool validities: a window of M slots is good when it keeps
    ``min(k + refresh_every, best)`` valid candidates.

    Marks every slot of ``valid`` valid in a row that has no window with k valid candidates
    (only a catalog smaller than the pool gets there: duplicates are shown then).
    """
    p = valid.shape[1] - m
    # Valid candidates in each window of M slots (windows may wrap around the pool's end).
    csum = np.zeros((valid.shape[0], p + m), dtype=np.int32)
    np.cumsum(valid[:, : p + m - 1], axis=1, out=csum[:, 1:])
    count = csum[:, m : m + p] - csum[:, :p]
    best = count.max(axis=1)
    if (best < k).any():
        valid[best < k] = True
        count[best < k] = m
        best = count.max(axis=1)
    need = np.minimum(k + refresh_every, best)
    return count >= need[:, None], count.argmax(axis=1), best
