"""DMVAE objectives as pure functions of tensors (seed 003 ch. 9; seed 002 §3.2).

Stage 1 (content, shared inference network)
    * :func:`poe` -- product of diagonal Gaussian experts in closed form for any subset of
      modalities (seed 002 Eq. 3.5): precisions add, the mean is the precision-weighted mean.
    * :func:`sample_subsets` -- a non-empty subset A of the M modalities per example, uniform
      over the powerset P(M) \\ {} (Eq. 9.1/9.2).
    * :func:`mopoe_infonce` -- Eq. 9.3: InfoNCE of ``c_A ~ q_PoE(c | x_A)`` against
      ``c ~ q_PoE(c | x)`` of the full set, positives on the diagonal.

Stage 2 (modality-specific conditional VAEs)
    * :func:`kl_standard_normal`, :func:`laplace_log_likelihood`,
      :func:`gaussian_log_likelihood`, :func:`categorical_log_likelihood` and :func:`elbo` --
      Eq. 9.4, ``E_q(m|x)[log p(x | c, m)] - KL(q(m | x) || N(0, I))`` per example.
    * :func:`permute_pairs` -- batch-wise permutation that turns joint samples (c, m) into
      samples of the product of marginals q(c) q(m).
    * :func:`discriminator_bce` -- Eq. 9.7, the binary cross-entropy of D on joint vs
      permuted pairs (D outputs logits; ``D = sigmoid(logit)``).
    * :func:`mutual_information_estimate` -- Eq. 9.8, ``I_hat(c; m) = E_joint[log D / (1 - D)]``,
      which for a logit-output D is the mean joint logit.
    * :func:`normalised_hsic` -- a critic-free dependence measure of the batch (not in the
      thesis; ``mi_penalty: hsic`` in stage 2, see mmcl/dmvae/stage2.py for why).

The thesis writes Eq. 9.3 as a sum over the batch; like ``mmcl.losses`` we average over it.
Log-likelihoods are summed over all observed dimensions (pixels x channels, token positions),
so the ELBO is in nats per example.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmcl.encoders import Posterior
from mmcl.losses import Similarity, infonce

LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- stage 1
def poe(
    mean: torch.Tensor,
    logvar: torch.Tensor,
    mask: torch.Tensor | None = None,
    prior_expert: bool = False,
) -> Posterior:
    """Product of Gaussian experts ``prod_{i in A} N(mean_i, exp(logvar_i))``, renormalised.

    Args:
        mean, logvar: ``(..., M, d)``, expert ``i`` along dimension -2.
        mask: ``(..., M)`` bool, which experts take part (the subset A); all when None.
        prior_expert: also multiply by N(0, I) (the MVAE's prior expert; off in the thesis' DMVAE).

    Returns the Gaussian ``(..., d)`` with precision ``sum_i T_i`` and mean
    ``sum_i T_i mean_i / sum_i T_i`` where ``T_i = exp(-logvar_i)``, computed in log space so
    that very confident and very vague experts do not overflow.
    """
    if mean.shape != logvar.shape or mean.ndim < 2:
        raise ValueError(
            f"poe expects mean and logvar of equal shape (..., M, d), got {tuple(mean.shape)} and "
            f"{tuple(logvar.shape)}"
        )
    log_precision = -logvar
    if mask is not None:
        if mask.shape != mean.shape[:-1]:
            raise ValueError(f"poe mask must have shape {tuple(mean.shape[:-1])}, got {tuple(mask.shape)}")
        if prior_expert is False and not bool(mask.any(-1).all()):
            raise ValueError("poe: an empty subset of experts has no product (every row needs one expert)")
        log_precision = log_precision.masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))
    if prior_expert:
        zeros = torch.zeros_like(mean[..., :1, :])
        log_precision = torch.cat([log_precision, zeros], dim=-2)  # N(0, 1): log precision 0
        mean = torch.cat([mean, zeros], dim=-2)
    total = torch.logsumexp(log_precision, dim=-2)
    weights = torch.softmax(log_precision, dim=-2)
    return Posterior((weights * mean).sum(-2), -total)


def sample_gaussian(posterior: Posterior, generator: torch.Generator | None = None) -> torch.Tensor:
    """Reparameterised sample ``mean + exp(logvar / 2) * eps``."""
    mean = posterior.mean
    if generator is None:
        eps = torch.randn_like(mean)
    else:  # a seeded generator draws on its own device, then the noise moves to the posterior's
        eps = torch.randn(mean.shape, generator=generator, device=generator.device, dtype=mean.dtype)
        eps = eps.to(mean.device)
    return mean + (0.5 * posterior.logvar).exp() * eps


def sample_subsets(
    batch_size: int, n_modalities: int, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """``(batch_size, n_modalities)`` bool masks, each row a subset drawn uniformly from the
    ``2^M - 1`` non-empty subsets of the modalities."""
    if n_modalities < 1:
        raise ValueError(f"n_modalities must be >= 1, got {n_modalities}")
    codes = torch.randint(1, 2**n_modalities, (batch_size,), generator=generator)
    bits = 2 ** torch.arange(n_modalities)
    return ((codes.unsqueeze(-1) & bits) > 0).to(device)


def mopoe_infonce(
    content_subset: torch.Tensor,
    content_full: torch.Tensor,
    tau: float | torch.Tensor = 1.0,
    similarity: Similarity = "cosine",
) -> torch.Tensor:
    """Eq. 9.3 averaged over the batch: row ``k`` of ``sim(c_A, c) / tau`` is classified as
    column ``k``; the negatives of ``c_A^k`` are the full-set embeddings ``c^l`` of the other
    examples."""
    return infonce(content_subset, content_full, tau=tau, similarity=similarity)


# ----------------------------------------------------------------------------- stage 2
def kl_standard_normal(posterior: Posterior) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` summed over the last dimension, per example."""
    mean, logvar = posterior
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def laplace_log_likelihood(x: torch.Tensor, loc: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """``sum log Laplace(x; loc, scale)`` over all but the batch dimension."""
    scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
    logp = -(x - loc).abs() / scale - torch.log(2 * scale)
    return logp.flatten(1).sum(-1)


def gaussian_log_likelihood(x: torch.Tensor, loc: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """``sum log N(x; loc, scale^2)`` over all but the batch dimension."""
    scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
    logp = -0.5 * ((x - loc) / scale).pow(2) - torch.log(scale) - 0.5 * LOG_2PI
    return logp.flatten(1).sum(-1)


IMAGE_LIKELIHOODS = {"laplace": laplace_log_likelihood, "gaussian": gaussian_log_likelihood}


def categorical_log_likelihood(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``sum_t log Cat(tokens_t; softmax(logits_t))`` over the ``L`` token positions.

    ``logits`` is ``(B, L, V)``, ``tokens`` ``(B, L)``. Without ``mask`` padding positions are
    scored too (a per-position decoder also models where a sentence ends); with a ``(B, L)``
    bool ``mask`` only the positions where it is True count (an autoregressive decoder stops at
    ``<eos>``, the padding after it follows).
    """
    if logits.shape[:2] != tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match tokens {tuple(tokens.shape)}")
    logp = F.log_softmax(logits.float(), dim=-1)
    per_token = logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    if mask is not None:
        per_token = per_token * mask.to(per_token.dtype)
    return per_token.sum(-1)


def elbo(log_likelihood: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """Eq. 9.4 per example: ``log p(x | c, m) - KL(q(m | x) || p(m))`` with one sample of m."""
    return log_likelihood - kl


def permute_pairs(m: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``m`` with its rows in a random order: pairing each ``c^k`` with ``m^{pi(k)}`` draws from
    the product of marginals q(c) q(m) (Eq. 9.5-9.7), as in Kim and Mnih's FactorVAE."""
    perm = torch.randperm(m.shape[0], generator=generator).to(m.device)
    return m[perm]


def discriminator_bce(logits_joint: torch.Tensor, logits_marginal: torch.Tensor) -> torch.Tensor:
    """Eq. 9.7: ``-E_joint[log D] - E_marginals[log(1 - D)]`` with ``D = sigmoid(logit)``."""
    return F.binary_cross_entropy_with_logits(
        logits_joint, torch.ones_like(logits_joint)
    ) + F.binary_cross_entropy_with_logits(logits_marginal, torch.zeros_like(logits_marginal))


def whiten(z: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The batch centred and decorrelated to unit covariance (ZCA, ``(cov + eps I)^(-1/2)``;
    differentiable). A Gaussian kernel at the median distance sees the directions of largest
    spread; whitened, every direction counts alike, so a dependence hidden in a direction of
    small variance -- which a probe reading standardised features finds -- is not invisible."""
    z = z.float() - z.float().mean(0, keepdim=True)
    cov = z.T @ z / max(1, z.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(
        cov
        + eps
        * cov.diagonal().mean().clamp_min(1e-8)
        * torch.eye(cov.shape[0], device=z.device, dtype=z.dtype)
    )
    return z @ evecs @ torch.diag(evals.clamp_min(1e-12).rsqrt()) @ evecs.T


def normalised_hsic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Normalised Hilbert-Schmidt independence criterion of the batch, in [0, 1]:
    ``HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y))`` with Gaussian kernels whose bandwidths are the
    median pairwise distances (Gretton et al. 2005; normalised as in centred kernel alignment,
    Cortes et al. 2012). It is 0 when x and y are independent (for characteristic kernels, in the
    population), needs no critic, and is invariant to rescaling either argument."""

    def centred_gram(z: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(z, z).pow(2)
        n = z.shape[0]
        bandwidth = d2.detach()[~torch.eye(n, dtype=torch.bool, device=z.device)].median().clamp_min(1e-8)
        k = torch.exp(-d2 / bandwidth)
        return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()

    kx, ky = centred_gram(x.float()), centred_gram(y.float())
    return (kx * ky).sum() / ((kx * kx).sum() * (ky * ky).sum()).sqrt().clamp_min(1e-12)


def mutual_information_estimate(logits_joint: torch.Tensor) -> torch.Tensor:
    """Eq. 9.8: ``E_joint[log D / (1 - D)]``; with ``D = sigmoid(l)``, ``log D/(1-D) = l``."""
    return logits_joint.mean()
