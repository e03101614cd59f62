"""Symmetric InfoNCE training of an image and a text encoder (seed 003 §8.1.2, Eq. 8.2; Table A.2b).

:class:`ContrastiveModule` composes the two encoders (``mmcl.encoders``), the loss
(``mmcl.losses`` through ``mmcl.distributed.global_contrastive_loss``, so that with DDP the
negatives of every rank take part) and the optimiser; nothing else. Logging of throughput, the
online probe and retrieval metrics live in ``mmcl.train.callbacks``.

Temperature: fixed ``tau`` (1.0 in the thesis) or, with ``learnable_tau``, ``tau = exp(log_tau)``
initialised at ``tau`` and trained with the encoders.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import nn

from mmcl.distributed import global_contrastive_loss
from mmcl.encoders import ImageBackbone, check_encoding_size, image_encoder, text_encoder
from mmcl.losses import LOSSES
from mmcl.optim import OPTIMIZERS, check_optimizer, scheduled


class ContrastiveModule(pl.LightningModule):
    """Image encoder + text encoder + contrastive loss + Adam (or AdamW).

    Args:
        encoding_size: dimension of both representations (swept 1..10 in Fig. 8.3).
        vocabulary: the dataset's token vocabulary (linked from the data module; kept in the
            checkpoint so that ``mmcl embed`` can refuse a dataset with a different one).
        max_text_length: longest token sequence, ``<bos>``/``<eos>`` included (from the data module).
        hidden_size: image backbone output features before LeakyReLU + Linear (100 upstream).
        image_backbone: 'resnet18' (the thesis') or 'convnet' (a strided ConvNet, several times
            cheaper at 64x64: the CPU-sized demo's choice; see ``mmcl.encoders``).
        image_resolution: the images' side length (linked from the data module's manifest);
            the convnet backbone needs it.
        image_base_channels: width of the convnet backbone's first layer (doubling per layer).
        image_global_max_pool: the convnet backbone's Linear also sees its last feature map
            max-pooled over space (position-invariant features; see ``ConvImageBackbone``).
        text_backbone: 'convnet' (Table A.2b) or 'transformer'.
        text_embedding_dim, text_fbase: ConvNet token embedding size and base channel count.
        transformer_config: ``transformers`` config dict for the transformer backbone.
        loss: 'infonce_symmetric' (Eq. 8.2) or 'nt_xent' (upstream SimCLR variant).
        similarity: 'cosine' (Table A.2b) or 'euclidean'.
        tau: temperature (initial value when learnable).
        learnable_tau: train ``log_tau`` with the encoders.
        lr, betas, weight_decay: Adam (lr 1e-5 in the thesis).
        optimizer: 'adam' (the thesis'; ``weight_decay`` is an L2 term in the gradient) or
            'adamw' (decoupled weight decay, Loshchilov & Hutter).
        lr_schedule: 'constant' (thesis) or 'cosine' decay to 0 at ``trainer.max_steps``.
        warmup_steps: linear warm-up steps before the schedule.
        channels_last: run the ResNet in channels-last memory format.
        compile: ``torch.compile`` both encoders.
    """

    def __init__(
        self,
        encoding_size: int = 4,
        vocabulary: list[str] | None = None,
        max_text_length: int = 32,
        hidden_size: int = 100,
        image_backbone: ImageBackbone = "resnet18",
        image_resolution: int | None = None,
        image_base_channels: int = 32,
        image_global_max_pool: bool = False,
        text_backbone: Literal["convnet", "transformer"] = "convnet",
        text_embedding_dim: int = 128,
        text_fbase: int = 25,
        transformer_config: dict[str, Any] | None = None,
        loss: Literal["infonce_symmetric", "nt_xent"] = "infonce_symmetric",
        similarity: Literal["cosine", "euclidean"] = "cosine",
        tau: float = 1.0,
        learnable_tau: bool = False,
        lr: float = 1e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "adamw"] = "adam",
        lr_schedule: Literal["constant", "cosine"] = "constant",
        warmup_steps: int = 0,
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        check_encoding_size(encoding_size)
        if vocabulary is None or len(vocabulary) < 4:
            raise ValueError("model.vocabulary is required (it is linked from the data module's manifest)")
        if loss not in LOSSES:
            raise ValueError(f"model.loss must be one of {sorted(LOSSES)}, got {loss!r}")
        if similarity not in ("cosine", "euclidean"):
            raise ValueError(f"model.similarity must be 'cosine' or 'euclidean', got {similarity!r}")
        if not tau > 0:
            raise ValueError(f"model.tau must be > 0, got {tau}")
        check_optimizer(optimizer, "model")
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"model.lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        if warmup_steps < 0:
            raise ValueError(f"model.warmup_steps must be >= 0, got {warmup_steps}")
        self.save_hyperparameters()
        if image_backbone == "convnet" and image_resolution is None:
            raise ValueError(
                "model.image_backbone 'convnet' needs model.image_resolution (linked from the "
                "dataset's manifest, whose config.render.resolution is missing)"
            )
        self.image_encoder = image_encoder(
            encoding_size,
            hidden_size,
            channels_last=channels_last,
            backbone=image_backbone,
            resolution=image_resolution,
            base_channels=image_base_channels,
            global_max_pool=image_global_max_pool,
        )
        self.text_encoder = text_encoder(
            len(vocabulary),
            max_text_length,
            encoding_size,
            backbone=text_backbone,
            embedding_dim=text_embedding_dim,
            fbase=text_fbase,
            transformer_config=transformer_config,
        )
        log_tau = torch.tensor(math.log(tau))
        if learnable_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        if compile:
            self.image_encoder.compile()
            self.text_encoder.compile()

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp()

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image_encoder(image), self.text_encoder(text)

    def _step(self, batch: dict, stage: str) -> dict[str, torch.Tensor]:
        z_image, z_text = self(batch["image"], batch["text"])
        # The loss runs in fp32 even under bf16 autocast: cosine logits / tau need the precision.
        with torch.autocast(device_type=z_image.device.type, enabled=False):
            loss = global_contrastive_loss(
                z_image.float(),
                z_text.float(),
                tau=self.tau.float(),
                similarity=self.hparams.similarity,
                loss=self.hparams.loss,
            )
        batch_size = batch["image"].shape[0]
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=stage != "train",
            prog_bar=True,
            batch_size=batch_size,
            sync_dist=stage != "train",
        )
        return {"loss": loss, "z_image": z_image.detach().float(), "z_text": z_text.detach().float()}

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._step(batch, "train")
        self.log(
            "temperature", self.tau.detach(), on_step=True, on_epoch=False, batch_size=batch["image"].shape[0]
        )
        return out

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = OPTIMIZERS[hp.optimizer](
            self.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay
        )
        return scheduled(optimizer, self, "trainer")
