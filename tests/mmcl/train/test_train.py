"""``mmcl fit`` end to end on the real tiny dataset (48 train samples, batch 16 -> 3 steps/epoch):
logs and config of a run, config errors, and exact resumption (epoch boundary and mid-epoch)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from mmcl.precision import choose_precision
from mmcl.train.cli import build_cli, main

REPO = Path(__file__).resolve().parents[3]
CONFIG = str(REPO / "configs/train/quickstart.yaml")


def args(dataset: Path, root: Path, *extra: str) -> list[str]:
    return [
        "--config", CONFIG,
        "--data.root", str(dataset),
        "--data.batch_size", "16",
        "--data.num_workers", "1",
        "--model.encoding_size", "3",
        "--model.lr", "1e-3",
        "--model.lr_schedule", "cosine",
        "--model.warmup_steps", "2",
        "--model.learnable_tau", "true",
        "--seed_everything", "1",
        "--trainer.max_steps", "6",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
        "--checkpoint.every_n_train_steps", "3",
        *extra,
    ]  # fmt: skip


def fit_with(argv: list[str], callback: Callback, ckpt_path: str | None = None) -> None:
    cli = build_cli(argv)
    cli.trainer.callbacks.append(callback)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)


def last(root: Path) -> dict:
    return torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def rows(root: Path, version: int = 0) -> list[dict]:
    with open(root / "logs" / f"version_{version}" / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def run(fake_shards, tmp_path_factory) -> Path:
    """An uninterrupted 6-step (2-epoch) run."""
    root = tmp_path_factory.mktemp("fit") / "uninterrupted"
    assert main(args(fake_shards, root)) == 0
    return root


def test_run_writes_config_logs_and_checkpoints(run, fake_shards):
    ckpt = last(run)
    assert ckpt["global_step"] == 6 and ckpt["epoch"] == 1 and ckpt["mmcl_seed"] == 1
    assert ckpt["mmcl_precision"] == "32-true"  # quickstart.yaml sets it: an explicit precision wins
    assert ckpt["hyper_parameters"]["encoding_size"] == 3
    config = yaml.safe_load((run / "logs/version_0/config.yaml").read_text())
    assert config["model"]["encoding_size"] == 3 and config["seed_everything"] == 1
    assert config["data"]["root"] == str(fake_shards) and config["data"]["seed"] == 1
    assert config["trainer"]["gradient_clip_val"] == 2.0 and config["checkpoint"]["dirpath"] == str(
        run / "checkpoints"
    )
    assert list((run / "logs/version_0").glob("events.out.tfevents.*")), "no TensorBoard log"
    table = rows(run)
    columns = set(table[0])
    for name in [
        "train/loss",
        "val/loss",
        "temperature",
        "perf/samples_per_sec",
        "perf/samples_per_sec_per_device",
        "perf/data_wait_frac",
        "perf/eta_sec",
        "retrieval/image_to_text_recall@1",
        "retrieval/text_to_image_recall@5",
    ]:
        assert name in columns, name
    for modality in ("image", "text"):
        for factor in ("object_shape", "object_xpos", "object_ypos"):
            assert f"probe/{modality}/{factor}_acc" in columns
    assert not any(c.startswith("probe/") and "zpos" in c for c in columns)  # constant: not probed
    losses = [float(r["train/loss"]) for r in table if r["train/loss"]]
    assert len(losses) == 6 and all(0 < v < 10 for v in losses)
    waits = [float(r["perf/data_wait_frac"]) for r in table if r["perf/data_wait_frac"]]
    assert waits and all(0 <= w <= 1 for w in waits)
    taus = [float(r["temperature"]) for r in table if r["temperature"]]
    assert taus[0] != taus[-1]  # learnable temperature moved
    accs = [float(r["probe/image/object_xpos_acc"]) for r in table if r["probe/image/object_xpos_acc"]]
    assert len(accs) == 2 and all(0 <= a <= 1 for a in accs)  # one probe evaluation per validation epoch


def test_unset_precision_is_chosen_for_this_cpu_logged_and_recorded(fake_shards, tmp_path, capsys):
    root = tmp_path / "auto"
    assert main(args(fake_shards, root, "--trainer.precision", "null", "--trainer.max_steps", "2")) == 0
    chosen, reason = choose_precision("cpu", None)
    assert f"[mmcl fit] precision {chosen}: {reason}" in capsys.readouterr().out
    assert last(root)["mmcl_precision"] == chosen
    assert yaml.safe_load((root / "logs/version_0/config.yaml").read_text())["trainer"]["precision"] == chosen


class StopAt(Callback):
    def __init__(self, step: int, crash: bool):
        self.step, self.crash = step, crash

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            if self.crash:
                raise RuntimeError("simulated crash")
            trainer.should_stop = True


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    different = [k for k, v in a["state_dict"].items() if not torch.equal(v, b["state_dict"][k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    opt_a, opt_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def test_stop_at_epoch_boundary_then_resume_gives_the_same_weights(run, fake_shards, tmp_path):
    root = tmp_path / "stopped"
    fit_with(args(fake_shards, root), StopAt(3, crash=False))
    assert last(root)["global_step"] == 3
    assert main(args(fake_shards, root, "--ckpt_path", "last")) == 0
    resumed = last(root)
    assert resumed["global_step"] == 6
    assert_same_weights(resumed, last(run))
    assert (root / "logs/version_1/config.yaml").is_file()  # the resumed run has its own config


def test_crash_mid_epoch_then_resume_repeats_no_step(run, fake_shards, tmp_path):
    root = tmp_path / "crashed"
    every2 = ("--checkpoint.every_n_train_steps", "2")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_with(args(fake_shards, root, *every2), StopAt(5, crash=True))
    assert last(root)["global_step"] == 4  # one batch into epoch 1 (steps 4..6)
    assert main(args(fake_shards, root, *every2, "--ckpt_path", "last")) == 0
    steps = [int(r["step"]) for r in rows(root, version=1) if r["train/loss"]]
    assert steps == [4, 5]  # Lightning logs step k-1 for the k-th step: only steps 5 and 6 ran
    assert last(root)["global_step"] == 6
    assert_same_weights(last(root), last(run))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(run, fake_shards, tmp_path):
    """A real SIGKILL of ``mmcl fit`` at an arbitrary moment; resuming from whatever
    checkpoint survived ends with the uninterrupted run's weights."""
    root = tmp_path / "killed"
    every2 = ("--checkpoint.every_n_train_steps", "2")
    cmd = [sys.executable, "-m", "mmcl.cli", "fit", *args(fake_shards, root, *every2)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (root / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:  # written atomically
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = last(root)["global_step"]
    assert 2 <= step < 6
    assert main(args(fake_shards, root, *every2, "--ckpt_path", "last")) == 0
    assert_same_weights(last(root), last(run))


def test_unknown_config_keys_are_errors(fake_shards, tmp_path, capsys):
    assert main(args(fake_shards, tmp_path / "x", "--model.encoding_sise", "4")) == 2
    assert "encoding_sise" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {"learning_rate": 0.1}}))
    assert main(args(fake_shards, tmp_path / "x", "--config", str(bad))) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_bad_values_give_one_clear_sentence(fake_shards, tmp_path, capsys):
    assert main(args(fake_shards, tmp_path / "x", "--model.encoding_size", "0")) == 2
    err = capsys.readouterr().err
    assert "encoding_size must be a positive integer" in err and "Traceback" not in err
    assert main(args(tmp_path / "no_dataset", tmp_path / "x")) == 2
    assert "manifest.json not found" in capsys.readouterr().err


