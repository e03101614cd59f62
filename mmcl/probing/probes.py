"""Linear and nonlinear probes of learned representations (seed 003 §2.5.1, §8.4; SPEC §4).

Protocol (upstream ``main_imgtxt.py``): standardise the features with the statistics of the
fitting split, fit on the validation embeddings, score on the test embeddings.

* continuous factor: ``LinearRegression`` R^2 and RBF kernel ridge R^2, grid-searched over
  alpha in {1, 0.1, 0.01, 0.001} and gamma in logspace(-2, 2, 4) with 3-fold CV
  (:mod:`mmcl.probing.kernel_ridge`, identical to scikit-learn's ``GridSearchCV``);
* discrete factor: ``LogisticRegression`` and ``MLPClassifier`` accuracy;
* periodic factor (``period`` in its metadata, e.g. the object hue): ``circular``, kernel ridge
  on (cos, sin) of the angle scored by the wrapped-difference R^2, beside the plain R^2;
* block (the continuous, non-periodic factors of one role, or of one ``block`` in the metadata,
  listed as ``"<name> block"``): ``block_kernel_ridge`` (joint R^2), ``mcc`` (strong mean
  correlation coefficient) and ``weak_mcc`` (after CCA) -- :mod:`mmcl.probing.identifiability`.

Chance levels: R^2 = 0 for continuous factors (predicting the mean), the test split's
majority-class frequency for discrete ones.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def standardize(fit: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scale every array with the mean and standard deviation of ``fit`` (float64), like
    ``StandardScaler`` (a constant column is centred, not scaled)."""
    fit = np.asarray(fit, dtype=np.float64)
    mean = fit.mean(axis=0)
    std = fit.std(axis=0)
    std = np.where(std < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0), 1.0, std)
    return tuple((np.asarray(a, dtype=np.float64) - mean) / std for a in (fit, *others))


