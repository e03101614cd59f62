"""PSNR and SSIM against hand-checkable cases."""

import numpy as np
import pytest

from datagen.quality import psnr, ssim


def test_psnr_of_a_known_error():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 16  # mse = 256 / 192
    assert psnr(b, a) == pytest.approx(10 * np.log10(255**2 * 192 / 256))
    assert psnr(a, a) == float("inf")


def test_ssim_is_one_for_identical_and_drops_with_noise():
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(img + rng.normal(0, 60, img.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(noisier, img) < ssim(noisy, img) < 1


def test_ssim_of_a_constant_shift_matches_the_closed_form():
    # For constant images, SSIM reduces to the luminance term (2 mu_a mu_b + c1) / (mu_a^2 + mu_b^2 + c1).
    a = np.full((32, 32), 100, np.uint8)
    b = np.full((32, 32), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1))
