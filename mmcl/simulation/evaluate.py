"""Evaluation of a trained simulation run (seed 003 §8.4.1, App. A.6; SPEC §5).

Draws a validation and a test set from the run's generative process, encodes them, and probes
each block of latents -- content ``c``, style (``s`` for encoder 1, ``s~`` for encoder 2) and
the encoder's own modality-specific ``m_i`` -- with grid-searched RBF kernel ridge regression
(fit on val, R^2 on test; features standardised with val statistics), as upstream's
``main_mlp.py --evaluate`` does. Test-time interventions (App. A.6): the content of every
sample is replaced by that of a random other sample of the batch (one permutation, shared by
both views) before mixing, ``x'_i = f_i(c', s, m_i)``, and both the original ``c`` and the
intervened ``c'`` are probed from the encodings of ``x'_i``.

Identifiability scores beside the R^2 (``identifiability`` in the metrics): the strong and
weak mean correlation coefficient of every block (``mmcl.probing.identifiability``).

Also writes the encodings and latents in the embeddings format of ``docs/formats.md``
(representations ``x1``, ``x2`` and, with interventions, ``x1_intervened``, ``x2_intervened``;
one scalar factor per latent component) so that ``mmcl probe`` can read them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmcl.io import save_npz, write_json
from mmcl.losses import fresh_negatives_symmetric, infonce_symmetric
from mmcl.probing.identifiability import mcc, weak_mcc
from mmcl.probing.kernel_ridge import grid_search_kernel_ridge
from mmcl.probing.probes import linear_r2, standardize
from mmcl.simulation.config import SimulationConfig
from mmcl.simulation.generative import (
    STREAM_TEST,
    STREAM_VAL,
    GenerativeProcess,
    class_index,
    torch_generator,
)

BLOCK_ROLES = {
    "content": "content",
    "content_intervened": "content",
    "style": "style",
    "style_changed": "style",
    "modality_specific_1": "modality_specific",
    "modality_specific_2": "modality_specific",
}
_CHUNK = 8192


@torch.no_grad()
def encode(g: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([g(x[i : i + _CHUNK]) for i in range(0, len(x), _CHUNK)])


@torch.no_grad()
def draw_split(
    process: GenerativeProcess,
    g1: nn.Module,
    g2: nn.Module,
    n: int,
    seed: int,
    stream: int,
    interventions: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """Latent blocks, encodings, and the observations (for the loss) of one evaluation split."""
    device = process.a.device
    gen = torch_generator(seed, stream, device=device)
    lat = process.sample_latents(n, gen)
    x1, x2 = process.mix(
        lat["content"],
        lat["style"],
        lat["style_changed"],
        lat["modality_specific_1"],
        lat["modality_specific_2"],
    )
    reps = {"x1": encode(g1, x1), "x2": encode(g2, x2)}
    if interventions:
        perm = torch.randperm(n, generator=gen, device=device)
        lat["content_intervened"] = lat["content"][perm]
        x1i, x2i = process.mix(
            lat["content_intervened"],
            lat["style"],
            lat["style_changed"],
            lat["modality_specific_1"],
            lat["modality_specific_2"],
        )
        reps["x1_intervened"], reps["x2_intervened"] = encode(g1, x1i), encode(g2, x2i)
    blocks = {k: v.double().cpu().numpy() for k, v in lat.items() if v.shape[1] > 0}
    return blocks, {k: v.cpu().numpy() for k, v in reps.items()}, {"x1": x1, "x2": x2}


def representation_blocks(representation: str, blocks: dict[str, np.ndarray]) -> list[str]:
    """Blocks probed from a representation: content, its own style and modality-specific
    latents, and the intervened content for intervened encodings."""
    view = representation[1]  # "x1..." -> "1"
    names = ["content"]
    if representation.endswith("_intervened"):
        names.append("content_intervened")
    names.append("style" if view == "1" else "style_changed")
    names.append(f"modality_specific_{view}")
    return [b for b in names if b in blocks]


@torch.no_grad()
def validation_loss(
    g1: nn.Module,
    g2: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor,
    batch_size: int,
    tau: float,
    loss: str = "infonce",
) -> float:
    """The training loss on held-out pairs, averaged over consecutive batches of the training
    batch size (one smaller batch if the split is smaller than that). ``lpsimclr`` takes each
    batch's fresh negatives from the next batch (cyclically; with one batch, from itself)."""
    size = min(batch_size, len(x1))
    starts = list(range(0, len(x1) - size + 1, size))
    z1 = [g1(x1[i : i + size]) for i in starts]
    z2 = [g2(x2[i : i + size]) for i in starts]
    if loss == "lpsimclr":
        nxt = [*range(1, len(starts)), 0]
        values = [fresh_negatives_symmetric(z1[k], z2[k], z1[n], z2[n], tau) for k, n in enumerate(nxt)]
    else:
        values = [infonce_symmetric(a, b, tau, similarity="euclidean") for a, b in zip(z1, z2, strict=True)]
    return float(np.mean([v.item() for v in values]))


