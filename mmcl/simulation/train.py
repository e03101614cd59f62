"""Training of the two simulation encoders with symmetric InfoNCE (Eq. 8.2, seed 003; Table A.2a).

``g_1, g_2``: MLP encoders of ``x_1, x_2``; loss (config ``loss``) ``infonce``: Eq. 8.2,
``infonce_symmetric`` with in-batch cross-modal negatives, or ``lpsimclr``: upstream's
``LpSimCLRLoss`` as ``main_mlp.py`` uses it (``fresh_negatives_symmetric``: the negatives are a
second batch, drawn from the same step's generator, through the anchor's own encoder); both
with the negative squared Euclidean distance as similarity, temperature tau; Adam; gradient clipping by 2-norm. Every
step draws a fresh batch from the generative process, seeded by (run seed, step), so a run that
is killed and resumed from its last checkpoint replays exactly the batches it would have seen
and ends with bit-identical weights (on the same device and thread count).

Checkpoints (``checkpoint.pt``) hold the step, both encoders, the optimiser, the generative
process and the loss log; they are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmcl.checkpoint import load_checkpoint
from mmcl.io import save_torch
from mmcl.losses import fresh_negatives_symmetric, infonce_symmetric
from mmcl.simulation.config import SimulationConfig
from mmcl.simulation.generative import (
    STREAM_INIT,
    STREAM_TRAIN,
    GenerativeProcess,
    encoder,
    seed_for,
    torch_generator,
)

CHECKPOINT = "checkpoint.pt"
# Keys that change what is trained; a checkpoint made under different values is not resumed.
TRAINING_KEYS = (
    "lr_schedule",
    "content_n",
    "style_n",
    "modality_n",
    "encoding_size",
    "latent_std",
    "style_change_std",
    "discrete_block",
    "discrete_classes",
    "stat_covariance",
    "mixing_layers",
    "mixing_slope",
    "cond_thresh_ratio",
    "cond_pool",
    "encoder_widths",
    "encoder_slope",
    "tau",
    "loss",
    "lr",
    "batch_size",
    "grad_clip",
)


@dataclass
class TrainedRun:
    process: GenerativeProcess
    g1: nn.Module
    g2: nn.Module
    step: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    finished: bool = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build(
    cfg: SimulationConfig, setting: str, row: str, seed: int, device: torch.device
) -> tuple[GenerativeProcess, nn.Module, nn.Module]:
    """The run's generative process and freshly initialised encoders (deterministic in seed)."""
    process = GenerativeProcess(cfg, setting, row, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(seed, STREAM_INIT))
        g1 = encoder(process.dim, cfg.widths(setting), cfg.encoding_size, cfg.encoder_slope)
        g2 = encoder(process.dim, cfg.widths(setting), cfg.encoding_size, cfg.encoder_slope)
    return process.to(device), g1.to(device), g2.to(device)


def _identity(cfg: SimulationConfig, setting: str, row: str, seed: int) -> dict[str, Any]:
    # a cosine schedule depends on the total number of steps; a constant one does not
    steps = cfg.steps if cfg.lr_schedule == "cosine" else None
    return {
        "setting": setting,
        "row": row,
        "seed": seed,
        "schedule_steps": steps,
        **{k: getattr(cfg, k) for k in TRAINING_KEYS},
    }