def test_paper_config_matches_table_a2b(tmp_path):
    cfg = yaml.safe_load((REPO / "configs/train/m3di_paper.yaml").read_text())
    assert cfg["model"]["lr"] == 1e-5 and cfg["data"]["batch_size"] == 256
    assert cfg["trainer"]["max_steps"] == 100_000 and cfg["model"]["tau"] == 1.0
    assert cfg["trainer"]["gradient_clip_val"] == 2.0 and cfg["trainer"]["gradient_clip_algorithm"] == "norm"
    assert cfg["model"]["similarity"] == "cosine" and cfg["model"]["loss"] == "infonce_symmetric"
    assert cfg["model"]["text_backbone"] == "convnet" and cfg["model"]["hidden_size"] == 100
    assert cfg["model"]["image_backbone"] == "resnet18"


@pytest.mark.slow
def test_quickstart_config_lowers_the_contrastive_loss(fake_shards, tmp_path):
    """30 steps of configs/train/quickstart.yaml on 48 samples: the symmetric InfoNCE loss falls
    from about log(16) (chance) well towards its tau = 1 floor."""
    root = tmp_path / "qs"
    argv = [
        "--config",
        CONFIG,
        "--data.root",
        str(fake_shards),
        "--data.batch_size",
        "16",
        "--trainer.max_steps",
        "30",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(root),
    ]
    assert main(argv) == 0
    losses = [float(r["train/loss"]) for r in rows(root) if r["train/loss"]]
    assert losses[0] == pytest.approx(2.77, abs=0.15)  # log(16): random embeddings
    assert sum(losses[-5:]) / 5 < 0.85 * losses[0]


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adamw_decays_weights_apart_from_the_gradient(name):
    """With a zero gradient Adam's L2 term still makes a full-size Adam step, while AdamW
    shrinks every weight by exactly lr * weight_decay (decoupled decay)."""
    from lightning.pytorch import Trainer

    from mmcl.train.module import ContrastiveModule

    vocab = ["<pad>", "<bos>", "<eos>", "a", "b"]
    module = ContrastiveModule(encoding_size=2, vocabulary=vocab, max_text_length=8, image_backbone="convnet",
                               image_resolution=16, image_base_channels=4, lr=0.1, weight_decay=0.5,
                               optimizer=name)  # fmt: skip
    module.trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False)
    optimizer = module.configure_optimizers()["optimizer"]
    assert type(optimizer) is {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    w = module.image_encoder.head.linear.weight
    before = w.detach().clone()
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    if name == "adamw":
        assert torch.allclose(w, before * (1 - 0.1 * 0.5))
    else:  # the L2 gradient wd * w, normalised by Adam: a step of lr against the sign of w
        assert torch.allclose(w, before - 0.1 * torch.sign(before), atol=1e-4)
    with pytest.raises(ValueError, match="model.optimizer must be one of"):
        ContrastiveModule(encoding_size=2, vocabulary=vocab, optimizer="sgd")
