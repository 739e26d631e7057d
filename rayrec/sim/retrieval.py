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

__all__ = ["CandidateRetriever"]

_PERSONAL, _POPULAR, _FRESH = 0, 1, 2
_INT32_MAX = np.iinfo(np.int32).max


def _interleave(counts: list[int]) -> np.ndarray:
    """Source of each pool slot, spread so every window holds about the same mix."""
    total = sum(counts)
    keys = np.concatenate([(np.arange(c) + 0.5) / c if c else np.zeros(0) for c in counts])
    sources = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    return sources[np.argsort(keys, kind="stable")].astype(np.int8)[:total]


def _sortable(x: np.ndarray) -> np.ndarray:
    """int32 keys that order like the float32 values ``x`` (IEEE-754 bit trick)."""
    bits = x.view(np.int32)
    return bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))


class CandidateRetriever:
    """Retrieves each user's pool of candidate items in batch.

    Every item of a pool is read from one flat int32 table: each topic's bucket padded with its own
    first items (so a run of consecutive items never needs a modulo), then the popular pool, then
    the fresh pool. A pool is then one gather of table offsets.
    """

    def __init__(self, config: SimConfig, catalog: ItemCatalog) -> None:
        self.catalog = catalog
        self.pool_size = config.pool_size
        n_personal = round(config.personal_fraction * self.pool_size)
        n_popular = min(
            round(config.popular_fraction * self.pool_size), self.pool_size - n_personal
        )
        n_fresh = self.pool_size - n_personal - n_popular
        self.source = _interleave([n_personal, n_popular, n_fresh])
        self.n_personal, self.n_popular, self.n_fresh = n_personal, n_popular, n_fresh
        self.temperature = config.retrieval_temperature
        self.noise = config.retrieval_noise
        self.bucket_size = np.diff(catalog.topic_start)
        self.num_probe = min(config.retrieval_probe, len(self.bucket_size))
        self._build_table()
        # Position of each item in its topic's bucket.
        self._bucket_pos = np.empty(catalog.num_items, dtype=np.int32)
        self._bucket_pos[catalog.topic_items] = np.arange(catalog.num_items) - np.repeat(
            catalog.topic_start[:-1], self.bucket_size
        )
        # Runs never repeat an item when no bucket is shorter than the personal part.
        self._distinct_runs = self._padded and int(self.bucket_size.min()) >= n_personal
        # Pool slot of each column of the source-ordered block [personal | popular | fresh].
        self._slot_of = np.concatenate(
            [np.flatnonzero(self.source == s) for s in (_PERSONAL, _POPULAR, _FRESH)]
        ).astype(np.int32)
        self._order = np.argsort(self._slot_of).astype(np.intp)
        t = len(self.bucket_size)
        # Topic ids ride in the low bits of the sortable score keys (exact top-k by value sort).
        self._topic_bits = max(int(t - 1).bit_length(), 1)
        self._wide_topic_keys = self._topic_bits > 12

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
        self._popular_offset = len(personal)
        self._fresh_offset = self._popular_offset + len(cat.popular_items)
        self._table = np.concatenate([personal, cat.popular_items, cat.fresh_items]).astype(
            np.int32
        )
        if len(self._table) > _INT32_MAX:
            raise ValueError("the retrieval index needs more than 2**31 entries")

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
        pool, valid, _ = self.retrieve_wrapped(interest, history, rng, 0)
        return pool, valid

    def retrieve_wrapped(
        self, interest: np.ndarray, history: np.ndarray, rng: np.random.Generator, wrap: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`retrieve`, with the first ``wrap`` slots repeated after the last one.

        Returns:
            (n, P + wrap) int32 item ids, (n, P + wrap) bool validity and (n,) int64 number of
            invalid slots among the first P.
        """
        n, p = interest.shape[0], self.pool_size
        if n == 0:
            return (
                np.empty((0, p + wrap), dtype=np.int32),
                np.zeros((0, p + wrap), dtype=bool),
                np.zeros(0, dtype=np.int64),
            )
        # Table offsets, source-ordered: [personal | popular | fresh].
        parts = []
        runs = None
        if self.n_personal:
            offsets, runs = self._personal(interest, rng)
            parts.append(offsets)
        if self.n_popular:
            pick = rng.integers(0, len(self.catalog.popular_items), (n, self.n_popular))
            parts.append(pick + self._popular_offset)
        if self.n_fresh:
            pick = rng.integers(0, len(self.catalog.fresh_items), (n, self.n_fresh))
            parts.append(pick + self._fresh_offset)
        offsets = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        items = self._table.take(offsets)
        order = self._order
        if wrap:
            order = np.concatenate([order, order[np.arange(wrap) % p]])
        pool = items.take(order, axis=1)
        if runs is not None and self._distinct_runs:
            rows, slots = self._repeats_by_runs(items, runs, history)
        else:
            rows, slots = self._repeats(pool[:, :p], history)
        valid = np.ones_like(pool, dtype=bool)
        valid[rows, slots] = False
        if wrap:
            # A slot repeated in the wrapped tail shares its validity.
            for first in range(0, wrap, p):
                twin = slots < wrap - first
                valid[rows[twin], slots[twin] + first + p] = False
        return pool, valid, p - np.count_nonzero(valid[:, :p], axis=1)

    def _personal(
        self, interest: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """(n, n_personal) table offsets of the personal part of each pool, and its runs.

        The runs are (n, probe) arrays: the probed topics, the bucket position each run starts
        at, the number of items it takes and its first column in the personal part.
        """
        cat = self.catalog
        n, n_p, probe = interest.shape[0], self.n_personal, self.num_probe
        noisy = rng.standard_normal(interest.shape, dtype=np.float32)
        noisy *= np.float32(self.noise)
        noisy += interest
        scores = noisy @ cat.topic_centres.T
        t = scores.shape[1]
        # Probe the best few topics (IVF's nprobe). A partition of int keys (the score's sortable
        # bits, the topic id in the lowest bits) is much faster than an argpartition of floats.
        if probe < t:
            key = _sortable(scores)
            if self._wide_topic_keys:
                key = (key.astype(np.int64) << self._topic_bits) | np.arange(t)
            else:
                key &= np.int32(-1 << self._topic_bits)
                key |= np.arange(t, dtype=np.int32)
            best = np.partition(key, t - probe, axis=1)[:, t - probe :]
            top = (best & ((1 << self._topic_bits) - 1)).astype(np.intp)
            top_scores = np.take_along_axis(scores, top, 1)
        else:
            top = np.broadcast_to(np.arange(t), (n, t))
            top_scores = scores
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
        counts = np.diff(cut, axis=1)
        first = cut[:, :-1]
        # Start near the top of each bucket (popular first), at a random depth: U^2 favours the top.
        size = self.bucket_size[top]
        depth = u[:, 1:]
        depth *= depth
        begin = (size * depth).astype(np.int64)
        np.minimum(begin, size - 1, out=begin)
        runs = (top, begin, counts, first)
        if self._padded:
            # Slot j of a run that starts at slot `first` reads table row base + j.
            base = self._table_start[top] + begin - first
            offsets = np.repeat(base.ravel(), counts.ravel()).reshape(n, n_p)
            offsets += np.arange(n_p)
            return offsets, runs
        group = np.repeat(np.arange(n * probe), counts.ravel()).reshape(n, n_p)
        rank = np.arange(n_p) - first.ravel()[group]
        offset = (begin.ravel()[group] + rank) % size.ravel()[group]
        return self._table_start[top].ravel()[group] + offset, runs

    def _repeats_by_runs(
        self, items: np.ndarray, runs: tuple[np.ndarray, ...], history: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`_repeats` finds, for a source-ordered (n, P) pool with distinct runs.

        The personal items of a row are distinct (each run holds consecutive items of one bucket,
        and no bucket is shorter than a run), so only the few popular, fresh and history items
        need sorting; whether one of them lies in a personal run follows from its topic and its
        position in the topic's bucket.
        """
        n_p = self.n_personal
        h = history.shape[1]
        others = items[:, n_p:]
        slots = self._slot_of[n_p:]
        rows_a, slots_a = self._repeats(others, history, slots)
        # Which of the history and non-personal items fall in one of the row's personal runs.
        top, begin, counts, first = runs
        n, probe = top.shape
        t = len(self.bucket_size)
        probed = np.full((n, t), -1, dtype=np.int16 if probe < 2**15 else np.int32)
        np.put_along_axis(probed, top, np.arange(probe, dtype=probed.dtype), 1)
        cand = np.concatenate([history, others], axis=1)
        real = cand >= 0
        cand = np.where(real, cand, 0)
        which = probed.reshape(-1).take(self.catalog.topic.take(cand) + t * np.arange(n)[:, None])
        rows, cols = np.nonzero((which >= 0) & real)
        run = which[rows, cols] + probe * rows
        size = self.bucket_size.take(top.reshape(-1).take(run))
        rel = (self._bucket_pos.take(cand[rows, cols]) - begin.reshape(-1).take(run)) % size
        inside = rel < counts.reshape(-1).take(run)
        rows, cols, rel, run = rows[inside], cols[inside], rel[inside], run[inside]
        # The personal copy's slot; of two copies the later slot is the repeat, and a personal
        # copy of a history item is always one.
        slot_p = self._slot_of.take(first.reshape(-1).take(run) + rel)
        slot_o = np.concatenate([np.full(h, -1, dtype=slots.dtype), slots]).take(cols)
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
        One sort per row over history and pool together: the key holds the item in its high bits
        and a code in its low bits that puts history entries (codes 0..H-1) before pool slots
        (codes H + slot), so a pool entry equal to its predecessor in sorted order is either a
        repeat or a recent item. Sorting values is several times faster than argsort, and int32
        keys (whenever they fit) sort about twice as fast as int64 ones.
        """
        n, c = pool.shape
        h = history.shape[1]
        if slots is None:
            slots = np.arange(c)
        width = int(slots.max(initial=0)) + 1 + h
        shift = max(int(width - 1).bit_length(), 1)
        top = max(int(pool.max(initial=0)), int(history.max(initial=0))) + 1
        dtype = np.int32 if (top + 1) << shift <= _INT32_MAX else np.int64
        key = np.empty((n, h + c), dtype=dtype)
        # Empty history entries (-1) become item `top`, which no pool item equals.
        np.left_shift(np.where(history < 0, top, history), shift, out=key[:, :h], casting="unsafe")
        key[:, :h] |= np.arange(h, dtype=dtype)
        np.left_shift(pool, shift, out=key[:, h:], casting="unsafe")
        key[:, h:] |= (slots + h).astype(dtype)
        key.sort(axis=1)
        # Equal items differ only in their code bits.
        low = (1 << shift) - 1
        rows, cols = np.nonzero((key[:, 1:] ^ key[:, :-1]) <= low)
        code = key[rows, cols + 1] & low
        # Repeats within the history itself (codes < H) are no pool slots.
        keep = code >= h
        return rows[keep], (code[keep] - h).astype(np.intp)
