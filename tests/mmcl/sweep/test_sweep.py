"""`mmcl sweep` end to end: a real simulation sweep and a real Multimodal3DIdent sweep (mmcl fit ->
mmcl embed -> probe on the tiny painted dataset, tests/mmcl/conftest.py ``fake_shards``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from mmcl.sweep import SweepError, elbow, load_sweep_config, main
from mmcl.sweep.config import fingerprint

REPO = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/mmcl/conftest.py


def test_elbow_finds_the_knee() -> None:
    sizes = [1, 2, 3, 4, 5, 6, 7, 8]
    losses = [9.0, 7.0, 5.0, 3.0, 1.2, 1.1, 1.05, 1.0]
    assert elbow(sizes, losses) == 5
    assert elbow([1, 2], [3.0, 1.0]) == 2


def test_shipped_sweep_configs_load_the_same_through_the_command_line() -> None:
    """`mmcl sweep`'s parser reads each shipped config to the config (and the fingerprint that
    finished points are checked against) of the library's loader."""
    from mmcl.sweep.cli import config_values

    for path in (REPO / "configs" / "sweep").glob("*.yaml"):
        cfg = load_sweep_config(path)
        assert cfg.encoding_sizes == sorted(cfg.encoding_sizes)
        cli, _ = config_values(["--config", str(path), "--points", "0:1"])
        assert cli == cfg and fingerprint(cli) == fingerprint(cfg), path.name
    cli, _ = config_values(["--config", str(path), "--encoding-sizes", "[3, 1]", "--simulation.row=p0.75"])
    assert cli.encoding_sizes == [1, 3] and cli.simulation.row == "p0.75"


def test_point_processes_get_the_config_keys_and_not_the_scheduling_flags() -> None:
    from mmcl.sweep.cli import config_args

    argv = ["--config", "c.yaml", "--jobs", "2", "--seeds", "[0, 1]", "--collect", "--points=1:2", "--out=o"]
    assert config_args(argv) == ["--config", "c.yaml", "--seeds", "[0, 1]", "--out=o"]


def test_points_are_numbered_k_major_and_checked(tmp_path: Path, capsys) -> None:
    from mmcl.sweep import parse_points, points

    cfg = load_sweep_config(tiny_simulation_sweep(tmp_path), {"seeds": [0, 1]})
    assert points(cfg) == [(1, 0), (1, 1), (2, 0), (2, 1), (4, 0), (4, 1)]
    assert list(parse_points("4:", 6)) == [4, 5] and list(parse_points("3", 6)) == [3]
    for bad in ("6:7", "x", "3:3"):
        with pytest.raises(SweepError, match="--points"):
            parse_points(bad, 6)
    assert main(["--config", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "o"), "--list"]) == 0
    assert "2\tencoding size 4\tseed 0\tto do" in capsys.readouterr().out


def test_bad_sweep_config_is_one_sentence(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"kind": "simulation", "encoding_sizes": [1], "seeds": [0], "sedes": [1]}))
    with pytest.raises(SweepError, match=r"unknown sweep config key\(s\) \['sedes'\]"):
        load_sweep_config(path)
    assert main(["--config", str(path), "--list"]) == 2
    err = capsys.readouterr().err
    assert (
        f"{path}: Option 'sedes' is not accepted as a sweep config key" in err and len(err.splitlines()) == 1
    )
    path.write_text(yaml.safe_dump({"kind": "simulation", "encoding_sizes": [1], "seeds": [0]}))
    assert main(["--config", str(path), "--seeds", "[0, 0]", "--list"]) == 2
    assert "'seeds' has duplicates: [0, 0]" in capsys.readouterr().err
    assert main(["--config", str(path), "--jobs", "abc", "--list"]) == 2  # a flag's type, one sentence
    assert "Parser key \"jobs\": Expected a <class 'int'>. Got value: abc" in capsys.readouterr().err
    path.write_text(
        yaml.safe_dump(
            {"kind": "simulation", "encoding_sizes": [1], "seeds": [0], "simulation": {"rwo": "p1.0"}}
        )
    )
    with pytest.raises(SweepError, match=r"simulation.rwo"):
        load_sweep_config(path)
    path.write_text(
        yaml.safe_dump(
            {"kind": "multimodal3dident", "encoding_sizes": [1], "seeds": [0],
             "multimodal3dident": {"probes": ["mlp", "mmc"]}}
        )
    )  # fmt: skip
    with pytest.raises(SweepError, match=r"multimodal3dident.probes has unknown probe\(s\) \['mmc'\]"):
        load_sweep_config(path)


