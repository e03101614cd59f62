"""Our kernel ridge grid search against scikit-learn's GridSearchCV(KernelRidge(kernel="rbf"))."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold

from mmcl.probing.kernel_ridge import ALPHAS, grid_search_kernel_ridge, kfold_splits, rbf_kernel


@pytest.fixture(autouse=True)
def one_thread():
    """Both sides single-threaded: on a shared 2-core machine, oversubscribed BLAS / OpenMP
    threads make small problems an order of magnitude slower."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def sklearn_search(x: np.ndarray, y: np.ndarray) -> GridSearchCV:
    grid = {"alpha": list(ALPHAS), "gamma": np.logspace(-2, 2, 4)}
    return GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=3).fit(x, y)


def make_data(n: int, d: int, k: int, seed: int, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = rng.standard_normal((d, k))
    y = np.sin(x @ w) + noise * rng.standard_normal((n, k))
    return x, y


@pytest.mark.parametrize("n", [10, 11, 301, 302])
def test_kfold_matches_sklearn(n: int) -> None:
    ours = kfold_splits(n, 3)
    theirs = list(KFold(3).split(np.zeros(n)))
    for (tr_a, te_a), (tr_b, te_b) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(tr_a, tr_b)
        np.testing.assert_array_equal(te_a, te_b)


def test_rbf_kernel_matches_sklearn() -> None:
    import torch
    from sklearn.metrics.pairwise import rbf_kernel as sk_rbf

    x, _ = make_data(50, 4, 1, 0)
    k = rbf_kernel(torch.as_tensor(x), None, 0.3).numpy()
    np.testing.assert_allclose(k, sk_rbf(x, gamma=0.3), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.diag(k), 1.0)


@pytest.mark.parametrize(
    ("n", "d", "noise", "seed"), [(240, 3, 0.3, 0), (401, 5, 0.1, 1), (500, 2, 1.0, 2), (302, 8, 0.05, 3)]
)
def test_single_target_equals_sklearn(n: int, d: int, noise: float, seed: int) -> None:
    x, y = make_data(n, d, 1, seed, noise)
    x_test, y_test = make_data(200, d, 1, seed + 100, noise)
    y, y_test = y[:, 0], y_test[:, 0]
    theirs = sklearn_search(x, y)
    (ours,) = grid_search_kernel_ridge(x, y, device="cpu")
    assert ours.best_params == pytest.approx(theirs.best_params_, rel=1e-12)
    np.testing.assert_allclose(ours.cv_scores, theirs.cv_results_["mean_test_score"], rtol=0, atol=1e-8)
    r2_theirs = r2_score(y_test, theirs.predict(x_test))
    assert abs(ours.score(x_test, y_test) - r2_theirs) < 1e-6
    np.testing.assert_allclose(ours.predict(x_test), theirs.predict(x_test), rtol=0, atol=1e-6)


def test_multi_output_equals_sklearn() -> None:
    """One group of several columns = GridSearchCV on a multi-output target (uniform R^2)."""
    x, y = make_data(330, 5, 4, 7)
    x_test, y_test = make_data(150, 5, 4, 8)
    theirs = sklearn_search(x, y)
    (ours,) = grid_search_kernel_ridge(x, y, device="cpu")
    assert ours.best_params == pytest.approx(theirs.best_params_, rel=1e-12)
    assert abs(ours.score(x_test, y_test) - r2_score(y_test, theirs.predict(x_test))) < 1e-6


def test_groups_select_independently_like_separate_searches() -> None:
    """Each target group picks its own (alpha, gamma), as a separate GridSearchCV would."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((360, 3))
    y = np.stack([np.sin(3 * x[:, 0]), 0.2 * x[:, 1] + rng.standard_normal(360), x[:, 2] ** 2], axis=1)
    x_test = rng.standard_normal((120, 3))
    y_test = np.stack([np.sin(3 * x_test[:, 0]), 0.2 * x_test[:, 1], x_test[:, 2] ** 2], axis=1)
    fits = grid_search_kernel_ridge(x, y, targets=[[0], [1], [2]], device="cpu")
    chosen = set()
    for j, fit in enumerate(fits):
        theirs = sklearn_search(x, y[:, j])
        assert fit.best_params == pytest.approx(theirs.best_params_, rel=1e-12)
        assert abs(fit.score(x_test, y_test[:, j]) - r2_score(y_test[:, j], theirs.predict(x_test))) < 1e-6
        chosen.add((fit.alpha, fit.gamma))
    assert len(chosen) > 1  # the groups really selected different hyperparameters


def test_ties_go_to_the_first_candidate() -> None:
    """A constant target scores R^2 = 0 everywhere (sklearn's force_finite): every candidate ties
    and GridSearchCV keeps the first of ParameterGrid, alpha=1, gamma=0.01."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 2))
    y = np.full(60, 3.0)
    theirs = sklearn_search(x, y)
    (ours,) = grid_search_kernel_ridge(x, y, device="cpu")
    assert ours.best_params == pytest.approx(theirs.best_params_)
    assert ours.best_params == pytest.approx({"alpha": 1.0, "gamma": 0.01})


def test_too_few_samples_for_folds() -> None:
    with pytest.raises(ValueError, match="cannot split 2 samples into 3"):
        grid_search_kernel_ridge(np.zeros((2, 2)), np.zeros(2), device="cpu")
