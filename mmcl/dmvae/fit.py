"""``mmcl dmvae fit``: train stage 1, stage 2 and the GMM prior, resumably (seed 003 §9.2.5).

    mmcl dmvae fit --config configs/dmvae/default.yaml
    mmcl dmvae fit --config configs/dmvae/default.yaml --stages [2,gmm] --stage2.model.delta 0 --out DIR

The YAML is LightningCLI-style (``seed_everything``, ``data``, and per stage ``trainer`` /
``model`` sections whose keys are the arguments of ``lightning.Trainer``,
:class:`~mmcl.dmvae.stage1.ContentModule` and :class:`~mmcl.dmvae.stage2.SpecificModule`);
any key can be overridden on the command line (``--stage2.model.delta 0``); unknown keys are
errors. The resolved config is written to ``RUN/config.yaml`` (and ``RUN/configs/fit_NNN.yaml``
for every invocation).

Stages run in the order 1 -> 2 -> gmm. Each Lightning stage saves ``checkpoints/last.ckpt``
every ``checkpoint_every_n_steps`` steps and at its end; running the same command again
resumes a killed stage exactly where its last checkpoint left it (step, optimisers, data
order) and skips finished ones. A stage-1 checkpoint from elsewhere can be used with
``stage1_checkpoint``; stage 2 refuses to start without one, and refuses a checkpoint made
for another vocabulary or encoding size.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from mmcl.checkpoint import rebuild_module
from mmcl.cli import user_error
from mmcl.dmvae.baselines import BaselineModule
from mmcl.dmvae.data import DMVAEDataModule, add_unit_images
from mmcl.dmvae.gmm import ContentPrior, fit_content_prior
from mmcl.dmvae.io import (
    STAGES,
    DMVAEError,
    RunLayout,
    check_vocabulary,
    differences,
    model_hparams,
    read_checkpoint,
)
from mmcl.dmvae.losses import sample_gaussian
from mmcl.dmvae.run import load_specific_module
from mmcl.dmvae.stage1 import ContentModule
from mmcl.dmvae.stage2 import SpecificModule
from mmcl.io import atomic_write_text
from mmcl.manifest import DataError, file_sha256
from mmcl.precision import fill_precision
from mmcl.train.callbacks import ProgressBar, RunCheckpoint, RunMetadata, ThroughputMonitor

TRAINER_SKIP = {"callbacks", "logger", "default_root_dir", "enable_checkpointing", "plugins"}
STAGE1_LINKED = {"vocabulary", "max_text_length", "image_resolution"}
DATA_SKIP = {"batch_size", "eval_batch_size", "expected_vocabulary", "seed"}


# ----------------------------------------------------------------------------- parser
def build_parser(prog: str = "mmcl dmvae fit"):
    from jsonargparse import ActionConfigFile
    from lightning.pytorch.cli import LightningArgumentParser

    p = LightningArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], exit_on_error=False)
    p.add_argument("--config", action=ActionConfigFile, help="YAML config (configs/dmvae/*.yaml)")
    p.add_argument("--seed_everything", type=int, default=0, help="seed of init, data order and sampling")
    p.add_argument("--out", type=str, default="runs/dmvae", help="run directory (checkpoints, logs, gmm)")
    p.add_argument(
        "--stages",
        type=list[int | str],
        default=["1", "2", "gmm"],
        help="stages to run, in order 1, 2, gmm (e.g. [2,gmm])",
    )
    p.add_argument(
        "--stage1_checkpoint",
        type=str | None,
        default=None,
        help="use this stage-1 checkpoint instead of RUN/stage1/checkpoints/last.ckpt",
    )
    p.add_argument(
        "--threads",
        type=int | None,
        default=None,
        help="torch CPU threads (1 is fastest on a busy 2-core machine)",
    )
    p.add_argument("--progress", type=str, default="bar", help="bar | lines (one line per log step) | none")
    p.add_class_arguments(DMVAEDataModule, "data", skip=DATA_SKIP)
    for stage, cls, skip in (
        ("stage1", ContentModule, STAGE1_LINKED),
        ("stage2", SpecificModule, {"content_hparams"}),
        ("baseline", BaselineModule, STAGE1_LINKED),
    ):
        p.add_argument(f"--{stage}.batch_size", type=int, default=128, help="training batch per device")
        p.add_argument(f"--{stage}.eval_batch_size", type=int | None, default=None)
        p.add_argument(
            f"--{stage}.checkpoint_every_n_steps",
            type=int,
            default=200,
            help="save checkpoints/last.ckpt every this many steps (resume point)",
        )
        if stage == "stage2":
            p.add_argument(
                "--stage2.cache_content",
                type=bool,
                default=True,
                help="encode the training split once with the frozen stage 1 instead of every step",
            )
        p.add_class_arguments(pl.Trainer, f"{stage}.trainer", skip=TRAINER_SKIP, fail_untyped=False)
        p.add_class_arguments(cls, f"{stage}.model", skip=skip, fail_untyped=False)
    p.add_argument("--gmm.n_components", type=int, default=100, help="mixture components (thesis: 100)")
    p.add_argument("--gmm.covariance_type", type=str, default="full", help="full | diag | tied | spherical")
    p.add_argument(
        "--gmm.max_samples",
        type=int | None,
        default=None,
        help="fit on at most this many training examples (all when null)",
    )
    return p


def parse_config(argv: list[str]):
    parser = build_parser()
    cfg = parser.parse_args(argv)
    stages = [str(s) for s in cfg.stages]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise DMVAEError(f"--stages takes a list of {', '.join(STAGES)}, got {cfg.stages}")
    cfg.stages = sorted(set(stages), key=STAGES.index)
    if "baseline" in cfg.stages and len(cfg.stages) > 1:
        raise DMVAEError(
            f"--stages {cfg.stages}: a run holds either the DMVAE (1, 2, gmm) or one baseline; "
            "train the baseline with --stages [baseline] and its own --out"
        )
    for stage in ("stage1", "stage2", "baseline"):
        if cfg[stage].batch_size < 1:
            raise DMVAEError(f"{stage}.batch_size must be >= 1, got {cfg[stage].batch_size}")
        if cfg[stage].checkpoint_every_n_steps < 1:
            raise DMVAEError(f"{stage}.checkpoint_every_n_steps must be >= 1")
    if cfg.progress not in ("bar", "lines", "none"):
        raise DMVAEError(f"--progress must be bar, lines or none, got {cfg.progress!r}")
    return parser, cfg


def _as_dict(ns) -> dict[str, Any]:
    return ns.as_dict() if hasattr(ns, "as_dict") else dict(ns)


def save_resolved_config(parser, cfg, layout: RunLayout) -> Path:
    text = parser.dump(cfg, skip_none=False)
    configs = layout.root / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    n = len(list(configs.glob("fit_*.yaml")))
    path = configs / f"fit_{n:03d}.yaml"
    atomic_write_text(path, text)
    atomic_write_text(layout.config, text)
    return path


# ----------------------------------------------------------------------------- callbacks
@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning warnings that do not apply here: ShardStream's ``__len__`` is exact per
    rank and worker; the frozen stage-1 network is in eval mode on purpose; stage 2 checkpoints
    the state after its optimiser step, which is the state its step count describes."""
    with warnings.catch_warnings():
        for message in (
            r".*Your `IterableDataset` has `__len__` defined.*",
            r".*module\(s\) in eval mode.*",
            r".*Using ModelCheckpoint with manual optimization.*",
            r".*isinstance\(treespec, LeafSpec\).*",
        ):
            warnings.filterwarnings("ignore", message=message)
        yield