def discrete_blocks(cfg: SimulationConfig) -> dict[str, int]:
    """Block name -> number of classes for the blocks that are categorical (Fig. A.5)."""
    names = {
        "content": ("content", "content_intervened"),
        "style": ("style", "style_changed"),
        "modality_specific": ("modality_specific_1", "modality_specific_2"),
    }
    return dict.fromkeys(names.get(cfg.discrete_block, ()), cfg.discrete_classes)


def one_hot(block: np.ndarray, k: int) -> np.ndarray:
    """(N, dim) standardised class values -> (N, dim * k) one-hot targets."""
    index = class_index(block, k)
    return np.eye(k)[index].reshape(len(block), -1)


def probe_blocks(
    val_reps: dict[str, np.ndarray],
    test_reps: dict[str, np.ndarray],
    val_blocks: dict[str, np.ndarray],
    test_blocks: dict[str, np.ndarray],
    device: str | torch.device | None = None,
    solver: str = "eigh",
    discrete: dict[str, int] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Kernel-ridge (and linear) R^2 of every block from every representation.

    A block in ``discrete`` (name -> k classes) is scored by accuracy instead (``metric``): kernel
    ridge regression on the one-hot classes of each component, predicted class = arg max,
    accuracy averaged over the components (chance 1/k); the same kernel family and grid as the
    continuous blocks, so a difference between them is not a difference of probes."""
    discrete = discrete or {}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for rep in val_reps:
        names = representation_blocks(rep, val_blocks)
        x_val, x_test = standardize(val_reps[rep], test_reps[rep])
        targets = {b: one_hot(val_blocks[b], discrete[b]) if b in discrete else val_blocks[b] for b in names}
        y_val = np.concatenate([targets[b] for b in names], axis=1)
        groups, start = [], 0
        for b in names:
            groups.append(list(range(start, start + targets[b].shape[1])))
            start += targets[b].shape[1]
        fits = grid_search_kernel_ridge(x_val, y_val, targets=groups, device=device, solver=solver)
        results[rep] = {}
        for b, fit in zip(names, fits, strict=True):
            if b in discrete:
                k = discrete[b]
                scores = fit.predict(x_test).reshape(len(x_test), -1, k)
                correct = scores.argmax(axis=2) == class_index(test_blocks[b], k)
                lin = np.c_[x_val, np.ones(len(x_val))]
                coef, *_ = np.linalg.lstsq(lin, targets[b], rcond=None)
                lin_scores = (np.c_[x_test, np.ones(len(x_test))] @ coef).reshape(len(x_test), -1, k)
                lin_correct = lin_scores.argmax(axis=2) == class_index(test_blocks[b], k)
                results[rep][b] = {
                    "kernel_ridge": float(correct.mean()),
                    "linear": float(lin_correct.mean()),
                    "metric": "accuracy",
                    "chance": 1.0 / k,
                    "alpha": fit.alpha,
                    "gamma": fit.gamma,
                }
                continue
            results[rep][b] = {
                "kernel_ridge": fit.score(x_test, test_blocks[b]),
                "linear": linear_r2(x_val, val_blocks[b], x_test, test_blocks[b]),
                "metric": "r2",
                "alpha": fit.alpha,
                "gamma": fit.gamma,
            }
    return results


def identifiability(
    val_reps: dict[str, np.ndarray],
    test_reps: dict[str, np.ndarray],
    val_blocks: dict[str, np.ndarray],
    test_blocks: dict[str, np.ndarray],
) -> dict[str, dict[str, dict[str, float]]]:
    """Strong MCC (on the test codes) and weak MCC (CCA fitted on val, scored on test) of every
    block probed from every representation (``mmcl.probing.identifiability``)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for rep in val_reps:
        out[rep] = {
            b: {
                "mcc": mcc(test_reps[rep], test_blocks[b]),
                "weak_mcc": weak_mcc(val_reps[rep], val_blocks[b], test_reps[rep], test_blocks[b]),
            }
            for b in representation_blocks(rep, val_blocks)
        }
    return out


def read_embeddings(run_dir: Path) -> dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Inverse of ``write_embeddings``: split -> (latent blocks, representations)."""
    meta = json.loads((run_dir / "embeddings.json").read_text())
    splits = {}
    for split in ("val", "test"):
        with np.load(run_dir / f"embeddings_{split}.npz") as arrays:
            reps = {rep: arrays[rep] for rep in meta["representations"]}
            columns: dict[str, list[np.ndarray]] = {}
            for name, info in meta["factors"].items():
                columns.setdefault(info["block"], []).append(arrays[f"factor:{name}"])
        blocks = {b: np.stack(cols, axis=1).astype(np.float64) for b, cols in columns.items()}
        splits[split] = (blocks, reps)
    return splits


def write_embeddings(
    out_dir: Path,
    splits: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]],
    seed: int,
    source: dict[str, Any],
    discrete: dict[str, int] | None = None,
) -> None:
    """docs/formats.md embeddings: one scalar factor per latent component (``content_0`` ...);
    components of a ``discrete`` block are written as class indices (kind ``discrete``)."""
    discrete = discrete or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks0, reps0 = splits["val"]
    factors: dict[str, dict[str, Any]] = {}
    for b, arr in blocks0.items():
        kind = "discrete" if b in discrete else "continuous"
        for j in range(arr.shape[1]):
            factors[f"{b}_{j}"] = {
                "kind": kind,
                "role": BLOCK_ROLES[b],
                "n_values": discrete.get(b),
                "block": b,
            }
    representations = {
        rep: {
            "factors": [
                f"{b}_{j}" for b in representation_blocks(rep, blocks0) for j in range(blocks0[b].shape[1])
            ]
        }
        for rep in reps0
    }
    for split, (blocks, reps) in splits.items():
        arrays: dict[str, np.ndarray] = {rep: v.astype(np.float32) for rep, v in reps.items()}
        for b, arr in blocks.items():
            values = class_index(arr, discrete[b]) if b in discrete else arr.astype(np.float64)
            for j in range(arr.shape[1]):
                arrays[f"factor:{b}_{j}"] = values[:, j]
        save_npz(out_dir / f"embeddings_{split}.npz", **arrays)
    meta = {"representations": representations, "factors": factors, "seed": seed, "source": source}
    write_json(out_dir / "embeddings.json", meta)


def evaluate(
    cfg: SimulationConfig,
    process: GenerativeProcess,
    g1: nn.Module,
    g2: nn.Module,
    seed: int,
    run_dir: Path,
    source: dict[str, Any],
) -> dict[str, Any]:
    """Val/test draws, validation loss, block probes, embeddings files; returns the metrics."""
    g1.eval()
    g2.eval()
    splits, losses = {}, {}
    for split, stream in (("val", STREAM_VAL), ("test", STREAM_TEST)):
        blocks, reps, obs = draw_split(process, g1, g2, cfg.eval_samples, seed, stream, cfg.interventions)
        losses[split] = validation_loss(g1, g2, obs["x1"], obs["x2"], cfg.batch_size, cfg.tau, cfg.loss)
        splits[split] = (blocks, reps)
    write_embeddings(run_dir, splits, seed, source, discrete_blocks(cfg))
    probe_device = cfg.device if cfg.device != "auto" else None
    r2 = probe_blocks(
        splits["val"][1],
        splits["test"][1],
        splits["val"][0],
        splits["test"][0],
        probe_device,
        cfg.probe_solver,
        discrete_blocks(cfg),
    )
    ident = identifiability(splits["val"][1], splits["test"][1], splits["val"][0], splits["test"][0])
    return {"val_loss": losses["val"], "test_loss": losses["test"], "r2": r2, "identifiability": ident}


def table_entry(metrics: dict[str, Any]) -> dict[str, float]:
    """Table 8.1 / Fig. A.6 columns of one run: each an average over the two encoders."""
    r2 = metrics["r2"]

    def both(block1: str, block2: str, suffix: str = "") -> float:
        vals = [
            r2[f"x{v}{suffix}"][b]["kernel_ridge"]
            for v, b in ((1, block1), (2, block2))
            if f"x{v}{suffix}" in r2 and b in r2[f"x{v}{suffix}"]
        ]
        return float(np.mean(vals)) if vals else float("nan")

    def both_mcc(kind: str) -> float:
        ident = metrics.get("identifiability", {})
        vals = [ident[f"x{v}"]["content"][kind] for v in (1, 2) if f"x{v}" in ident]
        return float(np.mean(vals)) if vals else float("nan")

    entry = {
        "content": both("content", "content"),
        "style": both("style", "style_changed"),
        "modality_specific": both("modality_specific_1", "modality_specific_2"),
        "val_loss": float(metrics["val_loss"]),
    }
    if "identifiability" in metrics:
        entry |= {"content_mcc": both_mcc("mcc"), "content_weak_mcc": both_mcc("weak_mcc")}
    if "x1_intervened" in r2:
        entry |= {
            "intervened_content": both("content", "content", "_intervened"),
            "intervened_content_prime": both("content_intervened", "content_intervened", "_intervened"),
            "intervened_style": both("style", "style_changed", "_intervened"),
            "intervened_modality_specific": both("modality_specific_1", "modality_specific_2", "_intervened"),
        }
    return entry
