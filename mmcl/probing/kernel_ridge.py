"""RBF kernel ridge regression with the probing grid search of SPEC §4, in torch (float64).

The nonlinear probe of seed 003 (§2.5.1, §8.4; upstream ``main_mlp.py`` / ``main_imgtxt.py``)
is scikit-learn's ``GridSearchCV(KernelRidge(kernel="rbf"), {"alpha": ALPHAS, "gamma":
GAMMAS}, cv=3)``. This module computes exactly that estimator -- the same un-shuffled K-fold
splits, the same R^2 scoring (uniform average over the columns of a multi-output target),
selection by the mean score over folds with ties going to the first candidate in
``ParameterGrid`` order (alpha outer, gamma inner), and a refit on all fitting data -- but
with one eigendecomposition ``K_train = V diag(w) V^T`` per (gamma, fold), which gives the
dual coefficients ``V diag(1 / (w + alpha)) V^T y`` for every alpha at the cost of a matrix
product.

The eigendecomposition depends on the features only, so one pass also serves any number of
targets (``targets=``: groups of columns, each its own independent grid search, exactly as
separate ``GridSearchCV`` calls would select). The probes use this to fit every factor of a
representation at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

ALPHAS: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001)
GAMMAS: tuple[float, ...] = tuple(float(g) for g in np.logspace(-2, 2, 4))

SOLVERS: tuple[str, ...] = ("eigh", "cholesky")
_PREDICT_CHUNK = 8192


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` -> CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def kfold_splits(n_samples: int, n_splits: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """``sklearn.model_selection.KFold(n_splits)`` without shuffling: contiguous test blocks, the
    first ``n_samples % n_splits`` of them one sample longer."""
    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2, got {n_splits}")
    if n_samples < n_splits:
        raise ValueError(f"cannot split {n_samples} samples into {n_splits} cross-validation folds")
    sizes = np.full(n_splits, n_samples // n_splits, dtype=int)
    sizes[: n_samples % n_splits] += 1
    indices = np.arange(n_samples)
    splits = []
    start = 0
    for size in sizes:
        test = indices[start : start + size]
        train = np.concatenate([indices[:start], indices[start + size :]])
        splits.append((train, test))
        start += size
    return splits


def rbf_kernel(a: torch.Tensor, b: torch.Tensor | None, gamma: float) -> torch.Tensor:
    """``exp(-gamma ||a_k - b_l||^2)`` computed like ``sklearn.metrics.pairwise.rbf_kernel``:
    squared distances by the dot-product expansion, clipped at zero, exactly zero on the
    diagonal when ``b`` is ``None`` (the kernel of a set with itself)."""
    same = b is None
    b = a if b is None else b
    aa = (a * a).sum(1, keepdim=True)
    bb = aa.T if same else (b * b).sum(1)[None, :]
    d2 = (aa - 2.0 * (a @ b.T) + bb).clamp_min_(0.0)
    if same:
        d2.fill_diagonal_(0.0)
    return d2.mul_(-gamma).exp_()


def r2_columns(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """R^2 per column (last axis = columns, second-to-last = samples), with scikit-learn's
    ``force_finite`` convention for a constant target: 1 if predicted exactly, else 0."""
    residual = ((y_true - y_pred) ** 2).sum(-2)
    total = ((y_true - y_true.mean(-2, keepdim=True)) ** 2).sum(-2)
    r2 = 1.0 - residual / torch.where(total == 0, torch.ones_like(total), total)
    constant = total == 0
    return torch.where(constant, (residual == 0).to(r2.dtype), r2)


def _dual_coefficients(
    k_train: torch.Tensor, y: torch.Tensor, alphas: torch.Tensor, solver: str
) -> torch.Tensor:
    """``(K + alpha I)^-1 y`` for every alpha, shape (n_alpha, n_train, k)."""
    if solver == "eigh":
        w, v = torch.linalg.eigh(k_train)
        vy = v.T @ y
        return v @ (vy[None] / (w[None, :, None] + alphas[:, None, None]))
    out = []
    for alpha in alphas.tolist():
        k_reg = k_train.clone()
        k_reg.diagonal().add_(alpha)
        out.append(torch.cholesky_solve(y, torch.linalg.cholesky(k_reg)))
        del k_reg
    return torch.stack(out)


@dataclass
class KernelRidgeFit:
    """One grid search's outcome: the selected (alpha, gamma), the mean CV score of every
    candidate (``candidates`` order = ``ParameterGrid`` order) and the model refit on all
    fitting data."""

    alpha: float
    gamma: float
    best_score: float
    cv_scores: np.ndarray
    candidates: list[tuple[float, float]]
    columns: list[int]
    x_fit: torch.Tensor = field(repr=False)
    dual_coef: torch.Tensor = field(repr=False)

    @property
    def best_params(self) -> dict[str, float]:
        return {"alpha": self.alpha, "gamma": self.gamma}

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Predictions for new samples, shape (N,) for a single column, else (N, k)."""
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float64)
        x = x.to(self.x_fit.device)
        out = [
            rbf_kernel(x[i : i + _PREDICT_CHUNK], self.x_fit, self.gamma) @ self.dual_coef
            for i in range(0, len(x), _PREDICT_CHUNK)
        ]
        pred = torch.cat(out).cpu().numpy()
        return pred[:, 0] if len(self.columns) == 1 else pred

    def score(self, x: np.ndarray | torch.Tensor, y: np.ndarray) -> float:
        """R^2 on held-out data (uniform average over this fit's columns)."""
        pred = torch.as_tensor(self.predict(x), dtype=torch.float64).reshape(len(y), -1)
        y_t = torch.as_tensor(np.asarray(y, dtype=np.float64)).reshape(len(y), -1)
        return float(r2_columns(y_t, pred).mean())


