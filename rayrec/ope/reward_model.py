"""The reward model of DM, DR, SNDR and Switch-DR: ridge regression, cross-fitted, refitted on
every bootstrap replicate.

q(x, a) = b + <w_x, phi(x)> + <w_a, psi(a)>: a linear probability model on the context features
phi(x) and the action features psi(a) (one-hot item ids, item attributes, position), fitted by
least squares with an L2 penalty on every coefficient but the intercept. Predictions are clipped
to the range of the rewards it was fitted on (clicks stay in [0, 1]).

Cross-fitting (Chernozhukov et al. 2018; as OBP's ``RegressionModel.fit_predict``): the rows are
split into k seeded folds and the prediction for a row comes from the model fitted on the other
folds, so DR's correction term is not fitted to the row it corrects.

Refitting per replicate (:meth:`CrossFitRidge.replicate_sums`). A bootstrap replicate gives row i
a count c_i; the model of fold k is refitted on the resampled rows of the other folds in closed
form, theta = (X' C X + ridge I)^-1 X' C y, from the per-row sufficient statistics x_i x_i' and
x_i y_i summed with the counts (one matrix product for a batch of replicates). A row keeps its
fold in every replicate, so its copies never train the model that predicts it. The estimators
only need sums over the rows of the predictions (sum_i c_i q_pi(x_i) and sum_i c_i u_i
q(x_i, a_i)), and those are linear in theta except for the clipping:

- ``exact`` (logs up to :data:`EXACT_PAIRS` (row, action) pairs): every prediction is recomputed
  and clipped in every replicate.
- otherwise the *clip pattern* of the whole-log model is kept: a pair it clipped keeps its clipped
  value, the others follow the refitted theta linearly, so a replicate costs a few sums per row.
  Only pairs whose prediction crosses a bound between the two fits differ, each by at most its
  move |x' (theta_c - theta)| = O(n^-1/2), and they are a fraction O(n^-1/2) of the pairs: the
  error is O(1/n) against an interval width of O(n^-1/2) (measured on a 10^5-row log: 2.4% of the
  replicates' standard deviation, falling with n).

The clipping range is that of the whole log's training rewards in every replicate (for clicks,
[0, 1] unless a resample has no click or no non-click at all).

Numpy only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

__all__ = ["EXACT_PAIRS", "CrossFitRidge", "cross_fit_rewards", "fold_ids", "ridge_fit"]

EXACT_PAIRS = 1 << 20
"""Logs with at most this many (row, action) pairs recompute every clipped prediction per replicate."""
_OUTER_BYTES = 1 << 29
"""Memory for the per-row sufficient statistics (float32); above it X' C X is formed per
replicate (O(n p^2) each)."""
_BLOCK_ENTRIES = 1 << 22
"""Entries of the temporary arrays (32 MiB of float64)."""
_ROW_BLOCK_ENTRIES = 1 << 19
"""Entries per statistic of a block of rows whose statistics are formed together (their ~100
columns take ~8 MiB: small enough for the allocator to reuse, not to map and fault in anew)."""


def fold_ids(n: int, n_folds: int, seed: int) -> np.ndarray:
    """(n,) fold of every row: a seeded permutation cut into ``n_folds`` near-equal parts."""
    if n < n_folds:
        raise ValueError(f"cross-fitting needs at least n_folds ({n_folds}) rows, got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF01D]))
    folds = np.empty(n, dtype=np.int64)
    folds[rng.permutation(n)] = np.arange(n) % n_folds
    return folds


def ridge_fit(gram: np.ndarray, xty: np.ndarray, ridge: float) -> np.ndarray:
    """Coefficients from X^T X and X^T y; column 0 is the unpenalised intercept."""
    penalty = np.full(len(gram), ridge)
    penalty[0] = 0.0
    return np.linalg.lstsq(gram + np.diag(penalty), xty, rcond=None)[0]


def _ridge_fit_batch(gram: np.ndarray, xty: np.ndarray, ridge: float) -> np.ndarray:
    """(B, p) coefficients from (B, p, p) X^T C X and (B, p) X^T C y, as :func:`ridge_fit`."""
    if ridge > 0:  # positive definite: the intercept's diagonal is the resample's size
        penalty = np.full(gram.shape[-1], ridge)
        penalty[0] = 0.0
        return np.linalg.solve(gram + np.diag(penalty), xty[..., None])[..., 0]
    return np.stack([ridge_fit(g, b, ridge) for g, b in zip(gram, xty, strict=True)])


def _action_matrix(action_features: np.ndarray, n: int) -> np.ndarray:
    """The action features as given when they are float32 or float64 (a (n, A, da) log's are
    large: float32 ones stay float32, halving the passes over them), float64 otherwise."""
    f = np.asarray(action_features)
    if f.dtype not in (np.float32, np.float64):
        f = f.astype(np.float64)
    if f.ndim == 2:
        return f  # (A, da), the same for every row
    if f.ndim == 3 and len(f) == n:
        return f  # (n, A, da)
    raise ValueError(f"action_features must be (A, da) or (n={n}, A, da), got shape {f.shape}")


class CrossFitRidge:
    """The cross-fitted ridge reward model of one log.

    Args:
        context: (n, dc) context features phi(x_i).
        action_features: (A, da) features psi(a) shared by all rows, or (n, A, da) per row
            (candidates that change from row to row).
        action: (n,) the logged action of every row, an index in [0, A).
        reward: (n,) the logged reward.
    """

    def __init__(
        self,
        context: np.ndarray,
        action_features: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        n_folds: int = 2,
        ridge: float = 1.0,
        seed: int = 0,
    ) -> None:
        x = np.asarray(context, dtype=np.float64)
        n = len(x)
        f = _action_matrix(action_features, n)
        rows = np.arange(n)
        self.action = np.asarray(action)
        logged = f[self.action] if f.ndim == 2 else f[rows, self.action]
        self.design = np.concatenate([np.ones((n, 1)), x.reshape(n, -1), logged], axis=1)
        """(n, p) [1, phi(x_i), psi(a_i)]: the rows the model is fitted on."""
        self.features = f
        self.reward = np.asarray(reward, dtype=np.float64)
        self.ridge = ridge
        self.folds = fold_ids(n, n_folds, seed)
        self.dx = 1 + x.reshape(n, -1).shape[1]
        y, design, folds = self.reward, self.design, self.folds
        grams = [design[folds == k].T @ design[folds == k] for k in range(n_folds)]
        xtys = [design[folds == k].T @ y[folds == k] for k in range(n_folds)]
        gram_all, xty_all = sum(grams), sum(xtys)
        self.coef = np.empty((n_folds, design.shape[1]))
        """(k, p) coefficients of the model that predicts fold k (fitted on the others)."""
        self.bounds = np.empty((n_folds, 2))
        """(k, 2) clipping range of fold k's predictions: its training rewards' min and max."""
        self.q = np.empty((n, f.shape[-2]))
        """(n, A) cross-fitted predictions q(x_i, a) for every row and action."""
        self.clipped = np.empty(self.q.shape, dtype=bool)
        """(n, A) the prediction is clipped to a bound."""
        for k in range(n_folds):
            coef = ridge_fit(gram_all - grams[k], xty_all - xtys[k], ridge)
            train = folds != k
            lo, hi = y[train].min(), y[train].max()
            idx = np.flatnonzero(~train)
            base = design[idx, : self.dx] @ coef[: self.dx]
            # (n, A, da) features: one sequential pass over all rows, then the fold's rows.
            per_action = f @ coef[self.dx :].astype(f.dtype)
            per_action = per_action if f.ndim == 2 else per_action[idx]
            raw = base[:, None] + per_action
            self.q[idx] = np.clip(raw, lo, hi)
            self.clipped[idx] = (raw < lo) | (raw > hi)
            self.coef[k], self.bounds[k] = coef, (lo, hi)

    @property
    def n(self) -> int:
        return len(self.design)

    def replicate_sums(
        self, eval_dist: np.ndarray, row_weights: np.ndarray, exact: bool | None = None
    ) -> Callable[[np.ndarray], np.ndarray]:
        """counts (B, n) -> (B, 1 + J) sums over the rows with the model refitted on each resample:
        column 0 sum_i c_i sum_a pi_e(a | x_i) q(x_i, a), column 1 + j sum_i c_i u_ij q(x_i, a_i).
        The counts are a bootstrap's: integers (below 2^15) that sum to n.

        Args:
            eval_dist: (n, A) the evaluation policy's distribution on every row.
            row_weights: (n, J) the weights u of the logged predictions (DR: the importance
                weights).
            exact: recompute every clipped prediction (True) or keep the whole-log model's clip
                pattern (False); None decides by size (:data:`EXACT_PAIRS`).
        """
        if exact is None:
            exact = self.q.size <= EXACT_PAIRS
        return _ReplicateSums(
            self, eval_dist, np.asarray(row_weights, float).reshape(self.n, -1), exact
        )


class _ReplicateSums:
    """:meth:`CrossFitRidge.replicate_sums`, prepared once per log: the rows sorted by fold and
    their sufficient statistics; the last batch's answer is kept (every estimator asks for it).

    Per row the statistics are the products x_j x_l that are ever non-zero (one-hot designs have
    few), x y and, keeping the clip pattern, the linear terms of q_pi and of u q(x, a): a batch of
    replicates sums them with one matrix product. Designs whose statistics would exceed
    :data:`_OUTER_BYTES` form X' C X per replicate instead. Exactly recomputed predictions are
    evaluated once per group of rows with equal context, policy and candidates.
    """

    def __init__(
        self, model: CrossFitRidge, eval_dist: np.ndarray, u: np.ndarray, exact: bool
    ) -> None:
        self.model, self.exact, self.j = model, exact, u.shape[1]
        design = model.design
        n, p = design.shape
        self.p = p
        nonzero = (design != 0).astype(np.float64)
        together = np.triu(nonzero.T @ nonzero) > 0
        self.pairs = np.nonzero(together)
        width = len(self.pairs[0]) + p + (0 if exact else (p + 1) * (1 + self.j))
        self.outer = n * width * 4 <= _OUTER_BYTES
        pi = np.asarray(eval_dist, dtype=np.float64)
        if exact:
            f = model.features
            key = [model.folds[:, None], design[:, : model.dx], pi]
            if f.ndim == 3:
                key.append(f.reshape(n, -1))
            _, group = np.unique(np.concatenate(key, axis=1), axis=0, return_inverse=True)
            group = group.reshape(-1)
            self.order = np.argsort(group, kind="stable")  # fold first, then group
        else:
            group = None
            self.order = np.argsort(model.folds, kind="stable")
        self.edges = np.concatenate([[0], np.cumsum(np.bincount(model.folds))])
        self.folds: list[dict[str, np.ndarray]] = []
        for k in range(len(model.coef)):
            idx = self.order[self.edges[k] : self.edges[k + 1]]
            fold: dict[str, np.ndarray] = {"design": design[idx]}
            if exact:
                first = np.flatnonzero(np.diff(group[idx], prepend=-1))
                reps = idx[first]
                f = model.features
                fold |= {
                    "starts": first,
                    "group_x": design[reps, : model.dx],
                    "group_features": f if f.ndim == 2 else f[reps],
                    "group_pi": pi[reps],
                    "u": u[idx],
                }
            fold["total"], fold["stats"] = self._row_stats(idx, pi, u)
            self.folds.append(fold)
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._buffers: tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None = None

    def _row_stats(
        self, idx: np.ndarray, pi_all: np.ndarray, u: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-row statistics of the rows ``idx``: their sum (float64) and the rows, transposed
        (width, len(idx)) float32: [x_j x_l (with ``outer``), x y, and without ``exact``: the
        frozen-pattern terms of q_pi and of u_j q(x, a)]."""
        model, (left, right) = self.model, self.pairs
        total, rows_out = None, None
        chunk = max(1, _ROW_BLOCK_ENTRIES // (len(left) + 1))
        for start in range(0, len(idx), chunk):
            rows = idx[start : start + chunk]
            # Built transposed, (statistic, row): every product reads and writes whole rows.
            x = model.design[rows].T
            parts = [x[left] * x[right]] if self.outer else []
            parts.append(x * model.reward[rows])
            if not self.exact:
                pi = pi_all[rows]
                free = ~model.clipped[rows]
                q = model.q[rows]
                pi_free = pi * free
                f = model.features
                if f.ndim == 2:
                    expected = pi_free @ f
                else:
                    expected = (pi_free[:, None, :] @ f[rows])[:, 0, :]
                mass = pi_free.sum(axis=1)
                fixed = (pi * np.where(free, 0.0, q)).sum(axis=1)
                parts += [mass[None], x[1 : model.dx] * mass, expected.T, fixed[None]]
                at = np.arange(len(rows)), model.action[rows]
                logged_free = free[at]
                logged_fixed = np.where(logged_free, 0.0, q[at])
                for j in range(u.shape[1]):
                    w = u[rows, j]
                    parts += [x * (w * logged_free), (w * logged_fixed)[None]]
            stats = np.concatenate(parts, axis=0)
            total = stats.sum(axis=1) if total is None else total + stats.sum(axis=1)
            if rows_out is None:
                rows_out = np.empty((len(stats), len(idx)), dtype=np.float32)
            rows_out[:, start : start + len(rows)] = stats
        return total, rows_out

    def _workspace(self, batch: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Buffers for a batch of ``batch`` replicates: the counts as int16, reordered by fold,
        and every fold's deviations c - 1 as float32. Kept between batches: a large array
        allocated afresh costs its page faults on every batch (as much as the reordering)."""
        if self._buffers is None or len(self._buffers[0]) < batch:
            n = self.model.n
            self._buffers = (
                np.empty((batch, n), dtype=np.int16),
                np.empty((batch, n), dtype=np.int16),
                [np.empty((batch, b - a), np.float32) for a, b in itertools.pairwise(self.edges)],
            )
        small, ordered, deviations = self._buffers
        return small[:batch], ordered[:batch], [d[:batch] for d in deviations]

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        if self._last is not None and self._last[0] is counts:
            return self._last[1]
        given, counts = counts, np.atleast_2d(counts)
        # Counts sum to n: the sums of c_i s_i are sum_i s_i (float64) plus the deviations
        # sum_i (c_i - 1) s_i, of order sqrt(n), which float32 carries to ~1e-7 of their size.
        # (Resample counts are small integers: int16 makes the reordering by fold cheap.)
        small, ordered, deviations = self._workspace(len(counts))
        np.copyto(small, counts, casting="unsafe")
        np.take(small, self.order, axis=1, out=ordered)
        p, (left, right) = self.p, self.pairs
        width = len(left) if self.outer else 0
        sums, grams, xtys, parts = [], [], [], []
        for k, fold in enumerate(self.folds):
            d = np.subtract(ordered[:, self.edges[k] : self.edges[k + 1]], 1, out=deviations[k])
            # (width, n_k) @ (n_k, B): OpenBLAS runs this layout 2-3 times faster than
            # (B, n_k) @ (n_k, width) when n_k is large and B small.
            s = fold["total"] + (fold["stats"] @ d.T).T.astype(np.float64)
            c = d.astype(np.float64) + 1.0 if self.exact or not self.outer else None
            if self.outer:
                gram = np.zeros((len(s), p, p))
                gram[:, left, right] = s[:, :width]
                gram[:, right, left] = s[:, :width]
            else:
                gram = _weighted_grams(c, fold["design"])
            sums.append(s)
            parts.append(c)
            grams.append(gram)
            xtys.append(s[:, width : width + p])
        gram_all, xty_all = sum(grams), sum(xtys)
        out = np.zeros((len(counts), 1 + self.j))
        for k, (s, fold) in enumerate(zip(sums, self.folds, strict=True)):
            theta = _ridge_fit_batch(gram_all - grams[k], xty_all - xtys[k], self.model.ridge)
            if self.exact:
                out += self._exact(k, fold, parts[k], theta)
                continue
            rest = s[:, width + p :]
            out[:, 0] += np.einsum("bp,bp->b", rest[:, :p], theta) + rest[:, p]
            for j in range(self.j):
                block = rest[:, (p + 1) * (j + 1) : (p + 1) * (j + 2)]
                out[:, 1 + j] += np.einsum("bp,bp->b", block[:, :p], theta) + block[:, p]
        self._last = (given, out)
        return out

    def _exact(
        self, k: int, fold: dict[str, np.ndarray], counts: np.ndarray, theta: np.ndarray
    ) -> np.ndarray:
        """(B, 1 + J) sums over fold k with every prediction recomputed and clipped."""
        dx, (lo, hi) = self.model.dx, self.model.bounds[k]
        x, f, pi = fold["group_x"], fold["group_features"], fold["group_pi"]
        groups, num_actions = pi.shape
        out = np.empty((len(theta), 1 + self.j))
        # The logged action's prediction: the design row itself.
        logged = np.clip(fold["design"] @ theta.T, lo, hi).T  # (B, n_k)
        out[:, 1:] = (counts * logged) @ fold["u"]
        group_counts = np.add.reduceat(counts, fold["starts"], axis=1)  # (B, groups)
        step = max(1, _BLOCK_ENTRIES // (groups * num_actions))
        for start in range(0, len(theta), step):
            th = theta[start : start + step]
            base = x @ th[:, :dx].T  # (groups, b)
            if f.ndim == 2:
                per_action = (f @ th[:, dx:].T)[None]  # (1, A, b)
            else:
                per_action = (f.reshape(-1, f.shape[-1]) @ th[:, dx:].T).reshape(
                    groups, num_actions, -1
                )
            q = np.clip(base[:, None, :] + per_action, lo, hi)  # (groups, A, b)
            q_pi = np.einsum("ga,gab->bg", pi, q)
            out[start : start + step, 0] = np.einsum(
                "bg,bg->b", group_counts[start : start + step], q_pi
            )
        return out


def _weighted_grams(counts: np.ndarray, design: np.ndarray) -> np.ndarray:
    """(B, p, p) X' diag(c_b) X for every row of ``counts`` (B, n)."""
    n, p = design.shape
    step = max(1, _BLOCK_ENTRIES // (n * p))
    out = np.empty((len(counts), p, p))
    for start in range(0, len(counts), step):
        c = counts[start : start + step]
        weighted = c[:, None, :] * design.T[None]  # (b, p, n)
        out[start : start + step] = (weighted.reshape(-1, n) @ design).reshape(len(c), p, p)
    return out


def cross_fit_rewards(
    context: np.ndarray,
    action_features: np.ndarray,
    action: np.ndarray,
    reward: np.ndarray,
    n_folds: int = 2,
    ridge: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """(n, A) cross-fitted predictions q(x_i, a) for every row i and every action a
    (:class:`CrossFitRidge` ``.q``)."""
    return CrossFitRidge(context, action_features, action, reward, n_folds, ridge, seed).q
