"""The reward model of DM, DR, SNDR and Switch-DR: ridge regression, cross-fitted.

q(x, a) = b + <w_x, phi(x)> + <w_a, psi(a)>: a linear probability model on the context features
phi(x) and the action features psi(a) (one-hot item ids, item attributes, position), fitted by
least squares with an L2 penalty on every coefficient but the intercept. Predictions are clipped
to the range of the rewards it was fitted on (clicks stay in [0, 1]).

Cross-fitting (Chernozhukov et al. 2018; as OBP's ``RegressionModel.fit_predict``): the rows are
split into k seeded folds and the prediction for a row comes from the model fitted on the other
folds, so DR's correction term is not fitted to the row it corrects.

Numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cross_fit_rewards", "fold_ids", "ridge_fit"]


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


def _action_matrix(action_features: np.ndarray, n: int) -> np.ndarray:
    f = np.asarray(action_features, dtype=np.float64)
    if f.ndim == 2:
        return f  # (A, da), the same for every row
    if f.ndim == 3 and len(f) == n:
        return f  # (n, A, da)
    raise ValueError(f"action_features must be (A, da) or (n={n}, A, da), got shape {f.shape}")


def cross_fit_rewards(
    context: np.ndarray,
    action_features: np.ndarray,
    action: np.ndarray,
    reward: np.ndarray,
    n_folds: int = 2,
    ridge: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """(n, A) cross-fitted predictions q(x_i, a) for every row i and every action a.

    Args:
        context: (n, dc) context features phi(x_i).
        action_features: (A, da) features psi(a) shared by all rows, or (n, A, da) per row
            (candidates that change from row to row).
        action: (n,) the logged action of every row, an index in [0, A).
        reward: (n,) the logged reward.
    """
    x = np.asarray(context, dtype=np.float64)
    n = len(x)
    f = _action_matrix(action_features, n)
    rows = np.arange(n)
    logged = f[action] if f.ndim == 2 else f[rows, action]
    design = np.concatenate([np.ones((n, 1)), x.reshape(n, -1), logged], axis=1)
    y = np.asarray(reward, dtype=np.float64)
    folds = fold_ids(n, n_folds, seed)
    grams = [design[folds == k].T @ design[folds == k] for k in range(n_folds)]
    xtys = [design[folds == k].T @ y[folds == k] for k in range(n_folds)]
    gram_all, xty_all = sum(grams), sum(xtys)
    dx = 1 + x.reshape(n, -1).shape[1]
    q = np.empty((n, f.shape[-2]))
    for k in range(n_folds):
        coef = ridge_fit(gram_all - grams[k], xty_all - xtys[k], ridge)
        train = folds != k
        lo, hi = y[train].min(), y[train].max()
        idx = np.flatnonzero(~train)
        base = design[idx, :dx] @ coef[:dx]
        per_action = f @ coef[dx:] if f.ndim == 2 else f[idx] @ coef[dx:]
        q[idx] = np.clip(base[:, None] + per_action, lo, hi)
    return q
