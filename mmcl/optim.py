"""What every trained module shares: optimisers, the learning-rate schedule, resumable RNG state.

The schedule is per optimiser step: a linear warm-up over ``warmup_steps``, then constant or a
cosine decay to 0 at ``trainer.max_steps`` (a cosine schedule without ``max_steps`` is an error,
not a silent constant). :class:`ResumableRNG` puts the global RNG states in every checkpoint so a
resumed run draws the same numbers as an uninterrupted one. Used by ``mmcl fit``'s
ContrastiveModule, the DMVAE's ContentModule and SpecificModule, and the baselines.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import torch

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULES = ("constant", "cosine")


def check_schedule(lr: float, lr_schedule: str, warmup_steps: int, where: str) -> None:
    if not lr > 0:
        raise ValueError(f"{where}.lr must be > 0, got {lr}")
    if lr_schedule not in SCHEDULES:
        raise ValueError(f"{where}.lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    if warmup_steps < 0:
        raise ValueError(f"{where}.warmup_steps must be >= 0, got {warmup_steps}")


def check_optimizer(name: str, where: str) -> None:
    if name not in OPTIMIZERS:
        raise ValueError(f"{where}.optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")


def lr_factor(
    warmup_steps: int, schedule: str, total_steps: int | None, where: str = "trainer"
) -> Callable[[int], float]:
    """The multiplier of the base learning rate at each optimiser step (for ``LambdaLR``)."""
    if schedule == "cosine" and not (total_steps and total_steps > 0):
        raise ValueError(f"lr_schedule 'cosine' needs {where}.max_steps > 0, got {total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "cosine":
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def scheduled(optimizer: torch.optim.Optimizer, module, where: str = "trainer") -> dict:
    """Lightning's ``configure_optimizers`` value: ``optimizer`` with the module's schedule
    (``hparams.warmup_steps``, ``hparams.lr_schedule``) stepped every training step."""
    trainer = getattr(module, "_trainer", None)
    total = trainer.max_steps if trainer is not None else None
    hp = module.hparams
    factor = lr_factor(hp.warmup_steps, hp.lr_schedule, total, where)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class ResumableRNG:
    """Puts the global RNG states (torch, numpy, random) in every checkpoint and restores them
    when training resumes, so that subsets, noise and dropout after a resume continue exactly as
    in an uninterrupted run (the data order is restored by ``mmcl.data``)."""

    _pending_rng: dict | None = None

    def save_rng(self, checkpoint: dict) -> None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        # plain types and tensors only: Lightning restores checkpoints with weights_only=True
        checkpoint["rng_state"] = {
            "torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate(),
        }

    def load_rng(self, checkpoint: dict) -> None:
        self._pending_rng = checkpoint.get("rng_state")

    def on_train_start(self) -> None:
        state, self._pending_rng = self._pending_rng, None
        if state is not None:
            torch.set_rng_state(state["torch"])
            name, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            random.setstate(state["python"])
