"""``mmcl fit``: LightningCLI over :class:`ContrastiveModule` and :class:`MultimodalDataModule`.

    mmcl fit --config configs/train/quickstart.yaml --data.root DATA \\
             --model.encoding_size 4 --seed_everything 1 --trainer.default_root_dir DIR
    mmcl fit --config DIR/logs/version_0/config.yaml --ckpt_path last      # resume

Run layout under ``trainer.default_root_dir``::

    checkpoints/last.ckpt, checkpoints/step=*.ckpt
    logs/version_N/config.yaml        the resolved config of run N (every run, resumes included)
    logs/version_N/metrics.csv        CSV log; TensorBoard events in the same folder

The model's vocabulary and text length are linked from the data module (the manifest), and
``data.seed`` defaults to ``seed_everything``. Unknown keys in a config file or on the command
line are errors. ``--ckpt_path last`` resumes step count, optimiser, schedule, data order and
the online probe from ``checkpoints/last.ckpt`` (and starts afresh if there is none).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from mmcl.cli import user_error
from mmcl.data import MultimodalDataModule
from mmcl.manifest import DataError
from mmcl.precision import fill_precision, rank_zero_print
from mmcl.train.callbacks import OnlineProbe, ProgressBar, RunCheckpoint, RunMetadata, ThroughputMonitor
from mmcl.train.module import ContrastiveModule

LOG_DIR = "logs"
CHECKPOINT_DIR = "checkpoints"


def next_version(log_root: Path) -> int:
    versions = [
        int(p.name.split("_", 1)[1]) for p in log_root.glob("version_*") if p.name.split("_", 1)[1].isdigit()
    ]
    return max(versions, default=-1) + 1


class RunConfigSaver(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run's log folder; if one is there
    already (``trainer.logger: false`` logs into the root folder), as ``config-N.yaml``."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not self.already_saved and trainer.log_dir is not None:
            log_dir, n = Path(trainer.log_dir), 0
            name = "config.yaml"
            while (log_dir / name).exists():
                n += 1
                name = f"config-{n}.yaml"
            self.config_filename = trainer.strategy.broadcast(name)
        super().setup(trainer, pl_module, stage)


class ContrastiveCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocabulary", "model.vocabulary", apply_on="instantiate")
        parser.link_arguments("data.max_text_length", "model.max_text_length", apply_on="instantiate")
        parser.link_arguments("data.image_resolution", "model.image_resolution", apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "step={step}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(OnlineProbe, "probe")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="checkpoint to resume from: a path, or 'last' for checkpoints/last.ckpt",
        )

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        root = Path(cfg.trainer.default_root_dir or os.getcwd())
        cfg.trainer.default_root_dir = str(root)
        if cfg.checkpoint.dirpath is None:
            cfg.checkpoint.dirpath = str(root / CHECKPOINT_DIR)
        if cfg.data.seed is None:
            seed = cfg.seed_everything
            cfg.data.seed = int(seed) if not isinstance(seed, bool) else 0
        # unset precision: chosen for the hardware (bf16 only where it is native, mmcl.precision)
        cfg.trainer.precision = fill_precision(
            {"accelerator": cfg.trainer.accelerator, "precision": cfg.trainer.precision},
            "mmcl fit",
            rank_zero_print,
        )["precision"]

    def instantiate_trainer(self, **kwargs):
        cfg = self.config.trainer
        root = Path(cfg.default_root_dir)
        if cfg.logger in (None, True):
            version = next_version(root / LOG_DIR)
            # CSV first: it is the logger whose folder Lightning reports as trainer.log_dir
            kwargs["logger"] = [
                CSVLogger(str(root), name=LOG_DIR, version=version),
                TensorBoardLogger(str(root), name=LOG_DIR, version=version, default_hp_metric=False),
            ]
        callbacks = [ThroughputMonitor(), RunMetadata()]
        if cfg.enable_progress_bar in (None, True):
            callbacks.append(ProgressBar())
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": callbacks}
        return super().instantiate_trainer(**kwargs)


def build_cli(argv: list[str]) -> ContrastiveCLI:
    """Parse ``argv`` and instantiate data module, model and trainer (no training)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
        # ShardStream's __len__ is exact per rank and worker (see mmcl.data), not the case warned about
        warnings.filterwarnings("ignore", message=".*Your `IterableDataset` has `__len__` defined.*")
        return ContrastiveCLI(
            ContrastiveModule,
            MultimodalDataModule,
            args=argv,
            run=False,
            seed_everything_default=0,
            save_config_callback=RunConfigSaver,
            parser_kwargs={"prog": "mmcl fit", "exit_on_error": True},
            auto_configure_optimizers=False,
        )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cli = build_cli(argv)
    except SystemExit as exc:  # argument errors: jsonargparse has printed usage and the message
        return exc.code if isinstance(exc.code, int) else 2
    except (DataError, ValueError) as exc:
        return user_error("mmcl fit", exc)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
