"""Training-time measurements around :class:`~mmcl.train.module.ContrastiveModule`.

* :class:`ThroughputMonitor` -- samples/s (global and per device), data-wait fraction (time the
  training loop spends blocked in the data loader's ``next()``), and an ETA.
* :class:`OnlineProbe` -- solo-learn's online linear probe: per modality a linear read-out of
  every non-constant *content* factor of the manifest's factor table, trained on detached
  embeddings of each training batch with its own optimiser (it never touches the encoders),
  scored on the validation set each validation epoch (accuracy for discrete factors, R^2 for
  continuous ones); plus image<->text retrieval recall@1/5 on the validation set.
* :class:`ProgressBar` -- tqdm bar that also shows samples/s and the ETA of the whole run.
* :class:`RunMetadata` -- the global seed in every checkpoint (``mmcl embed`` reports it).
* :class:`RunCheckpoint` -- ModelCheckpoint that also saves the final step (``max_steps``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from torch import nn

from mmcl.distributed import gather_no_grad
from mmcl.losses import similarity_matrix


def _format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


# ----------------------------------------------------------------------------- throughput
class ThroughputMonitor(Callback):
    """Logs ``perf/samples_per_sec``, ``perf/samples_per_sec_per_device``, ``perf/data_wait_frac``
    and ``perf/eta_sec`` every ``trainer.log_every_n_steps`` steps (validation time excluded)."""

    def __init__(self, window: int | None = None):
        self.window = window
        self.samples_per_sec = float("nan")
        self.eta_sec = float("nan")
        self.data_wait_frac = float("nan")
        self._reset()

    def _reset(self) -> None:
        self._t0: float | None = None
        self._wait0 = 0.0
        self._samples = 0
        self._paused = 0.0
        self._pause_start: float | None = None

    @staticmethod
    def _wait_seconds(trainer: pl.Trainer) -> float:
        loader = trainer.train_dataloader
        return float(getattr(loader, "wait_seconds", 0.0))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._reset()  # worker start-up at the epoch boundary is not a per-step cost

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()
            self._wait0 = self._wait_seconds(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._pause_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._pause_start is not None:
            self._paused += time.perf_counter() - self._pause_start
            self._pause_start = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._t0 is None:
            return
        self._samples += int(batch["image"].shape[0])
        every = self.window or trainer.log_every_n_steps
        if trainer.global_step % max(1, every) != 0:
            return
        now = time.perf_counter()
        elapsed = now - self._t0 - self._paused
        if elapsed <= 0 or self._samples == 0:
            return
        wait = self._wait_seconds(trainer) - self._wait0
        world = trainer.world_size
        per_device = self._samples / elapsed
        self.samples_per_sec = per_device * world
        self.data_wait_frac = min(1.0, max(0.0, wait / elapsed))
        steps = self._samples / max(1, int(batch["image"].shape[0]))
        remaining = _remaining_steps(trainer)
        self.eta_sec = remaining * elapsed / steps if remaining is not None else float("nan")
        pl_module.log_dict(
            {
                "perf/samples_per_sec": self.samples_per_sec,
                "perf/samples_per_sec_per_device": per_device,
                "perf/data_wait_frac": self.data_wait_frac,
                "perf/eta_sec": self.eta_sec,
            },
            on_step=True,
            on_epoch=False,
            rank_zero_only=True,
        )
        self._t0, self._wait0, self._samples, self._paused = now, self._wait_seconds(trainer), 0, 0.0


def _remaining_steps(trainer: pl.Trainer) -> float | None:
    if trainer.max_steps is not None and trainer.max_steps > 0:
        return trainer.max_steps - trainer.global_step
    n = trainer.num_training_batches
    if trainer.max_epochs is not None and trainer.max_epochs > 0 and n != float("inf"):
        done = trainer.current_epoch * n + trainer.fit_loop.epoch_loop.batch_progress.current.ready
        return trainer.max_epochs * n - done
    return None


class ProgressBar(TQDMProgressBar):
    """tqdm bar with the run's samples/s and ETA (to ``max_steps``) next to the loss."""

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        for cb in trainer.callbacks:
            if isinstance(cb, ThroughputMonitor) and cb.samples_per_sec == cb.samples_per_sec:
                items["samples/s"] = f"{cb.samples_per_sec:.1f}"
                if cb.eta_sec == cb.eta_sec:
                    items["ETA"] = _format_eta(cb.eta_sec)
        return items


# ----------------------------------------------------------------------------- probe
def recall_at_k(
    queries: torch.Tensor,
    keys: torch.Tensor,
    ks: tuple[int, ...] = (1, 5),
    similarity: str = "cosine",
    chunk: int = 1024,
) -> dict[int, float]:
    """Fraction of queries i whose partner key i is among the k most similar keys."""
    n = len(queries)
    hits = dict.fromkeys(ks, 0)
    for start in range(0, n, chunk):
        s = similarity_matrix(queries[start : start + chunk], keys, similarity)
        true = s[torch.arange(len(s)), torch.arange(start, start + len(s))]
        # rank = number of keys strictly more similar than the partner (ties favour the partner)
        rank = (s > true[:, None]).sum(1)
        for k in ks:
            hits[k] += int((rank < k).sum())
    return {k: hits[k] / max(1, n) for k in ks}


