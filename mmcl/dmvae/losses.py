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


def laplace_log_density(x: torch.Tensor, loc: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """``log Laplace(x; loc, scale)`` elementwise."""
    scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
    return -(x - loc).abs() / scale - torch.log(2 * scale)


def gaussian_log_density(x: torch.Tensor, loc: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """``log N(x; loc, scale^2)`` elementwise."""
    scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
    return -0.5 * ((x - loc) / scale).pow(2) - torch.log(scale) - 0.5 * LOG_2PI


def laplace_log_likelihood(x: torch.Tensor, loc: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """``sum log Laplace(x; loc, scale)`` over all but the batch dimension."""
    return laplace_log_density(x, loc, scale).flatten(1).sum(-1)


def gaussian_log_likelihood(x: torch.Tensor, loc: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """``sum log N(x; loc, scale^2)`` over all but the batch dimension."""
    return gaussian_log_density(x, loc, scale).flatten(1).sum(-1)


def optimal_image_scale(
    x: torch.Tensor, loc: torch.Tensor, likelihood: str = "laplace", floor: float = 1e-3
) -> torch.Tensor:
    """The maximum-likelihood scale of each image and channel, shape (B, C, 1, 1): ``mean |x -
    loc|`` over the pixels for a Laplace, the root mean square for a Gaussian -- the sigma-VAE's
    "optimal sigma" (Rybkin et al. 2021, arXiv 2006.13202), per image and channel instead of
    per batch. ``floor`` keeps the log finite."""
    err = x - loc
    scale = (
        err.abs().mean((2, 3), keepdim=True)
        if likelihood == "laplace"
        else err.pow(2).mean((2, 3), keepdim=True).sqrt()
    )
    return scale.clamp_min(floor)


def foreground_mask(x: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """(B, 1, H, W): 1 where a pixel's colour differs from the median of its image's 2-pixel
    border by more than ``threshold`` in some channel, else 0 -- the object and whatever else
    stands out from the backdrop (on the demo renders about 14 % of the pixels: the object and
    the spotlight's bright patch)."""
    border = torch.cat([x[..., :2, :].flatten(2), x[..., -2:, :].flatten(2),
                        x[..., :, :2].flatten(2), x[..., :, -2:].flatten(2)], 2)  # fmt: skip
    background = border.median(2).values[..., None, None]
    return ((x - background).abs().amax(1, keepdim=True) > threshold).float()


def image_log_likelihood(
    x: torch.Tensor,
    loc: torch.Tensor,
    likelihood: str = "laplace",
    scale: float | torch.Tensor = 0.1,
    optimal_scale: bool = False,
    foreground_weight: float = 0.0,
) -> torch.Tensor:
    """Per-image ``sum log p(x | loc)`` of the image decoders' objective.

    ``optimal_scale`` replaces ``scale`` by :func:`optimal_image_scale` of each image and channel;
    ``foreground_weight`` W multiplies the log-density of the pixels :func:`foreground_mask` marks
    by ``1 + W``. With either, the sum is an objective, not a normalised density of x: the scale
    and the weights are read off x itself. What they buy on the demo data is measured in
    docs/dmvae/README.md (decoder families and likelihoods).
    """
    if optimal_scale:
        scale = optimal_image_scale(x, loc, likelihood)
    logp = IMAGE_LOG_DENSITIES[likelihood](x, loc, scale)
    if foreground_weight:
        logp = logp * (1 + foreground_weight * foreground_mask(x))
    return logp.flatten(1).sum(-1)


IMAGE_LOG_DENSITIES = {"laplace": laplace_log_density, "gaussian": gaussian_log_density}
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


# what of q(m | x) :func:`hsic_penalty` can see (stage 2's penalty_input)
PENALTY_INPUTS = ("sample", "mean", "whitened_mean", "both", "posterior", "all")


def hsic_penalty(
    content: torch.Tensor, q_m: Posterior, draw: torch.Tensor, which: str = "sample"
) -> torch.Tensor:
    """The normalised HSIC of c with what ``which`` names of q(m | x) (stage 2's
    ``penalty_input``): ``sample`` the draw, ``mean`` the means, ``whitened_mean`` the whitened
    batch of means, ``both`` draw + whitened means, ``posterior`` draw + the whitened batch of
    (mean, log-variance) pairs, ``all`` draw + whitened means + whitened log-variances. A probe
    can read content from how noisy the draws are (the log-variances) as well as from where they
    are centred; a draw alone hides a dependence carried in the variance among the noise."""
    if which not in PENALTY_INPUTS:
        raise ValueError(f"penalty_input must be {'|'.join(PENALTY_INPUTS)}, got {which!r}")
    if which == "mean":
        return normalised_hsic(content, q_m.mean)
    if which == "whitened_mean":
        return normalised_hsic(content, whiten(q_m.mean))
    penalty = normalised_hsic(content, draw)
    if which == "both":
        return penalty + normalised_hsic(content, whiten(q_m.mean))
    if which == "posterior":
        return penalty + normalised_hsic(content, whiten(torch.cat([q_m.mean, q_m.logvar], dim=-1)))
    if which == "all":
        return (
            penalty
            + normalised_hsic(content, whiten(q_m.mean))
            + normalised_hsic(content, whiten(q_m.logvar))
        )
    return penalty


def mutual_information_estimate(logits_joint: torch.Tensor) -> torch.Tensor:
    """Eq. 9.8: ``E_joint[log D / (1 - D)]``; with ``D = sigmoid(l)``, ``log D/(1-D) = l``."""
    return logits_joint.mean()


# ----------------------------------------------------------------------------- joint multimodal VAEs
# The objectives of the baselines (mmcl.dmvae.baselines), each split into one share per
# modality, ``L = sum_m L_m``, so impartial optimisation can take per-modality gradients (seed 001).
# ``loglik(m, z, w)`` is log p(x_m | z, w) per example (w None without modality-specific latents),
# ``sample(posterior)`` a reparameterised draw; every expert sits on dimension 1 of ``experts``
# in the order of ``modalities``. K = 1 draw throughout (the MMVAE papers train importance-
# weighted / DReG bounds with K > 1; see the module docstring of mmcl.dmvae.baselines).
def log_normal(z: torch.Tensor, posterior: Posterior) -> torch.Tensor:
    """``log N(z; mean, exp(logvar))`` summed over the last dimension."""
    mean, logvar = posterior
    return -0.5 * (LOG_2PI + logvar + (z - mean).pow(2) / logvar.exp()).sum(-1)


def mixture_log_density(z: torch.Tensor, experts: Posterior) -> torch.Tensor:
    """``log (1/M) sum_m N(z; mean_m, exp(logvar_m))`` for experts ``(B, M, d)`` and z ``(B, d)``."""
    per_expert = log_normal(z.unsqueeze(1), experts)
    return torch.logsumexp(per_expert, dim=1) - math.log(experts.mean.shape[1])


def _expert(experts: Posterior, i: int) -> Posterior:
    return Posterior(experts.mean[:, i], experts.logvar[:, i])


def mvae_objective(experts: Posterior, modalities, loglik, sample, prior_expert: bool = True) -> dict:
    """MVAE (Wu & Goodman 2018) with sub-sampled ELBOs: the full set's ELBO under the product of
    experts plus each modality's own ELBO under its expert (both with the prior expert):
    ``sum_j log p(x_j | z) - KL(q_PoE(z | x)) + sum_i [log p(x_i | z_i) - KL(q_PoE(z | x_i))]``;
    modality m's share holds its log-likelihoods and 1/M of the joint KL."""
    n = len(modalities)
    full = poe(experts.mean, experts.logvar, prior_expert=prior_expert)
    z = sample(full)
    kl_full = kl_standard_normal(full)
    out = {}
    for i, m in enumerate(modalities):
        mask = torch.zeros(experts.mean.shape[:2], dtype=torch.bool, device=experts.mean.device)
        mask[:, i] = True
        own = poe(experts.mean, experts.logvar, mask, prior_expert)
        out[m] = loglik(m, z, None) - kl_full / n + loglik(m, sample(own), None) - kl_standard_normal(own)
    return out


def mmvae_objective(experts: Posterior, modalities, loglik, sample, specific: dict | None = None) -> dict:
    """MMVAE (Shi et al. 2019), stratified over the experts with one draw each:
    ``1/M sum_k [sum_j log p(x_j | z_k) + log p(z_k) - log q_MoE(z_k | x)]``, z_k ~ q(z | x_k).

    With ``specific`` (modality -> q(w_m | x_m)) it is MMVAE+ (Palumbo et al. 2023): x_j is
    decoded from (z_k, w_j) with w_j ~ q(w_j | x_j) when j = k and w~_j ~ N(0, I) (the auxiliary
    prior, fixed here) otherwise, and each ``KL(q(w_m | x_m) || N(0, I))`` is subtracted once.
    Modality m's share: its log-likelihoods, 1/M of the z terms, its own w's KL."""
    n = len(modalities)
    zs = [sample(_expert(experts, k)) for k in range(n)]
    z_terms = (
        sum(
            log_normal(z, Posterior(torch.zeros_like(z), torch.zeros_like(z)))
            - mixture_log_density(z, experts)
            for z in zs
        )
        / n
    )
    own_w = {m: sample(q) for m, q in (specific or {}).items()}
    out = {}
    for j, m in enumerate(modalities):
        share = z_terms / n
        for k, z in enumerate(zs):
            w = None
            if specific is not None:
                q = specific[m]
                w = (
                    own_w[m]
                    if j == k
                    else sample(Posterior(torch.zeros_like(q.mean), torch.zeros_like(q.mean)))
                )
            share = share + loglik(m, z, w) / n
        if specific is not None:
            share = share - kl_standard_normal(specific[m])
        out[m] = share
    return out


def mopoe_objective(experts: Posterior, modalities, loglik, sample, mask: torch.Tensor) -> dict:
    """MoPoE-VAE (Sutter et al. 2021): per example the subset ``mask`` (drawn uniformly from the
    non-empty subsets) and ``sum_j log p(x_j | z) - KL(q_PoE(z | x_A))``, z ~ q_PoE(z | x_A): an
    unbiased one-draw estimate of the average over subsets of their ELBOs."""
    post = poe(experts.mean, experts.logvar, mask)
    z = sample(post)
    kl = kl_standard_normal(post) / len(modalities)
    return {m: loglik(m, z, None) - kl for m in modalities}


# ----------------------------------------------------------------------------- impartial optimisation
def gradient_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0, eps=1e-12))


def pcgrad(grads: list[torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad (Yu et al. 2020): each task gradient, in random order, loses its component along
    every other task gradient it conflicts with (negative dot product); the results are summed."""
    out = []
    for i, g in enumerate(grads):
        g = g.clone()
        others = [j for j in torch.randperm(len(grads), generator=generator).tolist() if j != i]
        for j in others:
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g = g - dot / grads[j].pow(2).sum().clamp_min(1e-20) * grads[j]
        out.append(g)
    return torch.stack(out).sum(0)


def imtl_g(grads: list[torch.Tensor]) -> torch.Tensor:
    """IMTL-G (Liu et al. 2021), closed form: weights alpha (sum 1) so that the aggregate
    ``sum_t alpha_t g_t`` has equal projections on every task's unit gradient u_t;
    ``alpha_{2:T} = g_1 U^T (D U^T)^-1`` with rows ``D_t = g_1 - g_t``, ``U_t = u_1 - u_t``.
    Scaled by T so that equal, aligned gradients give their plain sum."""
    g = torch.stack(grads)
    u = g / g.norm(dim=1, keepdim=True).clamp_min(1e-20)
    d, uu = g[0] - g[1:], u[0] - u[1:]
    alpha_rest = torch.linalg.lstsq((d @ uu.T).T, (g[0] @ uu.T).unsqueeze(-1)).solution.squeeze(-1)
    alpha = torch.cat([1 - alpha_rest.sum().unsqueeze(0), alpha_rest])
    return len(grads) * (alpha.unsqueeze(1) * g).sum(0)