class ProgressLines(Callback):
    """One plain line per ``log_every_n_steps`` (for logs and non-interactive terminals)."""

    def __init__(self, stage: str, log=print):
        self.stage, self._print, self._t0 = stage, log, None

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0, self._step0 = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % max(1, trainer.log_every_n_steps) and step != trainer.max_steps:
            return
        elapsed = time.perf_counter() - self._t0
        rate = (step - self._step0) / max(elapsed, 1e-9)
        eta = (trainer.max_steps - step) / rate if rate > 0 and trainer.max_steps > 0 else float("nan")
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if "val" not in k and v.numel() == 1
        }
        # the model's own metrics (stage1/..., stage2/...), not the throughput monitor's
        shown = ", ".join(
            f"{k.split('/', 1)[-1]} {v:.4g}" for k, v in sorted(metrics.items()) if k.startswith("stage")
        )
        self._print(
            f"[stage {self.stage}] step {step}/{trainer.max_steps} ({rate:.2f} it/s, ETA "
            f"{eta / 60:.1f} min) {shown}"
        )


class ContentCache(Callback):
    """Encodes the training split once with the frozen stage-1 network and hands the experts'
    means and log-variances to :class:`SpecificModule` (saves the stage-1 forward pass on every
    stage-2 step; the values are those the step would compute)."""

    def __init__(self, log=print):
        self._print = log

    @torch.no_grad()
    def on_fit_start(self, trainer, pl_module) -> None:
        data = trainer.datamodule
        t0 = time.perf_counter()
        loader = data.dataloader("train", train=False, rank=0, world_size=1, num_workers=0)
        index, stats = [], []
        for batch in loader:
            batch = add_unit_images(batch, data.image_mean, data.image_std)
            experts = pl_module.content_model.experts(
                batch["image"].to(pl_module.device), batch["text"].to(pl_module.device)
            )
            stats.append(torch.stack([experts.mean, experts.logvar], 1))
            index.append(batch["index"])
        idx = torch.cat(index)
        cache = torch.zeros(int(idx.max()) + 1, *stats[0].shape[1:], device=pl_module.device)
        cache[idx.to(pl_module.device)] = torch.cat(stats)
        pl_module.content_cache = cache
        self._print(
            f"stage 2: cached q(c | x_i) of {len(idx)} training examples ({time.perf_counter() - t0:.0f}s)"
        )