class OnlineProbe(Callback):
    """Online detached linear probes of the content factors and val retrieval recall@1/5.

    Args:
        lr: Adam learning rate of the probes.
        retrieval_ks: the k of recall@k.
    """

    def __init__(self, lr: float = 1e-3, retrieval_ks: tuple[int, ...] = (1, 5)):
        self.lr = lr
        self.retrieval_ks = tuple(retrieval_ks)
        self.probes: nn.ModuleDict | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.factors: dict[str, dict] = {}
        self._pending_state: dict | None = None
        self._val: dict[str, list[torch.Tensor]] = {}

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.probes is not None:
            return
        manifest = trainer.datamodule.manifest
        self.factors = {f.name: f.to_json() for f in manifest.content_factors()}
        d = pl_module.hparams.encoding_size
        probes = {}
        gen = torch.Generator().manual_seed(0)  # own generator: the probe never shifts the model's RNG
        for modality in ("image", "text"):
            for name, f in self.factors.items():
                if modality not in f["modalities"]:
                    continue
                out = f["n_values"] if f["kind"] == "discrete" else 1
                layer = nn.Linear(d, out)
                with torch.no_grad():
                    bound = 1.0 / d**0.5
                    layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=gen))
                    layer.bias.zero_()
                probes[f"{modality}__{name}"] = layer
        self.probes = nn.ModuleDict(probes).to(pl_module.device)
        self.optimizer = torch.optim.Adam(self.probes.parameters(), lr=self.lr)
        if self._pending_state is not None:
            self._load(self._pending_state)
            self._pending_state = None

    def _heads(self):
        assert self.probes is not None
        for key, head in self.probes.items():
            modality, name = key.split("__", 1)
            yield modality, name, self.factors[name], head

    @staticmethod
    def _inputs(outputs: dict, batch: dict, modality: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        z = gather_no_grad(outputs[f"z_{modality}"]).float()
        y = gather_no_grad(batch[f"latents_{modality}"][name].to(z.device))
        return z, y

    def _loss(self, head: nn.Module, f: dict, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pred = head(z)
        if f["kind"] == "discrete":
            return F.cross_entropy(pred, y.long())
        return F.mse_loss(pred.squeeze(-1), y.float())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.probes is None or not isinstance(outputs, dict) or "z_image" not in outputs:
            return
        with torch.enable_grad(), torch.autocast(device_type=pl_module.device.type, enabled=False):
            self.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for modality, name, f, head in self._heads():
                z, y = self._inputs(outputs, batch, modality, name)
                total = total + self._loss(head, f, z, y)
            total.backward()
            self.optimizer.step()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._val = {}

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if self.probes is None or not isinstance(outputs, dict):
            return
        for modality in ("image", "text"):
            self._val.setdefault(f"z_{modality}", []).append(
                gather_no_grad(outputs[f"z_{modality}"]).float().cpu()
            )
        for modality, name, _, _ in self._heads():
            y = gather_no_grad(batch[f"latents_{modality}"][name].to(pl_module.device)).cpu()
            self._val.setdefault(f"{modality}__{name}", []).append(y)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.probes is None or not self._val or trainer.sanity_checking:
            return
        metrics: dict[str, float] = {}
        z = {m: torch.cat(self._val[f"z_{m}"]) for m in ("image", "text")}
        with torch.no_grad(), torch.autocast(device_type=pl_module.device.type, enabled=False):
            for modality, name, f, head in self._heads():
                y = torch.cat(self._val[f"{modality}__{name}"])
                pred = head(z[modality].to(pl_module.device)).cpu()
                if f["kind"] == "discrete":
                    metrics[f"probe/{modality}/{name}_acc"] = float((pred.argmax(-1) == y).float().mean())
                else:
                    p, t = pred.squeeze(-1).double(), y.double()
                    metrics[f"probe/{modality}/{name}_r2"] = float(
                        1 - ((p - t) ** 2).sum() / ((t - t.mean()) ** 2).sum()
                    )
            sim = pl_module.hparams.similarity
            for direction, (q, k) in {
                "image_to_text": (z["image"], z["text"]),
                "text_to_image": (z["text"], z["image"]),
            }.items():
                for kk, r in recall_at_k(q, k, self.retrieval_ks, sim).items():
                    metrics[f"retrieval/{direction}_recall@{kk}"] = r
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, rank_zero_only=True)
        self._val = {}

    # the probes' weights and optimiser travel in the checkpoint, so a resumed run continues them
    def state_dict(self) -> dict:
        if self.probes is None:
            return {}
        return {"probes": self.probes.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        if self.probes is None:
            self._pending_state = state_dict
        else:
            self._load(state_dict)

    def _load(self, state: dict) -> None:
        self.probes.load_state_dict(state["probes"])
        self.optimizer.load_state_dict(state["optimizer"])


# ----------------------------------------------------------------------------- checkpoints
class RunMetadata(Callback):
    """Records the run's global seed and the precision it trained in (chosen for the hardware
    when unset, :mod:`mmcl.precision`) in every checkpoint (``mmcl_seed``, ``mmcl_precision``)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        seed = os.environ.get("PL_GLOBAL_SEED")
        checkpoint["mmcl_seed"] = int(seed) if seed is not None else None
        checkpoint["mmcl_precision"] = str(trainer.precision)


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also saves when the run reaches ``max_steps``.

    The final save happens in ``on_train_batch_end`` like the periodic ones, which is the state
    Lightning resumes from exactly (a save from ``on_train_end`` restores with a phantom step).
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if (
            trainer.max_steps is not None
            and 0 < trainer.max_steps <= trainer.global_step
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
