"""Networks of the DMVAE (seed 003 §9.2): encoders, decoders and the mutual-information critic.

Encoders reuse :mod:`mmcl.encoders` -- an :class:`~mmcl.encoders.Encoder` is a backbone plus a
:class:`~mmcl.encoders.GaussianHead` giving the mean and log-variance of q(c | x_i) or
q(m_i | x_i). Besides the ResNet-18 (the thesis' choice, 224x224 on GPUs) the image side offers
:class:`~mmcl.encoders.ConvImageBackbone`, a plain strided ConvNet that is about five times
cheaper at 64x64 and is what the CPU-sized configs use.

* :class:`ImageDecoder` -- p(x_img | c, m_img): Linear to a ``s0 x s0`` feature map, then
  transposed convolutions doubling the size up to the image resolution (64 -> 4 blocks from
  4x4, 224 -> 5 blocks from 7x7) while halving the channels down to ``base_channels``, and a
  3x3 convolution to RGB; outputs the location of the likelihood in [0, 1].
* :class:`AutoregressiveTextDecoder` -- p(x_txt | c, m_txt) = prod_t p(w_t | w_<t, c, m_txt): a
  GRU whose initial state and every input step see (c, m), trained with teacher forcing; greedy
  decoding for coherence, sampling for grids. Colour names are 1 to ~7 tokens long, so every
  later token's position depends on the name: only a decoder that sees what it has written
  can keep a template together (the default since the per-position decoder's sentences did not
  parse, docs/dmvae/README.md).
* :class:`TextDecoder` -- the earlier non-autoregressive decoder: an MLP to one feature vector
  per token position, then a shared Linear to vocabulary logits (positions independent given
  (c, m)); kept as ``text_decoder: per_position`` for comparison.
* :class:`Discriminator` -- D_i(c, m_i) of Eq. 9.7 as an MLP on the concatenation, outputting
  the logit of "joint pair".
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mmcl.encoders import (
    Encoder,
    ImageBackbone,
    channels_last,
    image_encoder,
    text_encoder,
)


def upsampling_start(resolution: int) -> tuple[int, int]:
    """``(s0, n_blocks)`` with ``s0 * 2**n_blocks == resolution`` and ``4 <= s0 <= 7``."""
    size, blocks = resolution, 0
    while size > 7:
        if size % 2:
            raise ValueError(
                f"image resolution {resolution} is not s0 * 2^k with 4 <= s0 <= 7 "
                "(supported: 32, 56, 64, 112, 128, 224, 256, ...)"
            )
        size //= 2
        blocks += 1
    if size < 4:
        raise ValueError(f"image resolution {resolution} is too small for the decoder (needs >= 32)")
    return size, blocks


def gaussian_image_encoder(
    encoding_size: int,
    resolution: int,
    backbone: ImageBackbone = "convnet",
    hidden_size: int = 256,
    base_channels: int = 32,
    global_max_pool: bool = False,
) -> Encoder:
    """Image -> Gaussian posterior (mean, logvar) of size ``encoding_size`` (``global_max_pool``:
    the ConvNet's position-invariant features, see :class:`~mmcl.encoders.ConvImageBackbone`)."""
    return image_encoder(
        encoding_size,
        hidden_size,
        head="gaussian",
        backbone=backbone,
        resolution=resolution,
        base_channels=base_channels,
        global_max_pool=global_max_pool,
    )


def gaussian_text_encoder(
    encoding_size: int,
    vocab_size: int,
    max_length: int,
    backbone: Literal["convnet", "transformer"] = "convnet",
    embedding_dim: int = 128,
    fbase: int = 25,
    transformer_config: dict | None = None,
) -> Encoder:
    """Token ids -> Gaussian posterior, the ``mmcl.encoders`` text encoder with a Gaussian head."""
    return text_encoder(
        vocab_size,
        max_length,
        encoding_size,
        backbone=backbone,
        head="gaussian",
        embedding_dim=embedding_dim,
        fbase=fbase,
        transformer_config=transformer_config,
    )


class ResidualConv(nn.Module):
    """``h + SiLU(BN(conv3x3(h)))``: one more layer at a resolution, with a skip path so that
    depth is added without changing the channel count."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.SiLU()
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


class ImageDecoder(nn.Module):
    """(c, m) -> location of p(x_img | c, m) in [0, 1], shape (B, 3, resolution, resolution).

    ``res_blocks`` adds that many :class:`ResidualConv` after every upsampling. Channels halve
    as the area quadruples, so each such layer costs the same at every resolution (about 7 %
    of the width-12 decoder at 64x64 per resolution); 0 is the plain DCGAN-style stack.
    """

    def __init__(
        self,
        latent_size: int,
        resolution: int = 64,
        base_channels: int = 32,
        max_channels: int = 256,
        res_blocks: int = 0,
    ):
        super().__init__()
        s0, blocks = upsampling_start(resolution)
        # channels halve with every doubling of the size: base_channels at full resolution
        channels = [min(base_channels * 2**i, max_channels) for i in range(blocks + 1)][::-1]
        self.s0, self.c0, self.resolution = s0, channels[0], resolution
        self.linear = nn.Sequential(nn.Linear(latent_size, channels[0] * s0 * s0), nn.SiLU())
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU()]
            layers += [ResidualConv(c_out) for _ in range(res_blocks)]
        layers.append(nn.Conv2d(channels[-1], 3, 3, 1, 1))
        self.deconv = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = self.linear(latent).view(-1, self.c0, self.s0, self.s0)
        return torch.sigmoid(self.deconv(channels_last(h)))


class SpatialBroadcastDecoder(nn.Module):
    """(c, m) -> location of p(x_img | c, m) in [0, 1] by spatial broadcast (Watters et al.
    2019, arXiv 1901.07017): the latent is tiled over the ``resolution x resolution`` grid next
    to two coordinate channels (x, y in [-1, 1]) and decoded by stride-1 convolutions, so every
    pixel sees the latent and where it is. Built for objects at positions: a silhouette becomes
    a function of (pixel - object position), which a few layers can draw, where a transposed-conv
    stack has to place it by upsampling.

    The first layer is the 1x1 convolution of the broadcast input, computed without tiling:
    ``Linear(latent) + Linear(coordinates)`` (the same function, ``latent_size / 2`` times
    cheaper at 64x64 than convolving the tiled map). Then ``layers - 1`` convolutions of
    ``kernel_size`` at ``channels`` with SiLU, and a 1x1 convolution to RGB.
    """

    def __init__(
        self,
        latent_size: int,
        resolution: int = 64,
        channels: int = 16,
        layers: int = 4,
        kernel_size: int = 3,
    ):
        super().__init__()
        if layers < 1:
            raise ValueError(f"a broadcast decoder needs at least one layer, got {layers}")
        if kernel_size % 2 != 1:
            raise ValueError(f"broadcast decoder kernel_size must be odd, got {kernel_size}")
        self.resolution = resolution
        axis = torch.linspace(-1.0, 1.0, resolution)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys], -1), persistent=False)  # (H, W, 2)
        self.from_latent = nn.Linear(latent_size, channels)
        self.from_coords = nn.Linear(2, channels, bias=False)
        body: list[nn.Module] = [nn.SiLU()]
        for _ in range(layers - 1):
            body += [nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2), nn.SiLU()]
        body.append(nn.Conv2d(channels, 3, 1))
        self.body = nn.Sequential(*body)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(latent)[:, :, None, None] + self.from_coords(self.coords).permute(2, 0, 1)
        return torch.sigmoid(self.body(channels_last(h)))


IMAGE_DECODERS = ("deconv", "broadcast")


def image_decoder(
    kind: str,
    latent_size: int,
    resolution: int = 64,
    base_channels: int = 16,
    res_blocks: int = 0,
    broadcast_layers: int = 4,
    broadcast_kernel: int = 3,
) -> nn.Module:
    """The image decoder family ``kind``: ``deconv`` (:class:`ImageDecoder`, ``base_channels`` at
    full resolution) or ``broadcast`` (:class:`SpatialBroadcastDecoder`, ``base_channels`` in
    every layer)."""
    if kind == "deconv":
        return ImageDecoder(latent_size, resolution, base_channels, res_blocks=res_blocks)
    if kind == "broadcast":
        if res_blocks:
            raise ValueError("res_blocks applies to the deconv decoder only")
        return SpatialBroadcastDecoder(
            latent_size, resolution, base_channels, broadcast_layers, broadcast_kernel
        )
    raise ValueError(f"image decoder must be one of {', '.join(IMAGE_DECODERS)}, got {kind!r}")


class TextDecoder(nn.Module):
    """(c, m) -> logits (B, max_length, vocab_size) of a categorical per token position."""

    def __init__(
        self,
        latent_size: int,
        vocab_size: int,
        max_length: int,
        hidden_size: int = 256,
        position_size: int = 64,
    ):
        super().__init__()
        self.max_length, self.vocab_size, self.position_size = max_length, vocab_size, position_size
        self.mlp = nn.Sequential(
            nn.Linear(latent_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, max_length * position_size),
        )
        self.norm = nn.LayerNorm(position_size)
        self.out = nn.Linear(position_size, vocab_size)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = self.mlp(latent).view(-1, self.max_length, self.position_size)
        return self.out(torch.nn.functional.silu(self.norm(h)))


class AutoregressiveTextDecoder(nn.Module):
    """(c, m) and the sentence so far -> logits of the next token (a GRU language model
    conditioned on the latent).

    The latent sets the initial hidden state (``tanh(Linear(latent))``) and is concatenated to
    every input token embedding, so the condition cannot be forgotten along the sentence.
    Sequences follow the tokenizer's framing (``<bos> w_1 .. w_n <eos> <pad> ..``): position 0
    is always ``<bos>`` and is given, positions 1..L-1 are predicted.
    """

    def __init__(
        self,
        latent_size: int,
        vocab_size: int,
        max_length: int,
        hidden_size: int = 256,
        embedding_dim: int = 64,
        bos_id: int = 1,
        eos_id: int = 2,
        pad_id: int = 0,
    ):
        super().__init__()
        self.max_length, self.vocab_size = max_length, vocab_size
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.init = nn.Linear(latent_size, hidden_size)
        self.gru = nn.GRU(embedding_dim + latent_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, vocab_size)

    def _h0(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.init(latent)).unsqueeze(0)

    def forward(self, latent: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits ``(B, L - 1, V)`` of tokens ``1..L-1`` given tokens ``0..L-2``."""
        inputs = self.embedding(tokens[:, :-1].long())
        cond = latent.unsqueeze(1).expand(-1, inputs.shape[1], -1)
        h, _ = self.gru(torch.cat([inputs, cond], dim=-1), self._h0(latent))
        return self.out(h)

    @torch.no_grad()
    def generate(
        self, latent: torch.Tensor, greedy: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Token ids ``(B, L)``: ``<bos>``, then one token at a time (the most likely one, or a
        draw from the categorical when ``greedy`` is False) until ``<eos>``, padding after it."""
        b = latent.shape[0]
        ids = torch.full((b, self.max_length), self.pad_id, dtype=torch.long, device=latent.device)
        ids[:, 0] = self.bos_id
        done = torch.zeros(b, dtype=torch.bool, device=latent.device)
        h = self._h0(latent)
        token = ids[:, :1]
        for t in range(1, self.max_length):
            x = torch.cat([self.embedding(token), latent.unsqueeze(1)], dim=-1)
            out, h = self.gru(x, h)
            logits = self.out(out[:, -1]).float()
            if greedy:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits, -1)
                nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(latent.device)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            ids[:, t] = nxt
            done |= nxt == self.eos_id
            if bool(done.all()):
                break
            token = nxt.unsqueeze(1)
        return ids


class Discriminator(nn.Module):
    """D_i(c, m_i): logit that the pair was drawn jointly rather than from q(c) q(m_i)."""

    def __init__(self, content_size: int, specific_size: int, hidden_size: int = 256, layers: int = 3):
        super().__init__()
        if layers < 1:
            raise ValueError(f"discriminator layers must be >= 1, got {layers}")
        mods: list[nn.Module] = []
        size = content_size + specific_size
        for _ in range(layers - 1):
            mods += [nn.Linear(size, hidden_size), nn.LeakyReLU(0.2)]
            size = hidden_size
        mods.append(nn.Linear(size, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, content: torch.Tensor, specific: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([content, specific], dim=-1)).squeeze(-1)