def make_trainer(
    stage: str,
    trainer_cfg: dict,
    stage_dir: Path,
    every_n: int,
    progress: str,
    log,
    extra: list[Callback] | None = None,
) -> pl.Trainer:
    kwargs = fill_precision(dict(trainer_cfg), f"dmvae {stage}", log)  # unset: for the hardware
    kwargs.pop("enable_progress_bar", None)
    callbacks: list[Callback] = [
        RunCheckpoint(
            dirpath=str(stage_dir / "checkpoints"),
            filename="step={step}",
            save_last=True,
            save_top_k=1,
            every_n_train_steps=every_n,
            auto_insert_metric_name=False,
            # a resumed run (a new callback instance) must overwrite last.ckpt, not add last-v1.ckpt
            enable_version_counter=False,
        ),
        RunMetadata(),
        ThroughputMonitor(),
        *(extra or []),
    ]
    if progress == "bar":
        callbacks.append(ProgressBar())
    elif progress == "lines":
        callbacks.append(ProgressLines(stage, log))
    logs = stage_dir / "logs"
    versions = [int(p.name.split("_")[1]) for p in logs.glob("version_*") if p.name.split("_")[1].isdigit()]
    logger = CSVLogger(str(stage_dir), name="logs", version=max(versions, default=-1) + 1)
    return pl.Trainer(
        default_root_dir=str(stage_dir),
        callbacks=callbacks,
        logger=logger,
        enable_progress_bar=progress == "bar",
        **kwargs,
    )


# ----------------------------------------------------------------------------- stages
def make_data(cfg, stage: str) -> DMVAEDataModule:
    kwargs = _as_dict(cfg.data)
    try:
        return DMVAEDataModule(
            batch_size=cfg[stage].batch_size,
            eval_batch_size=cfg[stage].eval_batch_size,
            seed=cfg.seed_everything,
            **kwargs,
        )
    except DataError as exc:
        raise DMVAEError(str(exc)) from None


def _resume_point(
    ckpt_path: Path, module: pl.LightningModule, what: str, max_steps: int | None
) -> str | None:
    """``ckpt_path`` if a run to continue exists there (with the same settings), else None.
    Returns ``"done"`` when it already reached ``max_steps``."""
    if not ckpt_path.is_file():
        return None
    ckpt = read_checkpoint(ckpt_path, what)
    diff = differences(model_hparams(ckpt), dict(module.hparams))
    if diff:
        raise DMVAEError(
            f"{ckpt_path} was trained with other {what} settings ({'; '.join(diff[:4])}); rerun with the "
            "config it was made with, or give a new --out"
        )
    if max_steps is not None and max_steps > 0 and ckpt.get("global_step", 0) >= max_steps:
        return "done"
    return str(ckpt_path)