def grid_search_kernel_ridge(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    targets: Sequence[Sequence[int]] | None = None,
    alphas: Sequence[float] = ALPHAS,
    gammas: Sequence[float] = GAMMAS,
    n_splits: int = 3,
    device: str | torch.device | None = None,
    solver: str = "eigh",
) -> list[KernelRidgeFit]:
    """Grid-searched RBF kernel ridge, one independent search per group of target columns.

    ``x``: (N, d) features; ``y``: (N,) or (N, k) targets. ``targets``: groups of column
    indices of ``y``, each scored by its own uniform-average R^2 (default: one group holding
    every column, i.e. ``GridSearchCV`` on the multi-output ``y``). Returns one fit per group.
    ``solver``: ``"eigh"`` (one eigendecomposition per gamma and fold serves every alpha) or
    ``"cholesky"`` (one factorisation per alpha, gamma and fold, as scikit-learn does, but with
    each kernel computed once and all targets solved together) -- the same numbers either way.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    dev = resolve_device(device)
    x_t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float64).to(dev)
    y_t = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y, dtype=torch.float64).to(dev)
    if x_t.ndim == 1:
        x_t = x_t[:, None]
    if y_t.ndim == 1:
        y_t = y_t[:, None]
    if len(x_t) != len(y_t):
        raise ValueError(f"features and targets have different lengths: {len(x_t)} vs {len(y_t)}")
    groups = [list(range(y_t.shape[1]))] if targets is None else [list(map(int, g)) for g in targets]
    if not groups or any(not g for g in groups):
        raise ValueError("every target group needs at least one column")
    alphas_t = torch.tensor(list(alphas), dtype=torch.float64, device=dev)
    n_a, n_g = len(alphas), len(gammas)
    splits = kfold_splits(len(x_t), n_splits)

    # fold_scores[group, alpha, gamma, split]
    fold_scores = np.empty((len(groups), n_a, n_g, n_splits))
    for gi, gamma in enumerate(gammas):
        for si, (train, test) in enumerate(splits):
            tr = torch.as_tensor(train, device=dev)
            te = torch.as_tensor(test, device=dev)
            k_train = rbf_kernel(x_t[tr], None, gamma)
            k_test = rbf_kernel(x_t[te], x_t[tr], gamma)
            dual = _dual_coefficients(k_train, y_t[tr], alphas_t, solver)  # (n_alpha, n_train, k)
            del k_train
            pred = k_test @ dual
            r2 = r2_columns(y_t[te][None], pred).cpu().numpy()  # (n_alpha, k)
            for gr, cols in enumerate(groups):
                fold_scores[gr, :, gi, si] = r2[:, cols].mean(axis=1) if len(cols) > 1 else r2[:, cols[0]]
            del k_test, dual, pred

    candidates = [(float(a), float(g)) for a in alphas for g in gammas]
    chosen: list[tuple[int, np.ndarray]] = []
    for gr in range(len(groups)):
        # ParameterGrid order (alpha outer, gamma inner); mean over folds as sklearn does
        means = np.average(fold_scores[gr].reshape(n_a * n_g, n_splits), axis=1)
        ranked = means.copy()
        if np.isnan(ranked).all():
            best = 0
        else:
            ranked[np.isnan(ranked)] = np.nanmin(ranked) - 1
            best = int(np.argmax(ranked))  # first of the tied best, like rank 'min' + argmin
        chosen.append((best, means))

    # Refit on all fitting data: one kernel per selected gamma, one Cholesky per (alpha, gamma).
    fits: list[KernelRidgeFit | None] = [None] * len(groups)
    by_candidate: dict[int, list[int]] = {}
    for gr, (best, _) in enumerate(chosen):
        by_candidate.setdefault(best, []).append(gr)
    kernels: dict[float, torch.Tensor] = {}
    for best, members in sorted(by_candidate.items()):
        alpha, gamma = candidates[best]
        if gamma not in kernels:
            kernels = {gamma: rbf_kernel(x_t, None, gamma)}  # keep one n x n kernel in memory
        k_reg = kernels[gamma].clone()
        k_reg.diagonal().add_(alpha)
        chol = torch.linalg.cholesky(k_reg)
        del k_reg
        cols = sorted({c for gr in members for c in groups[gr]})
        sol = torch.cholesky_solve(y_t[:, cols], chol)
        del chol
        position = {c: i for i, c in enumerate(cols)}
        for gr in members:
            best_i, means = chosen[gr]
            fits[gr] = KernelRidgeFit(
                alpha=alpha,
                gamma=gamma,
                best_score=float(means[best_i]),
                cv_scores=means,
                candidates=candidates,
                columns=groups[gr],
                x_fit=x_t,
                dual_coef=sol[:, [position[c] for c in groups[gr]]].contiguous(),
            )
    return [f for f in fits if f is not None]


def kernel_ridge_r2(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    device: str | torch.device | None = None,
) -> tuple[float, KernelRidgeFit]:
    """Held-out R^2 of the grid-searched kernel ridge fitted on (x_fit, y_fit)."""
    fit = grid_search_kernel_ridge(x_fit, y_fit, device=device)[0]
    return fit.score(x_test, y_test), fit
