"""Strong/weak MCC and the circular score against cases whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mmcl.probing.identifiability import (
    angle_features,
    circular_r2,
    correlation_matrix,
    from_angle_features,
    mcc,
    weak_mcc,
    wrapped,
)


def factors(n: int = 4000, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def test_mcc_of_a_permuted_rescaled_sign_flipped_copy_is_one() -> None:
    s = factors()
    z = s[:, [2, 0, 3, 1]] * np.array([-3.0, 0.5, 2.0, -1.0]) + 7.0
    assert mcc(z, s) == pytest.approx(1.0, abs=1e-12)


def test_mcc_of_independent_noise_is_near_zero() -> None:
    s, z = factors(seed=0), factors(seed=1)
    # the best matching of 4 x 4 correlations of independent samples of 4 000: |r| ~ 0.02
    assert mcc(z, s) < 0.05


def test_mcc_matches_one_to_one_by_hand() -> None:
    """Codes (s1 + s2, s2): a greedy per-factor maximum would use code 0 twice; the optimal
    matching pairs code 0 with s1 (0.707) and code 1 with s2 (1.0): MCC 0.854."""
    s = factors(n=200_000, d=2)
    z = np.c_[s[:, 0] + s[:, 1], s[:, 1]]
    corr = np.abs(correlation_matrix(z, s))
    np.testing.assert_allclose(corr, [[2**-0.5, 2**-0.5], [0.0, 1.0]], atol=0.01)
    assert mcc(z, s) == pytest.approx((2**-0.5 + 1) / 2, abs=0.01)


def test_weak_mcc_is_one_for_an_invertible_linear_mix_where_strong_mcc_is_not() -> None:
    s_fit, s_test = factors(seed=2), factors(seed=3)
    mix = np.random.default_rng(4).standard_normal((4, 4))
    z_fit, z_test = s_fit @ mix + 1.0, s_test @ mix + 1.0
    assert weak_mcc(z_fit, s_fit, z_test, s_test) == pytest.approx(1.0, abs=1e-9)
    assert mcc(z_test, s_test) < 0.95
    # noise codes stay near zero after CCA (fitted on one split, scored on the other)
    noise_fit, noise_test = factors(seed=5), factors(seed=6)
    assert weak_mcc(noise_fit, s_fit, noise_test, s_test) < 0.06


def test_circular_score_is_invariant_to_a_whole_period_and_to_rotations() -> None:
    rng = np.random.default_rng(0)
    hue = rng.uniform(0, 1, 5000)
    pred = (hue + rng.normal(0, 0.05, len(hue))) % 1.0
    base = circular_r2(hue, pred)
    assert 0.9 < base < 1.0
    assert circular_r2(hue + 1.0, pred) == pytest.approx(base, abs=1e-12)
    assert circular_r2((hue + 0.3) % 1.0, (pred + 0.3) % 1.0) == pytest.approx(base, abs=1e-9)
    # plain R^2 counts the wrap-around (0.99 predicted as 0.01) as an error of almost a period
    plain = 1 - ((pred - hue) ** 2).sum() / ((hue - hue.mean()) ** 2).sum()
    assert plain < base - 0.02
    np.testing.assert_allclose(wrapped([0.98 - 0.01, -0.7], 1.0), [-0.03, 0.3], atol=1e-12)
    np.testing.assert_allclose(from_angle_features(angle_features(hue, 1.0), 1.0), hue, atol=1e-12)