def run_stage1(cfg, layout: RunLayout, log=print) -> Path:
    data = make_data(cfg, "stage1")
    pl.seed_everything(cfg.seed_everything, workers=True, verbose=False)
    module = ContentModule(
        vocabulary=data.vocabulary,
        max_text_length=data.max_text_length,
        image_resolution=data.manifest.resolution or 64,
        **_as_dict(cfg.stage1.model),
    )
    ckpt = layout.checkpoint("1")
    max_steps = cfg.stage1.trainer.max_steps
    resume = _resume_point(ckpt, module, "stage-1", max_steps)
    if resume == "done":
        log(f"stage 1: {ckpt} already reached max_steps={max_steps}; skipped")
        return ckpt
    log(
        f"stage 1: MoPoE-InfoNCE, {sum(p.numel() for p in module.parameters()) / 1e6:.2f}M parameters, "
        f"{'resuming ' + resume if resume else 'from scratch'}"
    )
    trainer = make_trainer(
        "1",
        _as_dict(cfg.stage1.trainer),
        layout.stage_dir("1"),
        cfg.stage1.checkpoint_every_n_steps,
        cfg.progress,
        log,
    )
    with quiet_lightning():
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    return ckpt


def stage1_checkpoint_path(cfg, layout: RunLayout) -> Path:
    path = Path(cfg.stage1_checkpoint) if cfg.stage1_checkpoint else layout.checkpoint("1")
    if not path.is_file():
        raise DMVAEError(
            f"stage 2 needs a trained stage 1, but {path} does not exist: run stage 1 first "
            f"(`mmcl dmvae fit --config ... --stages [1]` with --out {layout.root}) or point "
            "stage1_checkpoint at a stage-1 last.ckpt"
        )
    return path


def load_content_module(path: Path, vocabulary: list[str], encoding_size: int | None = None) -> ContentModule:
    """A trained :class:`ContentModule` whose vocabulary matches the dataset's (and whose
    encoding size matches ``encoding_size`` when given)."""
    ckpt = read_checkpoint(path, "stage-1")
    hp = model_hparams(ckpt)
    if "prior_expert" not in hp or "encoding_size" not in hp:
        raise DMVAEError(
            f"{path}: not a DMVAE stage-1 checkpoint (no content encoders); "
            "`mmcl fit` checkpoints are contrastive encoders without Gaussian heads"
        )
    check_vocabulary(hp.get("vocabulary"), vocabulary, f"stage-1 checkpoint {path}")
    if encoding_size is not None and int(hp["encoding_size"]) != int(encoding_size):
        raise DMVAEError(
            f"stage-1 checkpoint {path} has encoding_size {hp['encoding_size']} but the config says "
            f"stage1.model.encoding_size {encoding_size}; set it to {hp['encoding_size']} or use a matching checkpoint"
        )
    return rebuild_module(ContentModule, hp, ckpt["state_dict"], path, "stage-1 model", DMVAEError)


def run_stage2(cfg, layout: RunLayout, log=print) -> Path:
    data = make_data(cfg, "stage2")
    s1_path = stage1_checkpoint_path(cfg, layout)
    content = load_content_module(s1_path, data.vocabulary, cfg.stage1.model.encoding_size)
    if content.hparams.image_resolution != (data.manifest.resolution or content.hparams.image_resolution):
        raise DMVAEError(
            f"stage-1 checkpoint {s1_path} was trained on {content.hparams.image_resolution}px images, "
            f"the dataset has {data.manifest.resolution}px"
        )
    pl.seed_everything(cfg.seed_everything + 1, workers=True, verbose=False)
    try:
        module = SpecificModule(
            content_hparams=model_hparams({"hyper_parameters": dict(content.hparams)}),
            **_as_dict(cfg.stage2.model),
        )
    except ValueError as exc:
        raise DMVAEError(str(exc)) from None
    module.load_content(content)
    ckpt = layout.checkpoint("2")
    max_steps = cfg.stage2.trainer.max_steps
    resume = _resume_point(ckpt, module, "stage-2", max_steps)
    if resume == "done":
        log(f"stage 2: {ckpt} already reached max_steps={max_steps}; skipped")
        return ckpt
    trainable = sum(p.numel() for n, p in module.named_parameters() if not n.startswith("content_model."))
    log(
        f"stage 2: conditional VAEs for {module.modalities}, delta {module.deltas}, "
        f"{trainable / 1e6:.2f}M trainable parameters, {'resuming ' + resume if resume else 'from scratch'}"
    )
    trainer_cfg = _as_dict(cfg.stage2.trainer)
    if trainer_cfg.get("gradient_clip_val"):
        raise DMVAEError(
            "stage2.trainer.gradient_clip_val is not available with the manual optimisation of "
            "stage 2; use stage2.model.grad_clip"
        )
    cache = [ContentCache(log)] if cfg.stage2.cache_content else []
    trainer = make_trainer(
        "2", trainer_cfg, layout.stage_dir("2"), cfg.stage2.checkpoint_every_n_steps, cfg.progress, log, cache
    )
    with quiet_lightning():
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    return ckpt


