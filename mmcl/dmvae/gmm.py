"""A Gaussian-mixture prior on the content c for unconditional generation (seed 003 §9.3).

The DMVAE has no prior on c; following the thesis (and Ghosh et al.'s ex-post density
estimation), a GMM is fitted on content embeddings of the training set -- 100 components by
default, a single component works too. We fit it on one draw of c per training example from
the same MoPoE posterior the decoders were trained on, so unconditional samples resemble what
the decoders have seen. The same mixture, fitted on draws of q(m_i | x_i), is the density
``mmcl dmvae generate --specific-prior gmm`` draws m_i from (``mmcl.dmvae.fit.run_gmm``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmcl.io import save_npz


@dataclass(frozen=True)
class ContentPrior:
    """Mixture weights (K,), means (K, d) and full covariances (K, d, d)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` draws as a float32 tensor (component, then Gaussian), reproducible by ``seed``."""
        rng = np.random.default_rng(seed)
        comp = rng.choice(self.n_components, size=n, p=self.weights / self.weights.sum())
        chol = np.linalg.cholesky(self.covariances)
        eps = rng.standard_normal((n, self.dim))
        x = self.means[comp] + np.einsum("nij,nj->ni", chol[comp], eps)
        return torch.from_numpy(x.astype(np.float32))

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """log p(x) under the mixture, per row."""
        x = np.asarray(x, dtype=np.float64)
        chol = np.linalg.cholesky(self.covariances)
        logdet = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(-1)
        diff = x[:, None, :] - self.means[None]
        sol = np.stack([np.linalg.solve(chol[k], diff[:, k].T).T for k in range(self.n_components)], 1)
        log_comp = -0.5 * (sol**2).sum(-1) - 0.5 * logdet - 0.5 * self.dim * np.log(2 * np.pi)
        a = log_comp + np.log(self.weights)[None]
        amax = a.max(1, keepdims=True)
        return (amax + np.log(np.exp(a - amax).sum(1, keepdims=True)))[:, 0]

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        save_npz(
            path,
            weights=self.weights,
            means=self.means,
            covariances=self.covariances,
            meta=np.array(json.dumps(meta or {})),
        )

    @staticmethod
    def load(path: str | Path) -> tuple[ContentPrior, dict]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no content prior; `mmcl dmvae fit` writes it in its 'gmm' stage"
            )
        with np.load(path, allow_pickle=False) as z:
            prior = ContentPrior(z["weights"], z["means"], z["covariances"])
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        return prior, meta


def fit_content_prior(
    content: np.ndarray,
    n_components: int = 100,
    covariance_type: str = "full",
    seed: int = 0,
    max_iter: int = 200,
    reg_covar: float = 1e-5,
) -> ContentPrior:
    """Fit a GMM (scikit-learn, k-means initialisation) on ``content`` (N, d)."""
    from sklearn.mixture import GaussianMixture

    content = np.asarray(content, dtype=np.float64)
    if content.ndim != 2:
        raise ValueError(f"content must be (N, d), got shape {content.shape}")
    if not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"gmm.n_components must be a positive integer, got {n_components!r}")
    if n_components > len(content):
        raise ValueError(
            f"gmm.n_components={n_components} exceeds the {len(content)} training embeddings; use fewer"
        )
    gmm = GaussianMixture(
        n_components,
        covariance_type=covariance_type,
        random_state=seed,
        max_iter=max_iter,
        reg_covar=reg_covar,
    ).fit(content)
    d = content.shape[1]
    cov = gmm.covariances_
    if covariance_type == "diag":
        cov = np.stack([np.diag(c) for c in cov])
    elif covariance_type == "spherical":
        cov = np.stack([np.eye(d) * c for c in cov])
    elif covariance_type == "tied":
        cov = np.repeat(cov[None], n_components, 0)
    return ContentPrior(gmm.weights_.copy(), gmm.means_.copy(), np.asarray(cov, dtype=np.float64))
