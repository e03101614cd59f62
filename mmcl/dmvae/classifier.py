"""An image classifier of the content factors, for coherence and a Fréchet distance (seed 003 §2.5).

Generative coherence (text -> image) asks whether a generated image shows the shape and the
position the conditioning sentence states. The thesis judges this with classifiers trained on
real data; :class:`FactorClassifier` is one network with a head per content factor of the
manifest (object_shape, object_xpos, object_ypos), trained on the real images of the training
split and scored on the real test split (its own accuracy is reported next to every coherence,
since coherence cannot be read above it).

No Inception weights are available offline, so generative quality is measured as the Fréchet
distance between Gaussians fitted to this classifier's penultimate features of generated and
of real images ("FD_factor_classifier"). It behaves like FID but is *not* comparable with FID
values in the literature.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmcl.checkpoint import load_checkpoint
from mmcl.data import IMAGE_MEAN, IMAGE_STD
from mmcl.dmvae.data import add_unit_images
from mmcl.encoders import ConvImageBackbone
from mmcl.io import save_torch
from mmcl.manifest import FactorInfo


class FactorClassifier(nn.Module):
    """ConvNet on images in [0, 1] with one softmax head per discrete content factor."""

    def __init__(
        self,
        factors: dict[str, int],
        resolution: int,
        hidden_size: int = 128,
        base_channels: int = 32,
        image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
    ):
        super().__init__()
        self.factors = dict(factors)
        self.resolution = resolution
        self.config = {
            "factors": self.factors,
            "resolution": resolution,
            "hidden_size": hidden_size,
            "base_channels": base_channels,
            "image_mean": list(image_mean),
            "image_std": list(image_std),
        }
        self.backbone = ConvImageBackbone(resolution, hidden_size, base_channels)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden_size, n) for name, n in self.factors.items()})
        self.register_buffer("mean", torch.tensor(image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(image_std).view(1, 3, 1, 1))

    def features(self, image01: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the space of the Fréchet distance)."""
        return F.silu(self.backbone((image01 - self.mean) / self.std))

    def forward(self, image01: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(image01)
        return {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, image01: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.argmax(-1) for k, v in self(image01).items()}


def content_factor_sizes(factors: Iterable[FactorInfo]) -> dict[str, int]:
    """``{name: n_values}`` of the discrete, non-constant content factors."""
    out = {f.name: int(f.n_values) for f in factors if f.kind == "discrete" and (f.n_values or 0) > 1}
    if not out:
        raise ValueError("the manifest names no discrete content factor to classify")
    return out


def _batches(loader, mean, std) -> Iterable[dict]:
    for batch in loader:
        yield add_unit_images(batch, mean, std)


def train_factor_classifier(
    data,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    log: Callable[[str], None] = print,
    device: torch.device | str = "cpu",
) -> FactorClassifier:
    """Train on the real training images of ``data`` (a :class:`~mmcl.dmvae.data.DMVAEDataModule`)."""
    torch.manual_seed(seed)
    sizes = content_factor_sizes(data.manifest.content_factors())
    model = FactorClassifier(
        sizes, data.manifest.resolution or 64, image_mean=data.image_mean, image_std=data.image_std
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    saved_bs = data.batch_size
    data.batch_size = min(batch_size, sum(s.count for s in data.manifest.shards("train")))
    try:
        loader = data.dataloader("train", train=True, rank=0, world_size=1)
    finally:
        data.batch_size = saved_bs
    n_batches = len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * n_batches)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        total, correct, seen = 0.0, dict.fromkeys(sizes, 0), 0
        for batch in _batches(loader, data.image_mean, data.image_std):
            x = batch["image01"].to(device)
            logits = model(x)
            loss = sum(F.cross_entropy(logits[k], batch["latents_image"][k].to(device)) for k in sizes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(x)
            seen += len(x)
            for k in sizes:
                correct[k] += int((logits[k].argmax(-1).cpu() == batch["latents_image"][k]).sum())
        accs = ", ".join(f"{k} {correct[k] / seen:.3f}" for k in sizes)
        log(
            f"factor classifier epoch {epoch + 1}/{epochs}: loss {total / seen:.3f}, train acc {accs} "
            f"({time.perf_counter() - t0:.0f}s)"
        )
    return model.eval()


@torch.no_grad()
def classifier_accuracy(model: FactorClassifier, data, split: str = "test", device="cpu") -> dict[str, float]:
    """Accuracy per factor on the real images of ``split``."""
    model.eval()
    loader = data.dataloader(split, train=False, rank=0, world_size=1)
    correct, n = dict.fromkeys(model.factors, 0), 0
    for batch in _batches(loader, data.image_mean, data.image_std):
        pred = model.predict(batch["image01"].to(device))
        n += len(batch["image01"])
        for k in model.factors:
            correct[k] += int((pred[k].cpu() == batch["latents_image"][k]).sum())
    return {k: correct[k] / max(1, n) for k in model.factors}


def save_classifier(model: FactorClassifier, path: str | Path, meta: dict) -> None:
    save_torch({"config": model.config, "state_dict": model.state_dict(), "meta": meta}, path)


def load_classifier(path: str | Path) -> tuple[FactorClassifier, dict]:
    blob = load_checkpoint(path, "factor classifier")  # never runs a pickle's code
    try:
        cfg = blob["config"]
        model = FactorClassifier(
            cfg["factors"],
            cfg["resolution"],
            cfg["hidden_size"],
            cfg["base_channels"],
            tuple(cfg["image_mean"]),
            tuple(cfg["image_std"]),
        )
        model.load_state_dict(blob["state_dict"])
    except (OSError, KeyError, RuntimeError, TypeError) as exc:
        raise ValueError(f"{path}: not a factor classifier written by `mmcl dmvae eval` ({exc})") from None
    return model.eval(), blob.get("meta", {})


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` of Gaussians fitted to the rows."""
    from scipy import linalg

    mu_a, s_a = gaussian_statistics(features_a)
    mu_b, s_b = gaussian_statistics(features_b)
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as in pytorch-fid
        eps = np.eye(len(s_a)) * 1e-6
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))
