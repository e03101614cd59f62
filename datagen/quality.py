"""Image similarity against a reference render: PSNR and SSIM (Wang et al. 2004).

SSIM uses the standard Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03 and data range 255,
computed per channel and averaged, as in scikit-image's ``structural_similarity`` with
``gaussian_weights=True, use_sample_covariance=False``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def psnr(image: np.ndarray, reference: np.ndarray, data_range: float = 255.0) -> float:
    mse = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(image: np.ndarray, reference: np.ndarray, data_range: float = 255.0, sigma: float = 1.5) -> float:
    if image.shape != reference.shape:
        raise ValueError(f"images differ in shape: {image.shape} vs {reference.shape}")
    x = image.astype(np.float64)
    y = reference.astype(np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch], y[..., ch]

        def blur(z):
            return gaussian_filter(z, sigma, truncate=3.5, mode="reflect")

        mu_a, mu_b = blur(a), blur(b)
        var_a = blur(a * a) - mu_a**2
        var_b = blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        pad = int(3.5 * sigma + 0.5)  # skimage crops the border where the window is truncated
        values.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(values))
