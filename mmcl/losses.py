"""Contrastive losses as pure functions of embedding tensors.

* ``infonce`` -- one direction of Eq. 8.1 (seed 003): cross-entropy of each row's positive
  against all columns of the other modality.
* ``infonce_symmetric`` -- Eq. 8.2: the average of both directions (image->text, text->image).
* ``nt_xent`` -- the SimCLR variant used by the upstream code, which additionally uses
  image-image and text-text negatives.
* ``fresh_negatives_symmetric`` -- the loss of the upstream numerical simulation
  (``LpSimCLRLoss`` in imantdaunhawer/multimodal-contrastive-learning ``utils/losses.py``, as
  ``main_mlp.py`` calls it): negatives from an independent fresh batch through the anchor's own
  encoder, the positive kept in the denominator, log-mean-exp; the H(g) estimator of Eq. 8.3.

Similarities: ``cosine`` (Multimodal3DIdent, Table A.2b) and ``euclidean``, the negative
squared Euclidean distance (numerical simulation, Table A.2a; Eq. 8.3 uses this form).
The thesis writes the loss as a sum over the batch; we average over it (the usual
normalisation), which only rescales the learning rate.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Similarity = Literal["cosine", "euclidean"]


def similarity_matrix(a: torch.Tensor, b: torch.Tensor, similarity: Similarity = "cosine") -> torch.Tensor:
    """``S[k, l] = sim(a_k, b_l)`` for row-wise embeddings ``a`` (K, d) and ``b`` (L, d)."""
    if similarity == "cosine":
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    if similarity == "euclidean":
        # -||a - b||^2 expanded; clamp guards tiny negative round-off on the diagonal.
        d2 = (a * a).sum(-1, keepdim=True) - 2 * a @ b.T + (b * b).sum(-1)[None, :]
        return -d2.clamp_min(0)
    raise ValueError(f"similarity must be 'cosine' or 'euclidean', got {similarity!r}")


def infonce(
    z1: torch.Tensor, z2: torch.Tensor, tau: float | torch.Tensor = 1.0, similarity: Similarity = "cosine"
) -> torch.Tensor:
    """Eq. 8.1 averaged over the batch: positives on the diagonal of sim(z1, z2)."""
    _check_pair(z1, z2)
    logits = similarity_matrix(z1, z2, similarity) / tau
    target = torch.arange(len(z1), device=z1.device)
    return F.cross_entropy(logits, target)


def infonce_symmetric(
    z1: torch.Tensor, z2: torch.Tensor, tau: float | torch.Tensor = 1.0, similarity: Similarity = "cosine"
) -> torch.Tensor:
    """Eq. 8.2: ``(L(z1 -> z2) + L(z2 -> z1)) / 2``."""
    _check_pair(z1, z2)
    logits = similarity_matrix(z1, z2, similarity) / tau
    target = torch.arange(len(z1), device=z1.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, tau: float | torch.Tensor = 1.0, similarity: Similarity = "cosine"
) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2K embeddings: each one's positive is its partner, its
    negatives are the other 2K - 2 embeddings of *both* modalities."""
    _check_pair(z1, z2)
    z = torch.cat([z1, z2])
    n = len(z1)
    logits = similarity_matrix(z, z, similarity) / tau
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def fresh_negatives(
    anchor: torch.Tensor, positive: torch.Tensor, fresh: torch.Tensor, tau: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """One direction of upstream's ``LpSimCLRLoss()`` (p = 2, squared distances, alpha = 0.5,
    log-mean-exp with the positive in the denominator), averaged over the batch:

    ``d(a_i, p_i) / tau + log((sum_j exp(-d(a_i, f_j) / tau) + exp(-d(a_i, p_i) / tau)) / (K + 1))``

    with ``d`` the squared Euclidean distance and ``f`` the encodings of an independent batch
    by the anchor's encoder. Equal to Eq. 8.3 (alignment + log-mean-exp uniformity) up to the
    positive's term in the denominator."""
    _check_pair(anchor, positive)
    _check_pair(anchor, fresh)
    pos = (anchor - positive).pow(2).sum(dim=1)
    neg = -similarity_matrix(anchor, fresh, "euclidean")
    logits = -torch.cat([neg, pos[:, None]], dim=1) / tau
    log_mean = torch.logsumexp(logits, dim=1) - torch.log(torch.tensor(float(logits.shape[1])))
    return (pos / tau + log_mean).mean()


def fresh_negatives_symmetric(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z1_fresh: torch.Tensor,
    z2_fresh: torch.Tensor,
    tau: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Upstream's symmetrised simulation loss (``main_mlp.py`` ``train_step``): the mean of
    ``fresh_negatives(z1, z2, z1_fresh)`` and ``fresh_negatives(z2, z1, z2_fresh)``, where
    ``z1_fresh = g_1(x_1')``, ``z2_fresh = g_2(x_2')`` encode a second, independent batch."""
    return 0.5 * (fresh_negatives(z1, z2, z1_fresh, tau) + fresh_negatives(z2, z1, z2_fresh, tau))


LOSSES = {"infonce_symmetric": infonce_symmetric, "nt_xent": nt_xent}


def _check_pair(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"expected two (batch, dim) embeddings of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
