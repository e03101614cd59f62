"""Contrastive training with Lightning: module (encoders + loss + optimiser), callbacks, CLI."""

from mmcl.train.module import ContrastiveModule

__all__ = ["ContrastiveModule"]
