"""Generative process of the numerical simulation (seed 003 §8.2, §8.4.1, App. A.6; SPEC §5).

Latents: content ``c ~ N(0, Sigma_c)``, style ``s ~ N(a + B c, Sigma_s)``, modality-specific
``m_i ~ N(0, Sigma_m)``. The second view's style ``s~`` adds Gaussian noise to each style
component independently with probability p(chg.). Observations ``x_1 = f_1(c, s, m_1)`` and
``x_2 = f_2(c, s~, m_2)`` with invertible 3-layer LeakyReLU MLPs; multi-view: ``f_1 = f_2`` and
no ``m_i``.

* "Stat." -- covariances with non-zero off-diagonal entries: a Wishart(n, I) draw. Upstream
  seeds every block's draw with the run seed, so with n_c = n_s = n_m all blocks (content,
  style, style-change noise, m_1, m_2) share one matrix; ``stat_covariance: upstream`` keeps
  that, ``independent`` draws one per block.
* "Cau." -- ``a_i, B_ij ~ N(0, 1)``, drawn once per run; otherwise ``a = 0, B = 0``.
* Mixing weights: square matrices with entries U(-1, 1), columns scaled to unit norm,
  resampled until the condition number is at most the ``cond_thresh_ratio`` quantile of a
  pool of ``cond_pool`` such matrices (upstream: 1e-3 of 25 000).

* Discrete latents (Fig. A.5, ``discrete_block``): every component of one group (content, style
  or both m_i) is a uniform categorical over k classes, fed to the mixing as the class index
  standardised to mean 0 and variance 1. A changed style component moves its class index by a
  rounded Gaussian step of the index's own standard deviation, wrapped modulo k: the
  categorical counterpart of adding N(0, 1) to a unit-variance latent, which keeps style partly
  shared between the views (a fresh uniform draw would make the second view's style
  independent of the first's, i.e. modality-specific, and "style at chance" true by
  construction). Drawn after the Gaussian latents from the same generator, so runs without a
  discrete group are unchanged. The thesis does not state its class probabilities or style
  change for this case; these are our choices.

Every random quantity is a function of (run seed, purpose[, step]) only, so a resumed run sees
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import wishart
from torch import nn

from mmcl.simulation.config import ROWS, SimulationConfig

# Stream ids: distinct purposes never share random numbers.
STREAM_PROCESS, STREAM_INIT, STREAM_TRAIN, STREAM_VAL, STREAM_TEST = 1, 2, 3, 4, 5


def seed_for(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from the run seed and a purpose (and e.g. a step)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def torch_generator(seed: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed_for(seed, *keys))
    return gen


def well_conditioned_matrix(
    n: int, threshold: float, rng: np.random.Generator, chunk: int = 1024
) -> np.ndarray:
    """First U(-1, 1) matrix with unit-norm columns whose condition number is <= threshold."""
    while True:
        mats = rng.uniform(-1.0, 1.0, size=(chunk, n, n))
        mats /= np.linalg.norm(mats, axis=1, keepdims=True)
        ok = np.flatnonzero(np.linalg.cond(mats) <= threshold)
        if len(ok):
            return mats[ok[0]]


def condition_threshold(n: int, ratio: float, pool: int, rng: np.random.Generator) -> float:
    """The ``ratio`` quantile (sorted[int(pool * ratio)]) of condition numbers of random
    column-normalised U(-1, 1) matrices."""
    mats = rng.uniform(-1.0, 1.0, size=(pool, n, n))
    mats /= np.linalg.norm(mats, axis=1, keepdims=True)
    return float(np.sort(np.linalg.cond(mats))[int(pool * ratio)])


def invertible_mlp(
    n: int, n_layers: int, slope: float, ratio: float, pool: int, rng: np.random.Generator
) -> nn.Sequential:
    """Frozen bias-free MLP ``R^n -> R^n``: well-conditioned square layers, LeakyReLU between."""
    threshold = condition_threshold(n, ratio, pool, rng)
    layers: list[nn.Module] = []
    for i in range(n_layers):
        linear = nn.Linear(n, n, bias=False)
        linear.weight.data = torch.tensor(well_conditioned_matrix(n, threshold, rng), dtype=torch.float32)
        layers.append(linear)
        if i < n_layers - 1:
            layers.append(nn.LeakyReLU(slope))
    mlp = nn.Sequential(*layers)
    mlp.requires_grad_(False)
    return mlp


def standardised_classes(index: torch.Tensor, k: int) -> torch.Tensor:
    """Class indices 0..k-1 as values of mean 0 and variance 1 under the uniform categorical."""
    return (index.float() - (k - 1) / 2) / math.sqrt((k * k - 1) / 12)


def class_index(values: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """Inverse of ``standardised_classes``: the class index of each value."""
    values = np.asarray(values, dtype=np.float64)
    return np.rint(values * math.sqrt((k * k - 1) / 12) + (k - 1) / 2).astype(np.int64)


@dataclass
class Batch:
    """Latents and observations of one batch (m1/m2 have zero columns in multi-view)."""

    content: torch.Tensor
    style: torch.Tensor
    style_changed: torch.Tensor
    modality_specific_1: torch.Tensor
    modality_specific_2: torch.Tensor
    x1: torch.Tensor
    x2: torch.Tensor


class GenerativeProcess(nn.Module):
    """One run's fixed generative process: covariances, causal map (a, B), mixing f_1, f_2."""

    def __init__(self, cfg: SimulationConfig, setting: str, row: str, seed: int):
        super().__init__()
        p_change, statistical, causal = ROWS[row]
        self.setting, self.row, self.seed = setting, row, seed
        self.p_change = p_change
        self.nc, self.ns = cfg.content_n, cfg.style_n
        self.nm = cfg.modality_n if setting == "multimodal" else 0
        self.latent_std, self.style_change_std = cfg.latent_std, cfg.style_change_std
        self.discrete_block, self.discrete_classes = cfg.discrete_block, cfg.discrete_classes
        if self.discrete_block is not None and (statistical or causal):
            raise ValueError(
                f"discrete_block {self.discrete_block!r} needs a row without Stat./Cau., got {row!r}"
            )
        rng = np.random.default_rng(seed_for(seed, STREAM_PROCESS))

        def chol(n: int, cov: np.ndarray | None, std: float) -> torch.Tensor:
            if n == 0:
                return torch.zeros(0, 0)
            if cov is None:
                return torch.eye(n) * std
            return torch.tensor(np.linalg.cholesky(cov), dtype=torch.float32)

        covs: dict[str, np.ndarray | None] = dict.fromkeys(("c", "s", "change", "m1", "m2"))
        if statistical:
            wseed = seed_for(seed, STREAM_PROCESS, 1)
            if cfg.stat_covariance == "upstream":
                shared = wishart.rvs(self.nc, np.eye(self.nc), random_state=wseed % 2**32)
                covs = dict.fromkeys(covs, shared)
            else:
                wrng = np.random.default_rng(wseed)
                sizes = {"c": self.nc, "s": self.ns, "change": self.ns, "m1": self.nm, "m2": self.nm}
                covs = {
                    k: (wishart.rvs(n, np.eye(n), random_state=wrng) if n else None) for k, n in sizes.items()
                }
        self.register_buffer("chol_c", chol(self.nc, covs["c"], cfg.latent_std))
        self.register_buffer("chol_s", chol(self.ns, covs["s"], cfg.latent_std))
        self.register_buffer("chol_change", chol(self.ns, covs["change"], cfg.style_change_std))
        self.register_buffer("chol_m1", chol(self.nm, covs["m1"], cfg.latent_std))
        self.register_buffer("chol_m2", chol(self.nm, covs["m2"], cfg.latent_std))
        a = rng.standard_normal(self.ns) if causal else np.zeros(self.ns)
        b = rng.standard_normal((self.ns, self.nc)) if causal else np.zeros((self.ns, self.nc))
        self.register_buffer("a", torch.tensor(a, dtype=torch.float32))
        self.register_buffer("B", torch.tensor(b, dtype=torch.float32))
        d = self.nc + self.ns + self.nm
        mix = dict(
            n=d,
            n_layers=cfg.mixing_layers,
            slope=cfg.mixing_slope,
            ratio=cfg.cond_thresh_ratio,
            pool=cfg.cond_pool,
            rng=rng,
        )
        self.f1 = invertible_mlp(**mix)
        # multi-view: f_1 = f_2 (one network); multimodal: a second independent draw
        self.f2 = self.f1 if setting == "multiview" else invertible_mlp(**mix)

    @property
    def dim(self) -> int:
        return self.nc + self.ns + self.nm

    def _normal(self, n: int, chol: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        eps = torch.randn(n, chol.shape[0], generator=gen, device=chol.device)
        return eps @ chol.T

    def _categorical(self, n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
        k = self.discrete_classes
        index = torch.randint(k, (n, dim), generator=gen, device=self.a.device)
        return standardised_classes(index, k)

    def sample_latents(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        c = self._normal(n, self.chol_c, gen)
        s = self._normal(n, self.chol_s, gen) + self.a + c @ self.B.T
        m1 = self._normal(n, self.chol_m1, gen)
        m2 = self._normal(n, self.chol_m2, gen)
        change = torch.rand(n, self.ns, generator=gen, device=c.device) < self.p_change
        s_tilde = s + change.to(s.dtype) * self._normal(n, self.chol_change, gen)
        if self.discrete_block == "content":
            c = self._categorical(n, self.nc, gen)  # B = 0 here (no causal row), so s is unaffected
        elif self.discrete_block == "style":
            k = self.discrete_classes
            index = torch.randint(k, (n, self.ns), generator=gen, device=c.device)
            sd = math.sqrt((k * k - 1) / 12)
            step = torch.round(torch.randn(n, self.ns, generator=gen, device=c.device) * sd).long()
            s = standardised_classes(index, k)
            s_tilde = torch.where(change, standardised_classes((index + step) % k, k), s)
        elif self.discrete_block == "modality_specific":
            m1, m2 = self._categorical(n, self.nm, gen), self._categorical(n, self.nm, gen)
        return {
            "content": c,
            "style": s,
            "style_changed": s_tilde,
            "modality_specific_1": m1,
            "modality_specific_2": m2,
        }

    @torch.no_grad()
    def mix(
        self,
        content: torch.Tensor,
        style: torch.Tensor,
        style_changed: torch.Tensor,
        m1: torch.Tensor,
        m2: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x1 = self.f1(torch.cat([content, style, m1], dim=1))
        x2 = self.f2(torch.cat([content, style_changed, m2], dim=1))
        return x1, x2

    def sample(self, n: int, gen: torch.Generator) -> Batch:
        lat = self.sample_latents(n, gen)
        x1, x2 = self.mix(
            lat["content"],
            lat["style"],
            lat["style_changed"],
            lat["modality_specific_1"],
            lat["modality_specific_2"],
        )
        return Batch(**lat, x1=x1, x2=x2)


def encoder(d_in: int, widths: list[int], encoding_size: int, slope: float) -> nn.Sequential:
    """Upstream encoder: Linear layers through ``widths`` to ``encoding_size``, LeakyReLU between
    (7 layers with the default 6 hidden widths)."""
    layers: list[nn.Module] = []
    n_in = d_in
    for w in widths:
        layers += [nn.Linear(n_in, w), nn.LeakyReLU(slope)]
        n_in = w
    layers.append(nn.Linear(n_in, encoding_size))
    return nn.Sequential(*layers)
