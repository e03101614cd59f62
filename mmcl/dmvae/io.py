"""Run layout and checkpoint loading with clear errors for ``mmcl dmvae`` (writers: ``mmcl.io``).

Run directory (``--out`` of ``mmcl dmvae fit``)::

    RUN/config.yaml                     resolved config of the latest fit (configs/fit_NNN.yaml: each)
    RUN/stage1/checkpoints/last.ckpt    stage 1 (MoPoE-InfoNCE), resumable
    RUN/stage1/logs/version_N/metrics.csv
    RUN/stage2/checkpoints/last.ckpt    stage 2 (conditional VAEs + discriminators), resumable
    RUN/stage2/logs/version_N/metrics.csv
    RUN/gmm.npz                         GMM prior on c (unconditional generation)
    RUN/gmm_m_<modality>.npz            GMM on the draws of q(m_i | x_i) (``--specific-prior gmm``)
    RUN/eval/                           `mmcl dmvae eval` output
    RUN/samples/                        `mmcl dmvae generate` output
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcl import io
from mmcl.checkpoint import load_checkpoint

# "baseline": a joint multimodal VAE (mmcl.dmvae.baselines) instead of stages 1 and 2
STAGES: tuple[str, ...] = ("1", "2", "gmm", "baseline")


class DMVAEError(ValueError):
    """Bad input to ``mmcl dmvae``: the message names the file or key and the fix."""


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def stage_dir(self, stage: str) -> Path:
        return self.root / (stage if stage == "baseline" else f"stage{stage}")

    def checkpoint(self, stage: str) -> Path:
        return self.stage_dir(stage) / "checkpoints" / "last.ckpt"

    @property
    def gmm(self) -> Path:
        return self.root / "gmm.npz"

    def specific_gmm(self, modality: str) -> Path:
        """The density fitted on the aggregate posterior of m_modality (``gmm`` stage)."""
        return self.root / f"gmm_m_{modality}.npz"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"


# ----------------------------------------------------------------------------- checkpoints
def read_checkpoint(path: str | Path, what: str) -> dict:
    """A Lightning checkpoint as a dict; ``what`` ('stage-1', 'stage-2') names it in errors."""
    ckpt = load_checkpoint(path, f"{what} checkpoint", error=DMVAEError)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise DMVAEError(f"{path}: not a Lightning checkpoint (no state_dict / hyper_parameters)")
    return ckpt


def model_hparams(ckpt: dict) -> dict[str, Any]:
    return {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}


def check_vocabulary(vocabulary: list[str] | None, dataset_vocabulary: list[str], where: str) -> None:
    if vocabulary is None or list(vocabulary) != list(dataset_vocabulary):
        n = "no" if vocabulary is None else len(vocabulary)
        raise DMVAEError(
            f"{where} was trained with a different vocabulary ({n} tokens) than the dataset "
            f"({len(dataset_vocabulary)} tokens); token ids would mean different words -- use the "
            "dataset the checkpoint was trained on"
        )


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Readable ``key: old -> new`` lines of two nested hyperparameter dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif _norm(a) != _norm(b):
            sa, sb = (f"{len(v)} entries" if isinstance(v, list) and len(v) > 8 else repr(v) for v in (a, b))
            out.append(f"{prefix}{key}: {sa} -> {sb}")
    return out


def _norm(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def save_figure(fig, path: Path) -> None:
    """Every DMVAE figure: 120 dpi, trimmed to its content, written atomically."""
    io.save_figure(fig, path, dpi=120, bbox_inches="tight")
