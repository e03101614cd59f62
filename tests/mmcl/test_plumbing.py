"""The shared plumbing: atomic writers (mmcl.io), the schedule (mmcl.optim), flag renames (mmcl.cli)."""

from __future__ import annotations

import json
import pickle

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from mmcl import io
from mmcl.cli import renamed_flags
from mmcl.optim import lr_factor, scheduled


def test_writers_roundtrip_and_leave_no_temporaries(tmp_path):
    io.write_json(tmp_path / "a" / "m.json", {"x": np.float32(0.5), "v": np.arange(3), "p": tmp_path})
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {
        "x": 0.5,
        "v": [0, 1, 2],
        "p": str(tmp_path),
    }
    io.write_csv(tmp_path / "r.csv", [{"a": 1, "b": 2}, {"a": 3, "c": 4}])
    assert (tmp_path / "r.csv").read_text() == "a,b,c\n1,2,\n3,,4\n"
    io.save_npz(tmp_path / "e.npz", z=np.ones(4))
    assert np.load(tmp_path / "e.npz")["z"].sum() == 4
    io.save_torch({"w": torch.zeros(2)}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["w"].shape == (2,)
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "c.pt"
    io.save_torch({"step": 1}, path)
    before = path.read_bytes()
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        io.save_torch({"step": 2, "bad": lambda: None}, path)  # a lambda cannot be pickled
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_schedule_warms_up_then_decays_to_zero():
    f = lr_factor(10, "cosine", 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, "constant", None)(5000) == 1.0
    with pytest.raises(ValueError, match="stage1.trainer.max_steps"):
        lr_factor(10, "cosine", -1, "stage1.trainer")


class _Tiny(pl.LightningModule):
    def __init__(self, lr_schedule: str = "cosine"):
        super().__init__()
        self.save_hyperparameters()
        self.hparams.warmup_steps = 2
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return scheduled(torch.optim.SGD(self.parameters(), lr=1.0), self, "stage1.trainer")


def _loader():
    data = torch.utils.data.TensorDataset(torch.randn(16, 2))
    return torch.utils.data.DataLoader(data, batch_size=4)


def test_cosine_without_max_steps_is_refused_in_training(tmp_path):
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="needs stage1.trainer.max_steps"):
        trainer.fit(_Tiny(), _loader())


def test_the_schedule_reaches_the_optimiser(tmp_path):
    module = _Tiny()
    trainer = pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, _loader())
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(0.0, abs=1e-12)  # cosine over steps 2..4 ends at 0


def test_renamed_flags(capsys):
    argv = renamed_flags(
        ["--stage1-checkpoint", "a", "--stage1-checkpoint=b", "--x"], {"--stage1-checkpoint": "--s1"}, "p"
    )
    assert argv == ["--s1", "a", "--s1=b", "--x"]
    assert capsys.readouterr().err.count("p: --stage1-checkpoint is deprecated, use --s1") == 2
