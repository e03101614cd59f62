"""DMVAE losses (mmcl/dmvae/losses.py) against brute force and hand-computed values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmcl.dmvae.losses import (
    categorical_log_likelihood,
    discriminator_bce,
    elbo,
    gaussian_log_likelihood,
    hsic_penalty,
    kl_standard_normal,
    laplace_log_likelihood,
    mopoe_infonce,
    mutual_information_estimate,
    normalised_hsic,
    permute_pairs,
    poe,
    sample_gaussian,
    sample_subsets,
    whiten,
)
from mmcl.encoders import Posterior


def _normal_pdf(x: np.ndarray, mu: float, var: float) -> np.ndarray:
    return np.exp(-0.5 * (x - mu) ** 2 / var) / np.sqrt(2 * np.pi * var)


@pytest.mark.parametrize("mask", [(1, 0, 0), (0, 1, 1), (1, 1, 1), (1, 0, 1)])
@pytest.mark.parametrize("prior_expert", [False, True])
def test_poe_matches_brute_force_product_on_a_grid(mask, prior_expert):
    """Multiply the expert densities pointwise on a fine grid, renormalise numerically, and
    compare mean and variance with the closed form (per dimension: the experts are diagonal)."""
    mean = torch.tensor([[[0.3, -1.0], [1.5, 2.0], [-0.7, 0.4]]], dtype=torch.float64)
    logvar = torch.tensor([[[0.2, -1.0], [-0.5, 0.7], [1.1, 0.0]]], dtype=torch.float64)
    m = torch.tensor([mask], dtype=torch.bool)
    post = poe(mean, logvar, m, prior_expert)
    grid = np.linspace(-12, 12, 200001)
    dx = grid[1] - grid[0]
    for d in range(2):
        density = np.ones_like(grid)
        for i in range(3):
            if mask[i]:
                density *= _normal_pdf(grid, float(mean[0, i, d]), math.exp(float(logvar[0, i, d])))
        if prior_expert:
            density *= _normal_pdf(grid, 0.0, 1.0)
        density /= density.sum() * dx
        mu = (grid * density).sum() * dx
        var = ((grid - mu) ** 2 * density).sum() * dx
        assert float(post.mean[0, d]) == pytest.approx(mu, abs=1e-6)
        assert math.exp(float(post.logvar[0, d])) == pytest.approx(var, rel=1e-5)


def test_poe_completes_the_square():
    """log prod_i N(x; mu_i, s_i) - log N(x; mu_poe, s_poe) does not depend on x."""
    torch.manual_seed(0)
    mean, logvar = torch.randn(1, 3, 4, dtype=torch.float64), torch.randn(1, 3, 4, dtype=torch.float64)
    post = poe(mean, logvar)

    def log_normal(x, mu, lv):
        return (-0.5 * (x - mu) ** 2 / lv.exp() - 0.5 * lv - 0.5 * math.log(2 * math.pi)).sum(-1)

    xs = torch.randn(50, 4, dtype=torch.float64) * 3
    diff = sum(log_normal(xs, mean[0, i], logvar[0, i]) for i in range(3)) - log_normal(
        xs, post.mean[0], post.logvar[0]
    )
    assert float(diff.std()) < 1e-10


def test_poe_single_expert_is_identity_and_extreme_precisions_are_finite():
    mean, logvar = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    mask = torch.tensor([[True, False]] * 5)
    post = poe(mean, logvar, mask)
    torch.testing.assert_close(post.mean, mean[:, 0])
    torch.testing.assert_close(post.logvar, logvar[:, 0])
    # a very confident expert dominates without overflow
    logvar2 = torch.tensor([[[-80.0], [80.0]]])
    post2 = poe(torch.tensor([[[1.0], [-5.0]]]), logvar2)
    assert torch.isfinite(post2.mean).all() and float(post2.mean) == pytest.approx(1.0)
    assert float(post2.logvar) == pytest.approx(-80.0)


def test_poe_rejects_empty_subset_and_bad_shapes():
    with pytest.raises(ValueError, match="empty subset"):
        poe(torch.zeros(2, 2, 3), torch.zeros(2, 2, 3), torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="mask must have shape"):
        poe(torch.zeros(2, 2, 3), torch.zeros(2, 2, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="equal shape"):
        poe(torch.zeros(2, 2, 3), torch.zeros(2, 2, 4))


def test_sample_subsets_uniform_over_nonempty_subsets():
    g = torch.Generator().manual_seed(0)
    masks = sample_subsets(60000, 3, g)
    assert masks.any(1).all()
    codes = (masks.long() * torch.tensor([1, 2, 4])).sum(1)
    freq = torch.bincount(codes, minlength=8)[1:].float() / len(codes)
    assert torch.allclose(freq, torch.full((7,), 1 / 7), atol=0.01)


def test_sample_gaussian_moments_and_generator():
    post = Posterior(torch.full((200000, 1), 2.0), torch.full((200000, 1), math.log(0.25)))
    x = sample_gaussian(post, torch.Generator().manual_seed(1))
    assert float(x.mean()) == pytest.approx(2.0, abs=0.01)
    assert float(x.std()) == pytest.approx(0.5, abs=0.01)
    y = sample_gaussian(post, torch.Generator().manual_seed(1))
    assert torch.equal(x, y)


def test_mopoe_infonce_hand_computed():
    """Eq. 9.3 with cosine similarity: compute the cross-entropy by hand for K = 3."""
    c_sub = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    c_full = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    tau = 0.5
    a = c_sub / c_sub.norm(dim=1, keepdim=True)
    b = c_full / c_full.norm(dim=1, keepdim=True)
    expected = 0.0
    for k in range(3):
        logits = [float(a[k] @ b[j]) / tau for j in range(3)]
        expected += -(logits[k] - math.log(sum(math.exp(v) for v in logits)))
    expected /= 3
    assert float(mopoe_infonce(c_sub, c_full, tau)) == pytest.approx(expected, rel=1e-6)
    # identical, well separated embeddings give a small loss; shuffled ones a large one
    z = torch.eye(4) * 10
    assert float(mopoe_infonce(z, z, 0.1, "euclidean")) < 1e-6
    assert float(mopoe_infonce(z, z.flip(0), 0.1, "euclidean")) > 10


def test_kl_standard_normal_matches_torch_distributions():
    mean, logvar = torch.randn(6, 5), torch.randn(6, 5)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5), torch.ones(5))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(kl_standard_normal(Posterior(mean, logvar)), expected)


def test_image_likelihoods_match_torch_distributions():
    x, loc = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)
    lap = torch.distributions.Laplace(loc, 0.1).log_prob(x).flatten(1).sum(-1)
    torch.testing.assert_close(laplace_log_likelihood(x, loc, 0.1), lap)
    gau = torch.distributions.Normal(loc, 0.2).log_prob(x).flatten(1).sum(-1)
    torch.testing.assert_close(gaussian_log_likelihood(x, loc, torch.tensor(0.2)), gau)


def test_categorical_log_likelihood_and_elbo():
    logits = torch.randn(2, 4, 7)
    tokens = torch.randint(0, 7, (2, 4))
    expected = torch.stack(
        [sum(F.log_softmax(logits[b, t], -1)[tokens[b, t]] for t in range(4)) for b in range(2)]
    )
    ll = categorical_log_likelihood(logits, tokens)
    torch.testing.assert_close(ll, expected)
    torch.testing.assert_close(elbo(ll, torch.tensor([1.0, 2.0])), expected - torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="do not match"):
        categorical_log_likelihood(logits, tokens[:, :3])


def test_discriminator_bce_and_mi_estimate_hand_computed():
    lj, lm = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])

    def sig(v):
        return 1 / (1 + math.exp(-v))

    expected = -np.mean([math.log(sig(2.0)), math.log(sig(-1.0))]) - np.mean(
        [math.log(1 - sig(0.5)), math.log(1 - sig(-3.0))]
    )
    assert float(discriminator_bce(lj, lm)) == pytest.approx(expected, rel=1e-6)
    # Eq. 9.8: E[log D / (1 - D)] with D = sigmoid(l) is the mean logit
    d = torch.sigmoid(lj)
    assert float(mutual_information_estimate(lj)) == pytest.approx(
        float(torch.log(d / (1 - d)).mean()), rel=1e-6
    )


def test_bayes_optimal_discriminator_recovers_mutual_information():
    """For jointly Gaussian (c, m) with correlation rho, the optimal D has logit
    log q(c, m) / (q(c) q(m)), so Eq. 9.8 equals I = -0.5 log(1 - rho^2)."""
    rho = 0.8
    g = torch.Generator().manual_seed(0)
    c = torch.randn(400000, generator=g, dtype=torch.float64)
    m = rho * c + math.sqrt(1 - rho**2) * torch.randn(400000, generator=g, dtype=torch.float64)

    def log_ratio(c, m):
        det = 1 - rho**2
        joint = -0.5 * (c**2 - 2 * rho * c * m + m**2) / det - 0.5 * math.log(det)
        return joint + 0.5 * (c**2 + m**2)

    assert float(mutual_information_estimate(log_ratio(c, m))) == pytest.approx(
        -0.5 * math.log(1 - rho**2), rel=0.01
    )
    # on permuted pairs the mean log-ratio is -KL(q(c) q(m) || q(c, m)) < 0
    m_perm = permute_pairs(m, g)
    assert float(log_ratio(c, m_perm).mean()) < 0


def test_permute_pairs_is_a_permutation():
    m = torch.arange(100.0).unsqueeze(1)
    p = permute_pairs(m, torch.Generator().manual_seed(3))
    assert sorted(p.squeeze(1).tolist()) == m.squeeze(1).tolist()
    assert not torch.equal(p, m)


def test_poe_subsets_cover_powerset_shapes():
    """PoE of every non-empty subset of 3 experts, batched with masks, equals the unmasked PoE
    of the selected experts."""
    torch.manual_seed(1)
    mean, logvar = torch.randn(1, 3, 2), torch.randn(1, 3, 2)
    for r in (1, 2, 3):
        for subset in itertools.combinations(range(3), r):
            mask = torch.zeros(1, 3, dtype=torch.bool)
            mask[0, list(subset)] = True
            a = poe(mean, logvar, mask)
            b = poe(mean[:, list(subset)], logvar[:, list(subset)])
            torch.testing.assert_close(a.mean, b.mean)
            torch.testing.assert_close(a.logvar, b.logvar)


def test_normalised_hsic_separates_dependent_from_independent_batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=g)
    independent = float(normalised_hsic(x, torch.randn(256, 2, generator=g)))
    noisy_copy = float(normalised_hsic(x, x[:, :2] + 0.3 * torch.randn(256, 2, generator=g)))
    nonlinear = float(normalised_hsic(x, torch.stack([x[:, 0] ** 2, torch.sin(3 * x[:, 1])], 1)))
    assert 0 <= independent < 0.05
    assert noisy_copy > 0.5
    assert nonlinear > 3 * independent
    # a dependence measure the encoder cannot lower by rescaling its code
    assert float(normalised_hsic(x, 100 * x)) == pytest.approx(1.0, abs=1e-5)
    assert float(normalised_hsic(x, x.flip(0))) < 0.05


def test_whitening_exposes_a_dependence_hidden_in_a_direction_of_small_variance():
    """What an encoder does against HSIC at the median bandwidth (docs/dmvae/penalty_input_toy.json):
    keep the content in a direction of tiny spread next to a wide one. The plain kernel hardly
    sees it; after whitening every direction counts alike and it is plain to see."""
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 4, (256,), generator=g).float()
    content = torch.stack([torch.cos(k * math.pi / 2), torch.sin(k * math.pi / 2)], 1)
    wide = 10 * torch.randn(256, 1, generator=g)
    hidden = torch.cat([wide, wide + 0.3 * k[:, None]], 1)  # k only in the narrow difference
    white = whiten(hidden)
    # unit covariance up to the ridge that keeps gradients finite (1e-3 of the mean variance)
    evals = torch.linalg.eigvalsh(white.T @ white / 255)
    assert float(evals.max()) == pytest.approx(1.0, abs=0.01) and float(evals.min()) > 0.3
    assert float(normalised_hsic(content, hidden)) < 0.05
    assert float(normalised_hsic(content, white)) > 0.3
    # and whitening does not invent a dependence where there is none
    assert float(normalised_hsic(content, whiten(torch.randn(256, 2, generator=g)))) < 0.05


def test_posterior_penalties_see_content_carried_only_in_the_log_variances():
    """At full scale a probe read x/y from m_img's log-variances (docs/dmvae/README.md): content
    in how noisy the draws are, with the means free of it. ``both`` (draw + whitened means)
    hardly sees that; ``posterior`` and ``all`` look at the log-variances and do."""
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 4, (256,), generator=g).float()
    content = torch.stack([torch.cos(k * math.pi / 2), torch.sin(k * math.pi / 2)], 1)
    mean = torch.randn(256, 4, generator=g)
    logvar = torch.randn(256, 4, generator=g) * 0.1
    logvar[:, 0] += k - 6.0  # the cell k sets the noise of one dimension, tiny next to the mean's spread
    q = Posterior(mean, logvar)
    draw = mean + (0.5 * logvar).exp() * torch.randn(256, 4, generator=g)
    both = float(hsic_penalty(content, q, draw, "both"))
    posterior = float(hsic_penalty(content, q, draw, "posterior"))
    every = float(hsic_penalty(content, q, draw, "all"))
    assert both < 0.1
    assert posterior > both + 0.2 and every > both + 0.2
    # and with the content nowhere in q, no penalty finds it
    q_free = Posterior(mean, torch.randn(256, 4, generator=g) * 0.1 - 6.0)
    for which in ("both", "posterior", "all"):
        assert float(hsic_penalty(content, q_free, draw, which)) < 0.15
