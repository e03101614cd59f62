"""DMVAE stage 1: the shared inference network q(c | x) trained with MoPoE-InfoNCE (seed 003 §9.2.2).

Each modality has a Gaussian posterior q(c | x_i) (an encoder of ``mmcl.encoders`` with a
Gaussian head). The posterior of any subset A is the product of experts ``q_PoE(c | x_A)``
(closed form, :func:`mmcl.dmvae.losses.poe`); the variational joint posterior is the MoPoE
mixture over all non-empty subsets (Eq. 9.1/9.2). Training minimises Eq. 9.3: per example a
subset A is drawn uniformly, ``c_A ~ q_PoE(c | x_A)`` is contrasted against ``c ~ q_PoE(c | x)``
of the full set, with the other examples' full-set embeddings as negatives (gathered from every
rank under DDP, as in ``mmcl.distributed``).

:class:`ContentModule` composes the two encoders, the loss and Adam; nothing else.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
import torch

from mmcl.distributed import gather_with_grad
from mmcl.dmvae.data import MODALITIES
from mmcl.dmvae.losses import mopoe_infonce, poe, sample_gaussian, sample_subsets
from mmcl.dmvae.networks import ImageBackbone, gaussian_image_encoder, gaussian_text_encoder
from mmcl.encoders import Posterior, check_encoding_size
from mmcl.losses import infonce_symmetric, similarity_matrix
from mmcl.optim import OPTIMIZERS, ResumableRNG, check_optimizer, check_schedule, scheduled

OBJECTIVES = ("mopoe", "mopoe_pairwise")


class ContentModule(ResumableRNG, pl.LightningModule):
    """Stage 1: q(c | x_image), q(c | x_text), PoE/MoPoE and the MoPoE-InfoNCE loss (Eq. 9.3).

    Args:
        encoding_size: dimension of the content embedding c.
        vocabulary, max_text_length: the dataset's tokenizer (linked from the data module and
            kept in the checkpoint; stage 2 and eval refuse a dataset with another vocabulary).
        image_resolution: side of the square images (linked from the manifest).
        image_backbone: 'convnet' (CPU-sized, :class:`~mmcl.dmvae.networks.ConvImageBackbone`)
            or 'resnet18' (the thesis' encoder, ``mmcl.encoders``).
        image_hidden_size: backbone output features before the Gaussian head.
        image_base_channels: channels of the first ConvNet layer (doubled per layer, max 256).
        image_global_max_pool: the ConvNet also sees its last feature map max-pooled over space
            (what made the demo's contrastive encoder learn shape: ``mmcl fit``'s
            ``model.image_global_max_pool``).
        text_backbone, text_embedding_dim, text_fbase, transformer_config: the text encoder of
            ``mmcl.encoders`` ('convnet' is the "4-layer ConvNet" of Table A.2b).
        similarity: 'cosine' or 'euclidean' (negative squared distance).
        tau: temperature of Eq. 9.3.
        prior_expert: include N(0, I) as an extra expert in every product (off in the thesis).
        objective: 'mopoe' (Eq. 9.3, the thesis) or 'mopoe_pairwise': Eq. 9.3 plus the symmetric
            InfoNCE between the two unimodal experts' draws (what ``mmcl fit`` trains). When one
            expert is much more precise (here text: log-variance ~ -13 against ~ -9), the full-set
            PoE is nearly that expert, so for A = {text} and A = {both} the positive of Eq. 9.3 is
            nearly c_A itself and only the A = {image} third of the batch pulls the image expert
            towards the text; the pairwise term contrasts the experts directly. What it measured on
            the demo's data: docs/dmvae/README.md.
        optimizer: 'adam' (weight decay as L2 in the gradient) or 'adamw' (decoupled), as in
            ``mmcl fit``.
        lr, weight_decay, lr_schedule, warmup_steps: the optimiser and its schedule.
    """

    def __init__(
        self,
        encoding_size: int = 16,
        vocabulary: list[str] | None = None,
        max_text_length: int = 35,
        image_resolution: int = 64,
        image_backbone: ImageBackbone = "convnet",
        image_hidden_size: int = 256,
        image_base_channels: int = 32,
        image_global_max_pool: bool = False,
        text_backbone: Literal["convnet", "transformer"] = "convnet",
        text_embedding_dim: int = 128,
        text_fbase: int = 25,
        transformer_config: dict[str, Any] | None = None,
        similarity: Literal["cosine", "euclidean"] = "cosine",
        tau: float = 0.1,
        prior_expert: bool = False,
        objective: Literal["mopoe", "mopoe_pairwise"] = "mopoe",
        optimizer: Literal["adam", "adamw"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        warmup_steps: int = 0,
    ):
        super().__init__()
        check_encoding_size(encoding_size)
        if vocabulary is None or len(vocabulary) < 4:
            raise ValueError("stage1.model.vocabulary is required (linked from the dataset manifest)")
        if similarity not in ("cosine", "euclidean"):
            raise ValueError(f"stage1.model.similarity must be 'cosine' or 'euclidean', got {similarity!r}")
        if not tau > 0:
            raise ValueError(f"stage1.model.tau must be > 0, got {tau}")
        if objective not in OBJECTIVES:
            raise ValueError(f"stage1.model.objective must be one of {OBJECTIVES}, got {objective!r}")
        check_schedule(lr, lr_schedule, warmup_steps, "stage1.model")
        check_optimizer(optimizer, "stage1.model")
        self.save_hyperparameters()
        self.image_encoder = gaussian_image_encoder(
            encoding_size,
            image_resolution,
            image_backbone,
            image_hidden_size,
            image_base_channels,
            image_global_max_pool,
        )
        self.text_encoder = gaussian_text_encoder(
            encoding_size,
            len(vocabulary),
            max_text_length,
            text_backbone,
            text_embedding_dim,
            text_fbase,
            transformer_config,
        )

    @property
    def encoding_size(self) -> int:
        return int(self.hparams.encoding_size)

    # ------------------------------------------------------------------ inference
    def expert(self, modality: str, x: torch.Tensor) -> Posterior:
        """The unimodal posterior q(c | x_modality)."""
        if modality == "image":
            return self.image_encoder(x)
        if modality == "text":
            return self.text_encoder(x)
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")

    def experts(self, image: torch.Tensor, text: torch.Tensor) -> Posterior:
        """Both unimodal posteriors stacked as ``(B, 2, d)`` in the order of ``MODALITIES``."""
        pi, pt = self.expert("image", image), self.expert("text", text)
        return Posterior(torch.stack([pi.mean, pt.mean], 1), torch.stack([pi.logvar, pt.logvar], 1))

    def content(self, image: torch.Tensor | None = None, text: torch.Tensor | None = None) -> Posterior:
        """q_PoE(c | x_A) for the modalities given (A = those that are not None)."""
        given = {m: x for m, x in zip(MODALITIES, (image, text)) if x is not None}
        if not given:
            raise ValueError("content() needs at least one modality")
        posts = [self.expert(m, x) for m, x in given.items()]
        mean = torch.stack([p.mean for p in posts], 1)
        logvar = torch.stack([p.logvar for p in posts], 1)
        return poe(mean, logvar, prior_expert=self.hparams.prior_expert)

    def aggregate(self, experts: Posterior) -> Posterior:
        """q_PoE(c | x) of the experts stacked in ``experts``."""
        return poe(experts.mean, experts.logvar, prior_expert=self.hparams.prior_expert)

    def mopoe_sample(
        self, experts: Posterior, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c, mask)``: per example a uniform non-empty subset A and ``c ~ q_PoE(c | x_A)``."""
        mask = sample_subsets(experts.mean.shape[0], len(MODALITIES), generator, experts.mean.device)
        post = poe(experts.mean, experts.logvar, mask, self.hparams.prior_expert)
        return sample_gaussian(post, generator), mask

    # ------------------------------------------------------------------ training
    def _loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, Posterior]:
        experts = self.experts(batch["image"], batch["text"])
        content_subset, _ = self.mopoe_sample(experts, generator)
        full = poe(experts.mean, experts.logvar, prior_expert=self.hparams.prior_expert)
        content_full = sample_gaussian(full, generator)
        with torch.autocast(device_type=content_full.device.type, enabled=False):
            loss = mopoe_infonce(
                gather_with_grad(content_subset.float()),
                gather_with_grad(content_full.float()),
                tau=self.hparams.tau,
                similarity=self.hparams.similarity,
            )
            if self.hparams.get("objective", "mopoe") == "mopoe_pairwise":
                draws = sample_gaussian(experts, generator).float()  # (B, 2, d): one draw per expert
                loss = loss + infonce_symmetric(
                    gather_with_grad(draws[:, 0]),
                    gather_with_grad(draws[:, 1]),
                    tau=self.hparams.tau,
                    similarity=self.hparams.similarity,
                )
        return loss, experts

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, experts = self._loss(batch)
        n = batch["image"].shape[0]
        self.log("stage1/train_loss", loss, on_step=True, prog_bar=True, batch_size=n)
        self.log("stage1/logvar_image", experts.logvar[:, 0].mean().detach(), on_step=True, batch_size=n)
        self.log("stage1/logvar_text", experts.logvar[:, 1].mean().detach(), on_step=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # a fixed generator per batch: the validation loss is comparable between evaluations
        generator = torch.Generator().manual_seed(batch_idx)
        loss, experts = self._loss(batch, generator)
        n = batch["image"].shape[0]
        sim = similarity_matrix(experts.mean[:, 1], experts.mean[:, 0], self.hparams.similarity)
        top1 = (sim.argmax(1) == torch.arange(n, device=sim.device)).float().mean()
        self.log("stage1/val_loss", loss, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("stage1/val_text_to_image_top1", top1, on_epoch=True, batch_size=n, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.save_rng(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.load_rng(checkpoint)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = OPTIMIZERS[hp.optimizer](self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        return scheduled(optimizer, self, "stage1.trainer")