def train(
    cfg: SimulationConfig,
    setting: str,
    row: str,
    seed: int,
    run_dir: Path,
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
) -> TrainedRun:
    """Train (or resume) one run up to ``cfg.steps``.

    ``stop_after``: return after that many steps of this call, having written a checkpoint --
    the state a kill right after a checkpoint leaves behind (used by the resume test).
    """
    device = resolve_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    process, g1, g2 = build(cfg, setting, row, seed, device)
    params = list(g1.parameters()) + list(g2.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step))
    identity = _identity(cfg, setting, row, seed)
    run = TrainedRun(process, g1, g2, step=0)
    window: list[float] = []  # losses since the last log line

    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, "simulation checkpoint", device)
        if not same_identity(ckpt["identity"], identity):
            diff = sorted(k for k in identity if ckpt["identity"].get(k, DEFAULTS.get(k)) != identity[k])
            raise ValueError(
                f"{ckpt_path} was made with different settings ({', '.join(diff)}); "
                "remove it or choose another output directory"
            )
        process.load_state_dict(ckpt["process"])
        g1.load_state_dict(ckpt["g1"])
        g2.load_state_dict(ckpt["g2"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        run.step, run.losses, run.seconds = ckpt["step"], list(ckpt["losses"]), ckpt["seconds"]
        run.cpu_seconds = ckpt.get("cpu_seconds", 0.0)
        window = list(ckpt["window"])
        log(f"[{setting}/{row}/seed{seed}] resuming from step {run.step}")

    def checkpoint() -> None:
        save_torch(
            {
                "identity": identity,
                "step": run.step,
                "process": process.state_dict(),
                "g1": g1.state_dict(),
                "g2": g2.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "losses": run.losses,
                "window": window,
                "seconds": run.seconds,
                "cpu_seconds": run.cpu_seconds,
            },
            ckpt_path,
        )

    g1.train()
    g2.train()
    start_step, t0 = run.step, time.perf_counter()
    t_last, cpu_last = t0, time.process_time()
    while run.step < cfg.steps:
        gen = torch_generator(seed, STREAM_TRAIN, run.step, device=device)
        batch = process.sample(cfg.batch_size, gen)
        if cfg.loss == "lpsimclr":  # upstream: a second, independent batch gives the negatives
            fresh = process.sample(cfg.batch_size, gen)
            z1f, z2f = g1(fresh.x1), g2(fresh.x2)
            loss = fresh_negatives_symmetric(g1(batch.x1), g2(batch.x2), z1f, z2f, cfg.tau)
        else:
            loss = infonce_symmetric(g1(batch.x1), g2(batch.x2), cfg.tau, similarity="euclidean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, max_norm=cfg.grad_clip, norm_type=2.0)
        optimizer.step()
        schedule.step()
        run.step += 1
        window.append(loss.item())
        if not math.isfinite(window[-1]):
            raise FloatingPointError(f"[{setting}/{row}/seed{seed}] loss is {window[-1]} at step {run.step}")
        now = time.perf_counter()
        if run.step % cfg.log_every == 0 or run.step == cfg.steps:
            run.losses.append((run.step, sum(window) / len(window)))
            rate = (run.step - start_step) / max(now - t0, 1e-9)
            eta = (cfg.steps - run.step) / max(rate, 1e-9)
            log(
                f"[{setting}/{row}/seed{seed}] step {run.step}/{cfg.steps} loss {run.losses[-1][1]:.4f} "
                f"{rate:.2f} steps/s ETA {_duration(eta)}"
            )
            window = []
        cpu_now = time.process_time()
        run.seconds += now - t_last
        run.cpu_seconds += cpu_now - cpu_last
        t_last, cpu_last = now, cpu_now
        interrupted = stop_after is not None and run.step - start_step >= stop_after
        if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps or interrupted:
            checkpoint()
        if interrupted:
            return run
    if start_step == run.step and not ckpt_path.exists():
        checkpoint()
    run.finished = True
    g1.eval()
    g2.eval()
    return run


DEFAULTS = SimulationConfig(rows=["p1.0"]).to_dict()


def same_identity(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a saved run identity matches; a key the saved one lacks (added to the config
    later) counts as that key's default, so older runs are still resumed and read."""
    return all(saved.get(k, DEFAULTS.get(k)) == v for k, v in current.items()) and set(saved) <= set(current)


def lr_factor(cfg: SimulationConfig, step: int) -> float:
    """Multiplier of ``cfg.lr`` at ``step``: 1 (constant, the paper) or a cosine decay to 0 over
    ``cfg.steps`` (for shortened runs, where a decaying rate sharpens the final encoders)."""
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    return 1.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
