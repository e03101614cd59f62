"""Identifiability scores the literature reports beside per-factor probes (SPEC §4).

* ``mcc`` -- strong mean correlation coefficient: the absolute Pearson correlation between every
  code dimension and every factor, the one-to-one matching that maximises their sum (Hungarian
  algorithm), the mean over the matched pairs. As ``mean_corr_coef`` in icebeem's
  ``metrics/mcc.py`` and ``disentanglement_utils`` of cl-ica (which match with
  ``scipy.optimize.linear_sum_assignment`` as we do). 1 for a permuted, rescaled and
  sign-flipped copy of the factors; near 0 for independent noise.
* ``weak_mcc`` -- the same after canonical correlation analysis fitted on the fitting split
  (icebeem's ``mcc_weak_out``: ``CCA(n_components).fit(z, s)``, then the MCC of the two sets of
  canonical variates of the test split): identification up to an invertible affine map.
  Computed with our own CCA (whitening + SVD), which gives the canonical correlations exactly,
  where scikit-learn's ``CCA`` is an iterative NIPALS estimate.
* ``block_r2`` -- the R^2 of a whole block of factors predicted jointly by one grid-searched
  kernel ridge (one shared alpha, gamma for all its columns; uniform average), as the thesis's
  simulation scores content (Table 8.1).
* ``circular_r2`` -- the score of a periodic factor (a hue: 0 and 1 are the same colour):
  kernel ridge predicts (cos, sin) of the angle, the prediction is read back as an angle, and
  ``1 - sum d(y, y_hat)^2 / sum d(y, mean_circ)^2`` with ``d`` the wrapped difference. Unchanged
  by a shift of the factor by a whole period (or any rotation), where the plain R^2 of upstream
  counts 0.99 vs 0.01 as an error of almost a full period.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def correlation_matrix(z: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(d_z, d_s) Pearson correlations between the columns of ``z`` and ``s`` (constant columns
    correlate 0)."""
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    s = np.asarray(s, dtype=np.float64).reshape(len(s), -1)
    zc, sc = z - z.mean(0), s - s.mean(0)
    zn, sn = np.linalg.norm(zc, axis=0), np.linalg.norm(sc, axis=0)
    corr = (zc.T @ sc) / np.outer(np.where(zn > 0, zn, 1.0), np.where(sn > 0, sn, 1.0))
    return np.where(np.outer(zn > 0, sn > 0), corr, 0.0)


def mcc(z: np.ndarray, s: np.ndarray) -> float:
    """Strong MCC: mean |correlation| over the best one-to-one matching of codes to factors
    (min(d_z, d_s) pairs)."""
    corr = np.abs(correlation_matrix(z, s))
    rows, cols = linear_sum_assignment(-corr)
    return float(corr[rows, cols].mean())


def _whitener(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False).reshape(x.shape[1], x.shape[1])
    vals, vecs = np.linalg.eigh(cov)
    keep = vals > eps * max(vals.max(), 1e-300)
    return mean, vecs[:, keep] / np.sqrt(vals[keep])


def cca_fit(z: np.ndarray, s: np.ndarray, eps: float = 1e-10) -> tuple:
    """Canonical directions of (z, s): whiten each, SVD of the cross-covariance."""
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    s = np.asarray(s, dtype=np.float64).reshape(len(s), -1)
    mz, wz = _whitener(z, eps)
    ms, ws = _whitener(s, eps)
    cross = ((z - mz) @ wz).T @ ((s - ms) @ ws) / (len(z) - 1)
    u, _, vt = np.linalg.svd(cross, full_matrices=False)
    return mz, wz @ u, ms, ws @ vt.T


def weak_mcc(z_fit: np.ndarray, s_fit: np.ndarray, z_test: np.ndarray, s_test: np.ndarray) -> float:
    """Weak MCC: MCC of the canonical variates of the test split, CCA fitted on the fitting split."""
    mz, az, ms, as_ = cca_fit(z_fit, s_fit)
    z_test = np.asarray(z_test, dtype=np.float64).reshape(len(z_test), -1)
    s_test = np.asarray(s_test, dtype=np.float64).reshape(len(s_test), -1)
    k = min(az.shape[1], as_.shape[1])
    return mcc((z_test - mz) @ az[:, :k], (s_test - ms) @ as_[:, :k])


def wrapped(d: np.ndarray, period: float) -> np.ndarray:
    """Differences wrapped into [-period/2, period/2)."""
    return (np.asarray(d, dtype=np.float64) + period / 2) % period - period / 2


def circular_mean(y: np.ndarray, period: float) -> float:
    angle = 2 * np.pi * np.asarray(y, dtype=np.float64) / period
    return float(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()) * period / (2 * np.pi))


def circular_r2(
    y_true: np.ndarray, y_pred: np.ndarray, period: float = 1.0, centre: float | None = None
) -> float:
    """``1 - sum d(y, y_hat)^2 / sum d(y, centre)^2`` with wrapped differences; ``centre`` defaults
    to the circular mean of ``y_true`` (pass the fitting split's for a held-out score)."""
    centre = circular_mean(y_true, period) if centre is None else centre
    num = (wrapped(np.asarray(y_pred) - np.asarray(y_true), period) ** 2).sum()
    den = (wrapped(np.asarray(y_true) - centre, period) ** 2).sum()
    return float(1 - num / den) if den > 0 else 0.0


def angle_features(y: np.ndarray, period: float) -> np.ndarray:
    """(N, 2) targets (cos, sin) of a periodic factor."""
    angle = 2 * np.pi * np.asarray(y, dtype=np.float64) / period
    return np.c_[np.cos(angle), np.sin(angle)]


def from_angle_features(pred: np.ndarray, period: float) -> np.ndarray:
    return (np.arctan2(pred[:, 1], pred[:, 0]) * period / (2 * np.pi)) % period
