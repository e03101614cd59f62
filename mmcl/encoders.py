"""Image and text encoders g_phi1, g_phi2 of Eq. 8.1/8.2 (seed 003, Table A.2b).

Each encoder is a *backbone* (observation -> feature vector) followed by a *head* (features ->
representation), so the same backbone can end in

* :class:`LinearHead` -- the deterministic encoding of size ``encoding_size`` used by the
  contrastive objective, or
* :class:`GaussianHead` -- the mean and log-variance of a Gaussian posterior, as the DMVAE
  (seed 003 ch. 9) needs for q(c | x_i) and q(m_i | x_i).

Backbones (random initialisation, nothing is downloaded):

* image, ``resnet18``: torchvision ResNet-18 whose classifier outputs ``hidden_size`` (100)
  features; the head applies LeakyReLU then Linear (upstream ``encoder_img``).
* image, ``convnet``: :class:`ConvImageBackbone`, strided 4x4 convolutions halving the image
  down to <= 7x7, then Linear to ``hidden_size``; several times cheaper than the ResNet at
  64x64, and what the CPU-sized configs (the demo, the DMVAE) use. With ``global_max_pool``
  the Linear also sees the last feature map max-pooled over space: features that do not
  depend on where the object is (its shape), shared by all positions.
* text, ``convnet``: token embeddings (padding id 0 -> zero vector) laid out as a
  ``max_length x embedding_dim`` plane, three strided 4x4 convolutions with batch norm and
  ReLU, flattened; with the linear head that is the "4-layer ConvNet" of Table A.2b (upstream
  ``TextEncoder2D``). Shorter inputs are padded to ``max_length`` inside, so a sentence's
  encoding does not depend on how much padding it arrived with.
* text, ``transformer``: any ``transformers`` encoder built from a config dict (random init),
  attention-masked over padding, mean-pooled over real tokens.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

HeadKind = Literal["linear", "gaussian"]
TextBackbone = Literal["convnet", "transformer"]
ImageBackbone = Literal["resnet18", "convnet"]


class Posterior(NamedTuple):
    """Diagonal Gaussian parameters output by :class:`GaussianHead`."""

    mean: torch.Tensor
    logvar: torch.Tensor


def check_encoding_size(encoding_size: int) -> None:
    if not isinstance(encoding_size, int) or isinstance(encoding_size, bool) or encoding_size < 1:
        raise ValueError(
            f"encoding_size must be a positive integer (the number of latent dimensions), "
            f"got {encoding_size!r}"
        )


# ----------------------------------------------------------------------------- heads
class LinearHead(nn.Module):
    """Optional LeakyReLU, then Linear(in_features, encoding_size)."""

    def __init__(self, in_features: int, encoding_size: int, activation: bool = True):
        super().__init__()
        check_encoding_size(encoding_size)
        self.encoding_size = encoding_size
        self.activation = nn.LeakyReLU() if activation else nn.Identity()
        self.linear = nn.Linear(in_features, encoding_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(self.activation(h))


class GaussianHead(nn.Module):
    """Optional LeakyReLU, then one Linear to ``2 * encoding_size``: (mean, log-variance)."""

    def __init__(self, in_features: int, encoding_size: int, activation: bool = True):
        super().__init__()
        check_encoding_size(encoding_size)
        self.encoding_size = encoding_size
        self.activation = nn.LeakyReLU() if activation else nn.Identity()
        self.linear = nn.Linear(in_features, 2 * encoding_size)

    def forward(self, h: torch.Tensor) -> Posterior:
        mean, logvar = self.linear(self.activation(h)).chunk(2, dim=-1)
        return Posterior(mean, logvar)


def make_head(kind: HeadKind, in_features: int, encoding_size: int, activation: bool) -> nn.Module:
    if kind == "linear":
        return LinearHead(in_features, encoding_size, activation)
    if kind == "gaussian":
        return GaussianHead(in_features, encoding_size, activation)
    raise ValueError(f"head must be 'linear' or 'gaussian', got {kind!r}")


class Encoder(nn.Module):
    """``head(backbone(x))``; ``backbone.out_features`` is the feature size."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    @property
    def encoding_size(self) -> int:
        return self.head.encoding_size

    def features(self, *args, **kwargs) -> torch.Tensor:
        return self.backbone(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self.head(self.backbone(*args, **kwargs))


# ----------------------------------------------------------------------------- image
class ResNet18Backbone(nn.Module):
    """torchvision ResNet-18 (random init) whose last layer outputs ``hidden_size`` features."""

    def __init__(self, hidden_size: int = 100, channels_last: bool = False):
        super().__init__()
        from torchvision.models import resnet18

        if hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
        self.net = resnet18(weights=None, num_classes=hidden_size)
        self.out_features = hidden_size
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image encoder expects (batch, 3, H, W) images, got shape {tuple(image.shape)}")
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.net(image)


def downsampling_sizes(resolution: int, stop: int = 7) -> list[int]:
    """Feature-map sizes of stride-2 layers from ``resolution`` until the size is <= ``stop``."""
    if resolution < 8:
        raise ValueError(f"image resolution must be >= 8, got {resolution}")
    sizes, size = [], resolution
    while size > stop:
        size = (size + 1) // 2
        sizes.append(size)
    return sizes


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory layout: the same values, and the convolutions that follow run
    in it (their outputs keep it), which is faster on CPU for the ConvNets and the DMVAE decoder
    (docs/bench/demo_cpu.json). A one-channel input (the text ConvNet's) is channels-last already.
    Results agree with NCHW to float rounding."""
    return x.contiguous(memory_format=torch.channels_last)


class ConvImageBackbone(nn.Module):
    """Strided 4x4 convolutions (BatchNorm, SiLU) halving the image down to <= 7x7, flattened,
    then Linear to ``hidden_size`` features.

    ``global_max_pool``: the Linear gets the last feature map's spatial maximum per channel
    besides the flattened map. The flattened map tells *where* the object is, but a shape
    detector read from it must be learnt once per cell the object can fall in (9 positions in
    Multimodal3DIdent); the pooled channels carry *what* it is whatever the position, so each
    position's images teach the same weights (in our trials on the demo's 10 000 pairs: image
    shape accuracy 0.895 instead of 0.872 after the same 3 500 steps, docs/demo/README.md)."""

    def __init__(
        self,
        resolution: int = 64,
        hidden_size: int = 256,
        base_channels: int = 32,
        max_channels: int = 256,
        global_max_pool: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        sizes = downsampling_sizes(resolution)
        for i, _ in enumerate(sizes):
            c_out = min(base_channels * 2**i, max_channels)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU()]
            c_in = c_out
        self.resolution = resolution
        self.global_max_pool = global_max_pool
        self.convnet = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in * sizes[-1] ** 2 + (c_in if global_max_pool else 0), hidden_size)
        self.out_features = hidden_size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[-1] != self.resolution:
            raise ValueError(
                f"image encoder expects (batch, 3, {self.resolution}, {self.resolution}) images, "
                f"got shape {tuple(image.shape)}"
            )
        h = self.convnet(channels_last(image))
        if self.global_max_pool:
            return self.linear(torch.cat([h.flatten(1), h.amax(dim=(2, 3))], dim=1))
        return self.linear(h.flatten(1))


def image_encoder(
    encoding_size: int,
    hidden_size: int = 100,
    head: HeadKind = "linear",
    channels_last: bool = False,
    backbone: ImageBackbone = "resnet18",
    resolution: int | None = None,
    base_channels: int = 32,
    global_max_pool: bool = False,
) -> Encoder:
    """Image backbone -> ``hidden_size`` -> LeakyReLU -> Linear(encoding_size) (upstream ``encoder_img``).

    ``backbone``: ``"resnet18"`` (the thesis', any resolution) or ``"convnet"``
    (:class:`ConvImageBackbone`, needs ``resolution``; ``base_channels`` is its first width,
    ``global_max_pool`` adds its position-invariant features)."""
    check_encoding_size(encoding_size)
    if backbone == "resnet18":
        if global_max_pool:
            raise ValueError(
                "global_max_pool is an option of the convnet image backbone; ResNet-18 ends in a "
                "global average pool already"
            )
        net: nn.Module = ResNet18Backbone(hidden_size, channels_last)
    elif backbone == "convnet":
        if resolution is None:
            raise ValueError("the convnet image backbone needs the image resolution")
        net = ConvImageBackbone(resolution, hidden_size, base_channels, global_max_pool=global_max_pool)
    else:
        raise ValueError(f"image backbone must be 'resnet18' or 'convnet', got {backbone!r}")
    return Encoder(net, make_head(head, hidden_size, encoding_size, activation=True))


# ----------------------------------------------------------------------------- text
def _check_tokens(ids: torch.Tensor, max_length: int, vocab_size: int) -> None:
    if ids.ndim != 2:
        raise ValueError(f"text encoder expects (batch, length) token ids, got shape {tuple(ids.shape)}")
    if ids.shape[1] > max_length:
        raise ValueError(
            f"text has {ids.shape[1]} tokens; this encoder accepts at most max_length={max_length}"
        )
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"text encoder expects integer token ids, got {ids.dtype}")


class TextConvNetBackbone(nn.Module):
    """Embedding plane -> 3 x (Conv2d 4x4 stride 2, BatchNorm, ReLU) -> flatten.

    The convolutions' weights are held in channels-last layout: the input plane has one channel,
    so its layout cannot select the channels-last kernels as it does for the image ConvNet, and
    the weights' layout does (faster on CPU, docs/bench/demo_cpu_layout.json; a checkpoint with
    weights in the default layout loads into them unchanged, values are copied)."""

    def __init__(
        self, vocab_size: int, max_length: int, embedding_dim: int = 128, fbase: int = 25, pad_id: int = 0
    ):
        super().__init__()
        if max_length < 8:
            raise ValueError(f"max_length must be >= 8 for three stride-2 convolutions, got {max_length}")
        self.vocab_size, self.max_length, self.pad_id = vocab_size, max_length, pad_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in (fbase, 2 * fbase, 4 * fbase):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.convnet = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        h, w = max_length, embedding_dim
        for _ in range(3):
            h, w = (h - 2) // 2 + 1, (w - 2) // 2 + 1
        self.out_features = 4 * fbase * h * w

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _check_tokens(ids, self.max_length, self.vocab_size)
        if ids.shape[1] < self.max_length:
            ids = F.pad(ids, (0, self.max_length - ids.shape[1]), value=self.pad_id)
        # padding_idx gives pad tokens a zero (and never-trained) embedding: padding is masked.
        x = self.embedding(ids).unsqueeze(1)
        return self.convnet(channels_last(x)).flatten(1)


class TransformerBackbone(nn.Module):
    """A ``transformers`` encoder from a config dict (random init), mean-pooled over real tokens."""

    def __init__(self, vocab_size: int, max_length: int, config: dict | None = None, pad_id: int = 0):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        cfg = {
            "model_type": "bert",
            "hidden_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 256,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        }
        cfg.update(config or {})
        model_type = cfg.pop("model_type")
        cfg.update(
            vocab_size=vocab_size,
            pad_token_id=pad_id,
            max_position_embeddings=max(max_length, int(cfg.get("max_position_embeddings", 0))),
        )
        try:
            hf_config = AutoConfig.for_model(model_type, **cfg)
        except ValueError as exc:
            raise ValueError(f"text transformer config: {exc}") from None
        self.model = AutoModel.from_config(hf_config)
        self.vocab_size, self.max_length, self.pad_id = vocab_size, max_length, pad_id
        self.out_features = hf_config.hidden_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _check_tokens(ids, self.max_length, self.vocab_size)
        mask = ids != self.pad_id
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def text_encoder(
    vocab_size: int,
    max_length: int,
    encoding_size: int,
    backbone: TextBackbone = "convnet",
    head: HeadKind = "linear",
    embedding_dim: int = 128,
    fbase: int = 25,
    transformer_config: dict | None = None,
) -> Encoder:
    """Text encoder over token ids (B, L <= max_length), pad id 0."""
    check_encoding_size(encoding_size)
    if vocab_size < 4:
        raise ValueError(f"vocab_size must be >= 4 (3 special tokens and a word), got {vocab_size}")
    if backbone == "convnet":
        bb: nn.Module = TextConvNetBackbone(vocab_size, max_length, embedding_dim, fbase)
        # upstream: the flattened conv features go straight into the output Linear
        return Encoder(bb, make_head(head, bb.out_features, encoding_size, activation=False))
    if backbone == "transformer":
        bb = TransformerBackbone(vocab_size, max_length, transformer_config)
        return Encoder(bb, make_head(head, bb.out_features, encoding_size, activation=False))
    raise ValueError(f"text backbone must be 'convnet' or 'transformer', got {backbone!r}")
