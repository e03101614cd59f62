"""Negatives from every rank for data-parallel contrastive learning (SPEC §3, Eq. 8.2).

With DDP each of k ranks encodes its local batch of B/k pairs. To contrast against all B
pairs, as one device with batch B would, every rank gathers the embeddings of all ranks with
:func:`gather_with_grad` and evaluates the *global* loss ``infonce_symmetric(Z1, Z2)`` on the
full (B, d) matrices. Gradients flow back through the gather: its backward sums the gradient
that every rank's (identical) global loss sends to each embedding and returns each rank its own
rows. So each rank holds k times the gradient of the global loss with respect to its local
parameters' contribution, and DDP's averaging over k ranks leaves exactly the one-device
gradient (tested in tests/mmcl/test_distributed.py against a single process).

Batch-norm statistics are per rank unless the trainer converts them (``sync_batchnorm``,
GPU only in PyTorch); that is the one way a k-rank step can differ from a one-device step.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from mmcl.losses import LOSSES, Similarity


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (equal shape on every rank) from all ranks in rank order, keeping
    the autograd graph to the local rows. Identity without a process group."""
    rank, size = world()
    if size == 1:
        return x
    return _GatherWithGrad.apply(x)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated in rank order, detached (for metrics)."""
    _, size = world()
    if size == 1:
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts)


def global_contrastive_loss(
    z_image: torch.Tensor,
    z_text: torch.Tensor,
    tau: float | torch.Tensor = 1.0,
    similarity: Similarity = "cosine",
    loss: str = "infonce_symmetric",
) -> torch.Tensor:
    """The contrastive loss over the global batch: local embeddings of this rank in,
    ``LOSSES[loss](gather(z_image), gather(z_text))`` out (identical on every rank)."""
    try:
        fn = LOSSES[loss]
    except KeyError:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}") from None
    return fn(gather_with_grad(z_image), gather_with_grad(z_text), tau=tau, similarity=similarity)