def linear_r2(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Held-out R^2 of ordinary least squares (uniform average over target columns)."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    model = LinearRegression().fit(x_fit, y_fit)
    return float(r2_score(y_test, model.predict(x_test)))


PROBES: dict[str, tuple[str, ...]] = {
    "continuous": ("linear", "kernel_ridge"),
    "discrete": ("logistic", "mlp"),
}
# circular: periodic factors (meta "period"); mcc, weak_mcc, block_kernel_ridge: blocks of the
# continuous factors of one role (mmcl.probing.identifiability).
ALL_PROBES: tuple[str, ...] = (
    "linear",
    "kernel_ridge",
    "logistic",
    "mlp",
    "circular",
    "block_kernel_ridge",
    "mcc",
    "weak_mcc",
)
LINEAR_PROBES = ("linear", "logistic", "mcc", "weak_mcc")
BLOCK_PROBES = ("block_kernel_ridge", "mcc", "weak_mcc")
CV_FOLDS = 3


@dataclass
class ProbeResult:
    """One probe of one factor from one representation, scored on the test split."""

    representation: str
    factor: str
    kind: str
    role: str
    probe: str
    metric: str
    score: float
    chance: float
    n_fit: int
    n_test: int
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def factor_kind(kind: str) -> str:
    """``continuous`` -> regression; every other kind (discrete, categorical_name) -> classification."""
    return "continuous" if kind == "continuous" else "discrete"


def chance_level(kind: str, y_test: np.ndarray) -> float:
    """R^2 0 for continuous factors; majority-class frequency of the test split otherwise."""
    if factor_kind(kind) == "continuous":
        return 0.0
    _, counts = np.unique(y_test, return_counts=True)
    return float(counts.max() / counts.sum())


def logistic_accuracy(
    x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int
) -> float:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        model.fit(x_fit, y_fit)
    return float((model.predict(x_test) == y_test).mean())


def mlp_accuracy(
    x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int
) -> float:
    """Upstream's shallow MLP classifier (scikit-learn defaults: one hidden layer of 100)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        model.fit(x_fit, y_fit)
    return float((model.predict(x_test) == y_test).mean())


def probe_representation(
    representation: str,
    x_fit: np.ndarray,
    x_test: np.ndarray,
    factors: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any]]],
    probes: tuple[str, ...] = ALL_PROBES,
    seed: int = 0,
    device: str | None = None,
    solver: str = "eigh",
) -> list[ProbeResult]:
    """Probe every factor ``name -> (y_fit, y_test, meta)`` of one representation.

    Features are standardised with the fitting split's statistics. All continuous factors share
    one kernel ridge grid search pass (one eigendecomposition per gamma and fold, each factor
    selecting its own hyperparameters). ``meta`` needs ``kind`` and ``role``.
    """
    from mmcl.probing.kernel_ridge import grid_search_kernel_ridge

    if len(x_fit) < CV_FOLDS:
        raise ValueError(f"{len(x_fit)} fitting samples are fewer than the {CV_FOLDS} cross-validation folds")
    x_fit, x_test = standardize(x_fit, x_test)
    results: list[ProbeResult] = []

    def add(name: str, probe: str, metric: str, score: float, params: dict | None = None) -> None:
        y_fit, y_test, meta = factors[name]
        results.append(
            ProbeResult(
                representation,
                name,
                meta["kind"],
                meta.get("role", ""),
                probe,
                metric,
                float(score),
                chance_level(meta["kind"], y_test),
                len(y_fit),
                len(y_test),
                params or {},
            )
        )

    continuous = [n for n, (_, _, m) in factors.items() if factor_kind(m["kind"]) == "continuous"]
    discrete = [n for n in factors if n not in continuous]
    if continuous and "kernel_ridge" in probes:
        y_fit = np.stack([np.asarray(factors[n][0], dtype=np.float64) for n in continuous], axis=1)
        fits = grid_search_kernel_ridge(
            x_fit, y_fit, targets=[[i] for i in range(len(continuous))], device=device, solver=solver
        )
        for name, fit in zip(continuous, fits, strict=True):
            add(
                name,
                "kernel_ridge",
                "r2",
                fit.score(x_test, factors[name][1]),
                {"alpha": fit.alpha, "gamma": fit.gamma, "cv_r2": fit.best_score},
            )
    for name in continuous:
        if "linear" in probes:
            y_fit, y_test, _ = factors[name]
            add(name, "linear", "r2", linear_r2(x_fit, y_fit, x_test, y_test))
    for name in discrete:
        y_fit, y_test, _ = factors[name]
        if "logistic" in probes:
            add(
                name,
                "logistic",
                "accuracy",
                logistic_accuracy(x_fit, y_fit, x_test, y_test, seed),
                {"random_state": seed},
            )
        if "mlp" in probes:
            add(
                name,
                "mlp",
                "accuracy",
                mlp_accuracy(x_fit, y_fit, x_test, y_test, seed),
                {"random_state": seed},
            )
    periodic = [n for n in continuous if factors[n][2].get("period")]
    if "circular" in probes:
        for name in periodic:
            y_fit, y_test, meta = factors[name]
            score, params = circular_score(
                x_fit, y_fit, x_test, y_test, float(meta["period"]), device, solver
            )
            add(name, "circular", "circular_r2", score, params)
    blocks: dict[str, list[str]] = {}
    for name in continuous:
        if name not in periodic:
            meta = factors[name][2]
            blocks.setdefault(meta.get("block") or meta.get("role", ""), []).append(name)
    for block, members in blocks.items():
        results += block_scores(
            representation, block, members, factors, x_fit, x_test, probes, device, solver
        )
    order = {p: i for i, p in enumerate(ALL_PROBES)}
    names = list(factors) + [f"{b} block" for b in blocks]
    results.sort(key=lambda r: (names.index(r.factor), order[r.probe]))
    return results


def circular_score(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    period: float,
    device: str | None,
    solver: str,
) -> tuple[float, dict[str, Any]]:
    """Kernel ridge on (cos, sin) of a periodic factor, read back as an angle, wrapped R^2
    around the fitting split's circular mean."""
    from mmcl.probing.identifiability import angle_features, circular_mean, circular_r2, from_angle_features
    from mmcl.probing.kernel_ridge import grid_search_kernel_ridge

    (fit,) = grid_search_kernel_ridge(x_fit, angle_features(y_fit, period), device=device, solver=solver)
    pred = from_angle_features(fit.predict(x_test), period)
    score = circular_r2(y_test, pred, period, centre=circular_mean(y_fit, period))
    return score, {"alpha": fit.alpha, "gamma": fit.gamma, "period": period}


def block_scores(
    representation: str,
    block: str,
    members: list[str],
    factors: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any]]],
    x_fit: np.ndarray,
    x_test: np.ndarray,
    probes: tuple[str, ...],
    device: str | None,
    solver: str,
) -> list[ProbeResult]:
    """Joint kernel-ridge R^2, strong and weak MCC of one block of continuous factors."""
    from mmcl.probing.identifiability import mcc, weak_mcc
    from mmcl.probing.kernel_ridge import grid_search_kernel_ridge

    y_fit = np.stack([np.asarray(factors[n][0], dtype=np.float64) for n in members], axis=1)
    y_test = np.stack([np.asarray(factors[n][1], dtype=np.float64) for n in members], axis=1)
    role = factors[members[0]][2].get("role", "")
    scores: list[tuple[str, str, float, dict[str, Any]]] = []
    if "block_kernel_ridge" in probes:
        (fit,) = grid_search_kernel_ridge(x_fit, y_fit, device=device, solver=solver)
        scores.append(
            ("block_kernel_ridge", "r2", fit.score(x_test, y_test), {"alpha": fit.alpha, "gamma": fit.gamma})
        )
    if "mcc" in probes:
        scores.append(("mcc", "mcc", mcc(x_test, y_test), {}))
    if "weak_mcc" in probes:
        scores.append(("weak_mcc", "weak_mcc", weak_mcc(x_fit, y_fit, x_test, y_test), {}))
    return [
        ProbeResult(
            representation,
            f"{block} block",
            "block",
            role,
            probe,
            metric,
            float(score),
            0.0,
            len(y_fit),
            len(y_test),
            {"factors": members, **params},
        )
        for probe, metric, score, params in scores
    ]