def tiny_simulation_sweep(tmp_path: Path) -> Path:
    cfg = {
        "kind": "simulation", "encoding_sizes": [1, 2, 4], "seeds": [0],
        "simulation": {"config": None, "setting": "multimodal", "row": "p1.0", "overrides": {
            "content_n": 2, "style_n": 2, "modality_n": 2, "cond_pool": 2000, "encoder_widths": [64, 128, 64],
            "batch_size": 256, "steps": 400, "lr": 3e-3, "eval_samples": 450, "interventions": False,
            "checkpoint_every": 200, "log_every": 200, "device": "cpu", "threads": 1}},
    }  # fmt: skip
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_simulation_sweep_finds_the_content_size(tmp_path: Path) -> None:
    """Content has 2 dimensions: the validation loss drops from K=1 to K=2 and then flattens
    (elbow at 2), and content is predicted better with K=2 than with K=1. Then the same sweep split
    into scheduler-style jobs (--points) and run two at a time (--jobs 2, separate processes)
    gives the same tables and figures."""
    path = tiny_simulation_sweep(tmp_path)
    out = tmp_path / "out"
    assert main(["--config", str(path), "--out", str(out)]) == 0
    split = tmp_path / "split"
    assert main(["--config", str(path), "--out", str(split), "--points", "2:3"]) == 0
    assert not (split / "scores.csv").exists()  # points 0, 1 not done yet: nothing drawn
    assert main(["--config", str(path), "--out", str(split), "--collect"]) == 2  # names the missing points
    assert main(["--config", str(path), "--out", str(split), "--points", "0:2", "--no-collect"]) == 0
    assert main(["--config", str(path), "--out", str(split), "--collect"]) == 0
    parallel = tmp_path / "parallel"
    assert main(["--config", str(path), "--out", str(parallel), "--jobs", "2"]) == 0
    assert (parallel / "points" / "point0.log").stat().st_size > 0
    for other in (split, parallel):
        for name in ("scores.csv", "val_loss.csv", "fig8_3.png", "fig8_4.png"):
            assert (other / name).read_bytes() == (out / name).read_bytes(), (other.name, name)
    # points made under other settings are refused, never mixed into the tables
    changed = yaml.safe_load(path.read_text())
    changed["simulation"]["overrides"]["steps"] = 500
    path.write_text(yaml.safe_dump(changed))
    assert main(["--config", str(path), "--out", str(split), "--collect"]) == 2
    assert main(["--config", str(path), "--out", str(split), "--points", "0:1"]) == 2
    for name in ("fig8_3.png", "fig8_4.png", "scores.csv", "val_loss.csv", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    loss = dict(zip(summary["val_loss"]["sizes"], summary["val_loss"]["mean"], strict=True))
    assert loss[1] > loss[2] + 0.3
    assert summary["val_loss"]["elbow"] == 2
    assert (
        set(summary["timing"]["seconds"]) == {"train", "probe"} and 0 < summary["timing"]["probe_share"] < 1
    )
    content = summary["scores"]["x1, x2 (mean)"]["content"]
    r2 = dict(zip(content["sizes"], content["mean"], strict=True))
    assert r2[2] > 0.7 and r2[2] > r2[1] + 0.2
    with open(out / "scores.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["factor"] for r in rows} == {"content", "style", "modality_specific"} and len(rows) == 9


@pytest.mark.slow
def test_m3di_sweep_runs_fit_embed_probe(fake_shards, tmp_path: Path) -> None:
    """The Multimodal3DIdent path through the real `mmcl fit` and `mmcl embed` CLIs."""
    cfg = {
        "kind": "multimodal3dident", "encoding_sizes": [2, 3], "seeds": [0],
        "multimodal3dident": {
            "train_config": str(REPO / "configs/train/quickstart.yaml"), "dataset_root": str(fake_shards),
            "fit_args": ["--data.batch_size", "8", "--data.num_workers", "0", "--trainer.max_steps", "6",
                         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                         "--trainer.log_every_n_steps", "2", "--checkpoint.every_n_train_steps", "6"],
            "embed_args": ["--batch-size", "16"], "probes": ["linear", "kernel_ridge", "logistic", "mlp"],
            "probe_max_samples": None},
    }  # fmt: skip
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["--config", str(path), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["scores"]) == {"image", "text"}
    image = summary["scores"]["image"]
    assert image["object_shape"]["role"] == "content" and image["object_shape"]["sizes"] == [2, 3]
    assert "object_zpos" not in image  # constant factor skipped
    assert all(0 <= v <= 1 for v in image["object_shape"]["mean"])
    assert len(summary["val_loss"]["mean"]) == 2 and all(v > 0 for v in summary["val_loss"]["mean"])
    assert set(summary["timing"]["seconds"]) == {"fit", "embed", "probe"}
    assert (
        all(v > 0 for v in summary["timing"]["seconds"].values()) and 0 < summary["timing"]["probe_share"] < 1
    )
    ckpt = out / "encoding_size=3" / "seed=0" / "train" / "checkpoints" / "last.ckpt"
    import torch

    assert torch.load(ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]["encoding_size"] == 3
    emb = out / "encoding_size=3" / "seed=0" / "embeddings"
    import numpy as np

    assert np.load(emb / "embeddings_val.npz")["image"].shape == (16, 3)
    mtime = (emb / "probe" / "results.json").stat().st_mtime
    assert main(["--config", str(path), "--out", str(out)]) == 0  # finished runs are reused
    assert (emb / "probe" / "results.json").stat().st_mtime == mtime
