"""I(c; m_i) measured after training, by a fresh critic fitted to convergence on frozen latents.

The training critic D_i of stage 2 (Eq. 9.7/9.8) chases an encoder that is being pushed away
from it, so its falling estimate is no evidence that m_i shares less with c: it may only lag.
:func:`fresh_critic_mi` asks the question again once the model is frozen. A new discriminator
(the same MLP family as :class:`~mmcl.dmvae.networks.Discriminator`) is trained with the BCE of
Eq. 9.7 on joint pairs (c^k, m^k) against pairs of independently drawn indices (c^k, m^l), on
one split, until its BCE on a held-out part stops improving; on another split it then reports

* ``density_ratio``: Eq. 9.8, ``E_joint[log D / (1 - D)]``, the mean joint logit. For the
  Bayes-optimal critic the logit is ``log p(c, m) / (p(c) p(m))`` and this is exactly
  I(c; m) (the estimator of FactorVAE's total correlation, Kim and Mnih 2018);
* ``dv_lower_bound``: the Donsker-Varadhan bound ``E_joint[T] - log E_marginal[e^T]`` with
  ``T`` = the logit, a lower bound on I(c; m) for any critic (MINE, Belghazi et al. 2018), so
  an under-trained critic can only make it smaller, never invent information;
* ``bce``: the held-out Eq. 9.7 loss (``2 log 2`` = 1.386 when the critic cannot tell the
  pairs apart).

Inputs are standardised with the fitting split's statistics. Everything is seeded.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mmcl.dmvae.losses import discriminator_bce
from mmcl.dmvae.networks import Discriminator


def _standardise(fit: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    mean, std = fit.mean(0), fit.std(0) + 1e-8
    return [torch.as_tensor((a - mean) / std, dtype=torch.float32) for a in (fit, *others)]


def _marginal_indices(n: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(0, n, (size,), generator=generator), torch.randint(
        0, n, (size,), generator=generator
    )


@torch.no_grad()
def _scores(critic: Discriminator, c: torch.Tensor, m: torch.Tensor, generator: torch.Generator) -> dict:
    joint = critic(c, m)
    # every content against many other examples' m: a low-variance estimate of the marginal term
    reps = 8
    ic = torch.arange(len(c)).repeat(reps)
    im = torch.randint(0, len(m), (len(c) * reps,), generator=generator)
    marginal = critic(c[ic], m[im])
    log_mean_exp = torch.logsumexp(marginal, 0) - math.log(len(marginal))
    return {
        "density_ratio": float(joint.mean()),
        "dv_lower_bound": float(joint.mean() - log_mean_exp),
        "bce": float(discriminator_bce(joint, marginal[: len(joint)])),
    }


def fresh_critic_mi(
    c_fit: np.ndarray,
    m_fit: np.ndarray,
    c_eval: np.ndarray,
    m_eval: np.ndarray,
    seed: int = 0,
    hidden_size: int = 256,
    layers: int = 3,
    lr: float = 1e-3,
    batch_size: int = 256,
    max_steps: int = 4000,
    eval_every: int = 100,
    patience: int = 5,
    holdout: float = 0.2,
) -> dict:
    """Train a new critic on ``(c_fit, m_fit)`` (rows are joint samples) and estimate I(c; m)
    on ``(c_eval, m_eval)``; returns the estimates, the held-out BCE and the steps trained.

    Training stops when the BCE on the last ``holdout`` fraction of the fitting rows has not
    improved for ``patience`` evaluations (every ``eval_every`` steps), or at ``max_steps``;
    the critic with the best held-out BCE is the one scored."""
    if len(c_fit) != len(m_fit) or len(c_eval) != len(m_eval):
        raise ValueError("fresh_critic_mi: c and m must have one row per example in each split")
    if len(c_fit) < 8:
        raise ValueError(f"fresh_critic_mi needs at least 8 fitting examples, got {len(c_fit)}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(c_fit), generator=g).numpy()
    c_fit, m_fit = c_fit[perm], m_fit[perm]
    c_all, c_ev = _standardise(c_fit, c_eval)
    m_all, m_ev = _standardise(m_fit, m_eval)
    n_hold = max(2, int(round(holdout * len(c_all))))
    c_tr, m_tr, c_ho, m_ho = c_all[:-n_hold], m_all[:-n_hold], c_all[-n_hold:], m_all[-n_hold:]
    critic = Discriminator(c_tr.shape[1], m_tr.shape[1], hidden_size, layers)
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    best, best_state, bad, step = float("inf"), None, 0, 0
    n = len(c_tr)
    for step in range(1, max_steps + 1):
        ij = torch.randint(0, n, (batch_size,), generator=g)
        ic, im = _marginal_indices(n, batch_size, g)
        with torch.enable_grad():  # callers often evaluate under no_grad
            loss = discriminator_bce(critic(c_tr[ij], m_tr[ij]), critic(c_tr[ic], m_tr[im]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == max_steps:
            held = _scores(critic, c_ho, m_ho, torch.Generator().manual_seed(seed + 1))["bce"]
            if held < best - 1e-4:
                best, bad = held, 0
                best_state = {k: v.clone() for k, v in critic.state_dict().items()}
            else:
                bad += 1
                if bad >= patience:
                    break
    if best_state is not None:
        critic.load_state_dict(best_state)
    out = _scores(critic, c_ev, m_ev, torch.Generator().manual_seed(seed + 2))
    out.update({"steps": step, "heldout_bce": best, "n_fit": len(c_fit), "n_eval": len(c_eval)})
    return out
