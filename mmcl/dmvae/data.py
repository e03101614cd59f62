"""Image/text pairs for the DMVAE: ``mmcl.data`` plus the images in [0, 1].

The encoders read images normalised like the contrastive encoders (``mmcl.data``); the image
likelihood of the decoder (Eq. 9.4) is defined on pixel intensities in [0, 1], so batches also
carry ``image01``. Everything else (shards, manifest, tokenizer, resumable order) is
:class:`mmcl.data.MultimodalDataModule`.
"""

from __future__ import annotations

import torch

from mmcl.data import MultimodalDataModule, normalize_images

MODALITIES: tuple[str, ...] = ("image", "text")


def add_unit_images(batch: dict, mean, std) -> dict:
    """``batch`` with ``image01`` (float in [0, 1]) next to the normalised ``image``."""
    image = batch["image"]
    if image.dtype != torch.uint8:
        if "image01" not in batch:
            raise ValueError("add_unit_images needs the uint8 images (or a batch that already has image01)")
        return batch
    out = normalize_images(batch, mean, std)
    out["image01"] = image.float() / 255.0
    return out


class DMVAEDataModule(MultimodalDataModule):
    """:class:`~mmcl.data.MultimodalDataModule` whose device batches also hold ``image01``."""

    def prepare_images(self, batch: dict) -> dict:
        return add_unit_images(batch, self.image_mean, self.image_std)
