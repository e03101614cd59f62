"""Loading a trained DMVAE run (stage-2 checkpoint, dataset, GMM prior) for generate / eval."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from mmcl.checkpoint import rebuild_module
from mmcl.dmvae.baselines import BaselineModule
from mmcl.dmvae.data import DMVAEDataModule
from mmcl.dmvae.gmm import ContentPrior
from mmcl.dmvae.io import DMVAEError, RunLayout, check_vocabulary, model_hparams, read_checkpoint
from mmcl.dmvae.protocol import EvaluatedModel
from mmcl.dmvae.stage2 import SpecificModule
from mmcl.manifest import DataError, file_sha256


@dataclass
class LoadedRun:
    layout: RunLayout
    module: EvaluatedModel  # stage 2 or a baseline (mmcl.dmvae.protocol)
    data: DMVAEDataModule
    config: dict
    checkpoint: Path
    global_step: int
    prior: ContentPrior | None
    prior_meta: dict
    # densities fitted on the aggregate posterior of each m_i (``gmm_m_<modality>.npz``), where fitted
    specific_priors: dict[str, ContentPrior] = field(default_factory=dict)


def run_config(layout: RunLayout) -> dict:
    if not layout.config.is_file():
        raise DMVAEError(
            f"{layout.config} not found: {layout.root} is not a run directory of `mmcl dmvae fit`"
        )
    return yaml.safe_load(layout.config.read_text()) or {}


def load_specific_module(path: Path, vocabulary: list[str]) -> tuple[SpecificModule, dict]:
    ckpt = read_checkpoint(path, "stage-2")
    hp = model_hparams(ckpt)
    if "content_hparams" not in hp:
        raise DMVAEError(f"{path}: not a DMVAE stage-2 checkpoint (no content_hparams)")
    check_vocabulary(hp["content_hparams"].get("vocabulary"), vocabulary, f"stage-2 checkpoint {path}")
    return rebuild_module(SpecificModule, hp, ckpt["state_dict"], path, "stage-2 model", DMVAEError), ckpt


def load_baseline_module(path: Path, vocabulary: list[str]) -> tuple[BaselineModule, dict]:
    ckpt = read_checkpoint(path, "baseline")
    hp = model_hparams(ckpt)
    if "objective" not in hp:
        raise DMVAEError(f"{path}: not a baseline checkpoint (no objective)")
    check_vocabulary(hp.get("vocabulary"), vocabulary, f"baseline checkpoint {path}")
    return rebuild_module(BaselineModule, hp, ckpt["state_dict"], path, "baseline model", DMVAEError), ckpt


class StandardNormalPrior:
    """p(z) = N(0, I) with the ``sample(n, seed)`` / ``dim`` of :class:`ContentPrior`."""

    def __init__(self, dim: int):
        self.dim = dim
        self.meta = {"prior": "standard normal", "dim": dim}

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        return torch.from_numpy(rng.standard_normal((n, self.dim)).astype(np.float32))


def load_run(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    need_prior: bool = False,
) -> LoadedRun:
    """The stage-2 model of ``RUN`` with its dataset (``data_root`` or the run's ``data.root``)."""
    layout = RunLayout(Path(run_dir))
    config = run_config(layout)
    root = data_root or (config.get("data") or {}).get("root")
    if not root:
        raise DMVAEError(f"{layout.config} names no data.root; pass --data")
    data_kwargs = {
        k: v
        for k, v in (config.get("data") or {}).items()
        if k in ("image_mean", "image_std", "on_corrupt", "shuffle_buffer")
    }
    try:
        data = DMVAEDataModule(
            str(root),
            batch_size=batch_size,
            num_workers=num_workers,
            seed=int(config.get("seed_everything") or 0),
            **data_kwargs,
        )
    except DataError as exc:
        raise DMVAEError(str(exc)) from None
    ckpt_path = layout.checkpoint("2")
    baseline_path = layout.checkpoint("baseline")
    if not ckpt_path.is_file() and baseline_path.is_file():
        module, ckpt = load_baseline_module(baseline_path, data.vocabulary)
        # a joint VAE generates unconditionally from its own prior p(z) = N(0, I)
        prior = StandardNormalPrior(module.content_size)
        return LoadedRun(
            layout, module, data, config, baseline_path, int(ckpt.get("global_step", 0)), prior, prior.meta
        )
    if not ckpt_path.is_file():
        raise DMVAEError(
            f"{ckpt_path} not found: train stage 2 first (`mmcl dmvae fit --stages [2,gmm]`), "
            "or a baseline (`--stages [baseline]`)"
        )
    module, ckpt = load_specific_module(ckpt_path, data.vocabulary)
    global_step = int(ckpt.get("global_step", 0))
    prior, prior_meta = None, {}
    if layout.gmm.is_file():
        prior, prior_meta = ContentPrior.load(layout.gmm)
        if prior.dim != module.content_size:
            raise DMVAEError(
                f"{layout.gmm} models {prior.dim}-d content but the stage-2 model uses encoding size "
                f"{module.content_size}; refit it with `mmcl dmvae fit --stages [gmm]`"
            )
    elif need_prior:
        raise DMVAEError(f"{layout.gmm} not found: fit the GMM prior first (`mmcl dmvae fit --stages [gmm]`)")
    return LoadedRun(
        layout,
        module,
        data,
        config,
        ckpt_path,
        global_step,
        prior,
        prior_meta,
        specific_priors(layout, module, global_step),
    )


def specific_priors(layout: RunLayout, module: SpecificModule, global_step: int) -> dict[str, ContentPrior]:
    """The fitted densities of m_i that belong to this stage-2 checkpoint; one fitted on
    another checkpoint (an earlier step of a run trained further, a retrained stage 2) is refused."""
    out = {}
    digest = None
    for modality in module.modalities:
        path = layout.specific_gmm(modality)
        if not path.is_file():
            continue
        prior, meta = ContentPrior.load(path)
        digest = digest or file_sha256(layout.checkpoint("2"))
        if prior.dim != module.specific_sizes[modality] or meta.get("stage2_sha256") != digest:
            which = (
                "records no stage-2 checkpoint hash (an older mmcl fitted it)"
                if "stage2_sha256" not in meta
                else f"was fitted on another stage-2 checkpoint (m_{modality} of {prior.dim} dimensions, "
                f"step {meta.get('stage2_global_step')}; this one: {module.specific_sizes[modality]}, "
                f"step {global_step})"
            )
            raise DMVAEError(f"{path} {which}; refit it with `mmcl dmvae fit --stages [gmm]`")
        out[modality] = prior
    return out
