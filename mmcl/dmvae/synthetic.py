"""A stage-2 problem whose answer is known: does the MI penalty take content out of m_i?

32x32 images of a bright square whose cell k (one of 4) is the content and whose brightness u
is image-specific. The frozen content posterior is handed in as a cache (a noisy 2-d code of k),
so the experiment costs seconds: a plain conditional VAE (delta = 0) writes the square's cell
into m_img as well (I(c; m_img) close to H(k) = log 4 by a fresh critic), and a penalty that
works brings it to ~0 while m_img keeps u. Used by the tests and by
``experiments/dmvae_penalty_toy/dmvae_penalty_toy.py``, which compares the penalties (docs/dmvae/README.md).
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from mmcl.dmvae.critic import fresh_critic_mi
from mmcl.dmvae.losses import sample_gaussian
from mmcl.dmvae.stage1 import ContentModule
from mmcl.dmvae.stage2 import SpecificModule

VOCAB = ["<pad>", "<bos>", "<eos>", "a", "b", "c", "d"]
NOISE = 0.2  # c tells the cell almost always: m_img carrying it too is pure redundancy


class SyntheticPairs(torch.utils.data.IterableDataset):
    """32x32 images of a bright square: its cell k (one of 4, the content) and its brightness u
    (uniform, image-specific). The frozen content posterior gives k (a noisy 2-d code of it), yet
    a plain conditional VAE also writes where the square is into m_img (the encoder finds the
    position in the pixels before the decoder learns to read it from c): leakage for the
    penalty to remove."""

    def __init__(self, n: int, steps: int, batch: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.k = torch.randint(0, 4, (n,), generator=g)
        self.u = 0.3 + 0.7 * torch.rand(n, generator=g)
        self.steps, self.batch, self.seed = steps, batch, seed

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        img = torch.full((len(idx), 3, 32, 32), 0.1)
        for row, i in enumerate(idx.tolist()):
            y, x = divmod(int(self.k[i]), 2)
            img[row, :, 4 + 16 * y : 12 + 16 * y, 4 + 16 * x : 12 + 16 * x] = self.u[i]
        return img

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + 1)
        for _ in range(self.steps):
            idx = torch.randint(0, len(self.k), (self.batch,), generator=g)
            img = self.images(idx)
            yield {"image": img, "image01": img, "index": idx}


def content_cache(pairs: SyntheticPairs, noise: float, seed: int) -> torch.Tensor:
    """(N, 2, M=2, d=2) cached experts: a noisy 2-d code of k as the mean, small variance."""
    g = torch.Generator().manual_seed(seed)
    angle = pairs.k.float() * (math.pi / 2)
    mean = torch.stack([angle.cos(), angle.sin()], 1) + noise * torch.randn(len(pairs.k), 2, generator=g)
    cache = torch.zeros(len(pairs.k), 2, 2, 2)
    cache[:, 0] = mean.unsqueeze(1)
    cache[:, 1] = -6.0  # log-variance: c is (almost) the mean
    return cache


def specific_kl(module: SpecificModule, pairs: SyntheticPairs, n: int = 500) -> float:
    """Mean KL(q(m_img | x) || N(0, I)): what m_img still describes."""
    with torch.no_grad():
        q = module.encode_specific("image", pairs.images(torch.arange(n)))
    return float(0.5 * (q.mean.pow(2) + q.logvar.exp() - 1 - q.logvar).sum(1).mean())


def train_image_stage2(
    delta: float, steps: int = 300, noise: float = NOISE, **model
) -> tuple[SpecificModule, SyntheticPairs, torch.Tensor]:
    content = ContentModule(
        encoding_size=2, vocabulary=VOCAB, max_text_length=8, image_resolution=32,
        image_hidden_size=8, image_base_channels=2, text_embedding_dim=4, text_fbase=2,
    )  # fmt: skip
    pl.seed_everything(0, verbose=False)
    module = SpecificModule(
        content_hparams=dict(content.hparams), modalities=["image"], specific_size=4, delta=delta,
        delta_scale="none", content_sampling="mean", image_hidden_size=32, image_base_channels=8,
        decoder_base_channels=8, lr=2e-3,
        **{"discriminator_lr": 2e-3, "discriminator_hidden": 32, "discriminator_steps": 3, **model},
    )  # fmt: skip
    module.load_content(content)
    pairs = SyntheticPairs(2000, steps, 64, seed=0)
    module.content_cache = content_cache(pairs, noise=noise, seed=0)
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, torch.utils.data.DataLoader(pairs, batch_size=None))
    return module, pairs, module.content_cache


@torch.no_grad()
def mean_probe_accuracy(
    module: SpecificModule, pairs: SyntheticPairs, seed: int = 0, part: str = "mean"
) -> float:
    """Accuracy of an MLP probe reading the square's cell k (chance ~0.25) from the *mean* of
    q(m_img | x) (or, with ``part="logvar"``, from its log-variances), fitted on one half of the
    examples and scored on the other: leakage as the probes of ``mmcl dmvae eval`` measure it."""
    from sklearn.neural_network import MLPClassifier

    idx = torch.arange(len(pairs.k))
    features = getattr(module.encode_specific("image", pairs.images(idx)), part).numpy()
    k, half = pairs.k.numpy(), len(idx) // 2
    probe = MLPClassifier((64, 64), max_iter=500, random_state=seed).fit(features[:half], k[:half])
    return float(probe.score(features[half:], k[half:]))


@torch.no_grad()
def fresh_mi(module: SpecificModule, pairs: SyntheticPairs, cache: torch.Tensor) -> float:
    """I(c; m_img) of the trained model by a fresh critic (one draw of m per example; fitted on
    one half of the examples, estimated on the other)."""
    idx = torch.arange(len(pairs.k))
    q = module.encode_specific("image", pairs.images(idx))
    m = sample_gaussian(q, torch.Generator().manual_seed(0)).numpy()
    c = cache[idx, 0, 0].numpy()
    half = len(idx) // 2
    return fresh_critic_mi(c[:half], m[:half], c[half:], m[half:], seed=0)["density_ratio"]