def run_baseline(cfg, layout: RunLayout, log=print) -> Path:
    """Train a joint multimodal VAE (mmcl.dmvae.baselines) into ``RUN/baseline``, resumably."""
    data = make_data(cfg, "baseline")
    pl.seed_everything(cfg.seed_everything, workers=True, verbose=False)
    try:
        module = BaselineModule(
            vocabulary=data.vocabulary,
            max_text_length=data.max_text_length,
            image_resolution=data.manifest.resolution or 64,
            **_as_dict(cfg.baseline.model),
        )
    except ValueError as exc:
        raise DMVAEError(str(exc)) from None
    ckpt = layout.checkpoint("baseline")
    max_steps = cfg.baseline.trainer.max_steps
    resume = _resume_point(ckpt, module, "baseline", max_steps)
    if resume == "done":
        log(f"baseline: {ckpt} already reached max_steps={max_steps}; skipped")
        return ckpt
    trainer_cfg = _as_dict(cfg.baseline.trainer)
    if trainer_cfg.get("gradient_clip_val"):
        raise DMVAEError(
            "baseline.trainer.gradient_clip_val is not available with the manual optimisation of the "
            "baselines; use baseline.model.grad_clip"
        )
    hp = module.hparams
    log(
        f"baseline: {hp.objective} (impartial {hp.impartial}), "
        f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M parameters, "
        f"{'resuming ' + resume if resume else 'from scratch'}"
    )
    trainer = make_trainer(
        "baseline",
        trainer_cfg,
        layout.stage_dir("baseline"),
        cfg.baseline.checkpoint_every_n_steps,
        cfg.progress,
        log,
    )
    with quiet_lightning():
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    return ckpt


@torch.no_grad()
def _per_example(data: DMVAEDataModule, split: str, draw, max_samples: int | None) -> np.ndarray:
    """``draw(batch)`` over ``split`` in reading order, concatenated (at most ``max_samples``)."""
    out, n = [], 0
    for batch in data.dataloader(split, train=False, rank=0, world_size=1):
        out.append(draw(add_unit_images(batch, data.image_mean, data.image_std)))
        n += len(out[-1])
        if max_samples is not None and n >= max_samples:
            break
    x = torch.cat(out).numpy()
    return x[:max_samples] if max_samples is not None else x


def content_samples(
    content: ContentModule, data: DMVAEDataModule, split: str, seed: int, max_samples: int | None = None
) -> np.ndarray:
    """One MoPoE draw of c per example of ``split`` (in reading order)."""
    generator = torch.Generator().manual_seed(seed)

    def draw(batch):
        return content.mopoe_sample(content.experts(batch["image"], batch["text"]), generator)[0]

    return _per_example(data, split, draw, max_samples)


def specific_samples(
    module: SpecificModule,
    data: DMVAEDataModule,
    modality: str,
    split: str,
    seed: int,
    max_samples: int | None = None,
) -> np.ndarray:
    """One draw of m_modality ~ q(m | x) per example of ``split`` (reading order): samples of
    the aggregate posterior, the m the decoders were trained on."""
    generator = torch.Generator().manual_seed(seed)

    def draw(batch):
        return sample_gaussian(module.encode_specific(modality, module.inputs(modality, batch)[0]), generator)

    return _per_example(data, split, draw, max_samples)


def _fit_prior(draw: Callable[[], np.ndarray], cfg, path: Path, meta: dict, what: str, log) -> None:
    """Fit and save the GMM on ``draw()``'s samples; logs the encoding and fitting times apart."""
    t0 = time.perf_counter()
    samples = draw()
    encoded_s, t0 = time.perf_counter() - t0, time.perf_counter()
    try:
        prior = fit_content_prior(samples, cfg.gmm.n_components, cfg.gmm.covariance_type, cfg.seed_everything)
    except ValueError as exc:
        raise DMVAEError(str(exc)) from None
    prior.save(path, meta)
    log(
        f"gmm: {cfg.gmm.n_components} components on {len(samples)} {what} "
        f"(encoded in {encoded_s:.0f}s, fitted in {time.perf_counter() - t0:.0f}s) -> {path}"
    )


