"""What the DMVAE's evaluation, generation and critic need of a trained model.

Stage 2 (:class:`mmcl.dmvae.stage2.SpecificModule`) and every baseline
(:class:`mmcl.dmvae.baselines.BaselineModule`: MVAE, MMVAE, MoPoE, MMVAE+) implement
:class:`EvaluatedModel`; ``mmcl dmvae eval`` / ``generate`` take either through it, so a new model
is evaluated the same way once it has these members.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from mmcl.encoders import Posterior


@runtime_checkable
class ContentModel(Protocol):
    """The shared-latent encoders and how the model aggregates them."""

    hparams: Any  # .prior_expert: whether the PoE includes the N(0, I) expert

    def experts(self, image: torch.Tensor, text: torch.Tensor) -> Posterior:
        """The unimodal posteriors q(c | x_i), stacked ``(B, M, d)``."""
        ...

    def aggregate(self, experts: Posterior) -> Posterior:
        """The full-set posterior from the experts (PoE, or the mixture's moment match)."""
        ...


@runtime_checkable
class EvaluatedModel(Protocol):
    """A trained multimodal generative model as the evaluation sees it."""

    modalities: list[str]
    specific_sizes: dict[str, int]  # size of m_i per modality (0: none)
    content_model: ContentModel

    def inputs(self, modality: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder input, likelihood target) of ``modality`` in ``batch``."""
        ...

    def encode_specific(self, modality: str, x: torch.Tensor) -> Posterior:
        """q(m_i | x_i)."""
        ...

    def content(
        self, batch: dict, generator: torch.Generator | None = None, use_cache: bool = False
    ) -> torch.Tensor:
        """The c the decoders were trained on, for ``batch``."""
        ...

    def generate(
        self,
        modality: str,
        content: torch.Tensor,
        specific: torch.Tensor,
        greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Images in [0, 1] ``(B, 3, H, W)`` or token ids ``(B, L)`` from (c, m_i)."""
        ...

    def vae_terms(
        self, modality: str, batch: dict, content: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-example ELBO terms of one modality given c (test ELBO)."""
        ...