def _up_to_date(path: Path, meta: dict, log) -> bool:
    if path.is_file() and ContentPrior.load(path)[1] == meta:
        log(f"gmm: {path} is up to date; skipped")
        return True
    return False


def run_gmm(cfg, layout: RunLayout, log=print) -> Path:
    """The GMM on c (``gmm.npz``) and, once stage 2 exists, one GMM per modality on the draws
    of m_i ~ q(m_i | x_i) of the training set (``gmm_m_<modality>.npz``): the density
    ``--specific-prior gmm`` of generate and the ``*_gmm`` coherence rows of eval draw m_i
    from, where N(0, I) misses the aggregate posterior (docs/dmvae)."""
    data = make_data(cfg, "stage2")
    s1_path = stage1_checkpoint_path(cfg, layout)
    ckpt = read_checkpoint(s1_path, "stage-1")
    settings = {
        "n_components": cfg.gmm.n_components,
        "covariance_type": cfg.gmm.covariance_type,
        "max_samples": cfg.gmm.max_samples,
        "seed": cfg.seed_everything,
    }
    meta = {
        "stage1_checkpoint": str(s1_path.resolve()),
        "stage1_global_step": ckpt.get("global_step"),
        "stage1_sha256": file_sha256(s1_path),
        "encoding_size": model_hparams(ckpt)["encoding_size"],
        **settings,
        "fitted_on": "one MoPoE draw of c per training example",
    }
    if not _up_to_date(layout.gmm, meta, log):
        content = load_content_module(s1_path, data.vocabulary)
        draw = partial(content_samples, content, data, "train", cfg.seed_everything, cfg.gmm.max_samples)
        _fit_prior(draw, cfg, layout.gmm, meta, "content embeddings", log)
    s2_path = layout.checkpoint("2")
    if not s2_path.is_file():
        log(f"gmm: no stage-2 checkpoint {s2_path} yet; the densities of m_i are fitted after stage 2")
        return layout.gmm
    module, s2 = load_specific_module(s2_path, data.vocabulary)
    s2_digest = file_sha256(s2_path)  # a stage 2 retrained to the same step is another model
    for modality in module.modalities:
        if not module.specific_sizes[modality]:
            continue
        path = layout.specific_gmm(modality)
        m_meta = {
            "stage2_checkpoint": str(s2_path.resolve()),
            "stage2_global_step": s2.get("global_step"),
            "stage2_sha256": s2_digest,
            "specific_size": module.specific_sizes[modality],
            **settings,
            "fitted_on": f"one draw of m_{modality} ~ q(m_{modality} | x_{modality}) per training example",
        }
        if not _up_to_date(path, m_meta, log):
            draw = partial(
                specific_samples, module, data, modality, "train", cfg.seed_everything, cfg.gmm.max_samples
            )
            _fit_prior(draw, cfg, path, m_meta, f"draws of m_{modality}", log)
    return layout.gmm


def fit(argv: list[str], log=print) -> dict[str, Any]:
    """Library entry point of ``mmcl dmvae fit``; returns the paths it produced."""
    parser, cfg = parse_config(argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    layout = RunLayout(Path(cfg.out))
    layout.root.mkdir(parents=True, exist_ok=True)
    saved = save_resolved_config(parser, cfg, layout)
    log(f"mmcl dmvae fit: run {layout.root}, stages {cfg.stages}, resolved config {saved}")
    out: dict[str, Any] = {"config": saved}
    runners = {
        "1": ("stage1", run_stage1),
        "2": ("stage2", run_stage2),
        "gmm": ("gmm", run_gmm),
        "baseline": ("baseline", run_baseline),
    }
    for stage, (key, runner) in runners.items():
        if stage in cfg.stages:
            t0 = time.perf_counter()
            out[key] = runner(cfg, layout, log)
            log(f"{key}: {(time.perf_counter() - t0) / 60:.1f} min")  # where a run's time goes
    return out


def main(argv: list[str]) -> int:
    try:
        fit(argv)
    except (DMVAEError, DataError) as exc:
        return user_error("mmcl dmvae fit", exc)
    except Exception as exc:
        if type(exc).__name__ == "ArgumentError":
            return user_error("mmcl dmvae fit", exc)
        raise
    return 0
