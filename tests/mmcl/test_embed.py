"""``mmcl embed`` with a checkpoint written by ``mmcl fit`` on the real tiny dataset:
the docs/formats.md embeddings format, rows aligned with the shard latents, clear errors."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcl.data import MultimodalDataModule, normalize_images
from mmcl.embed import load_module, main
from mmcl.train.cli import main as fit_main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(fake_shards, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embed_run")
    argv = [
        "--config", str(REPO / "configs/train/quickstart.yaml"),
        "--data.root", str(fake_shards), "--data.batch_size", "16", "--data.num_workers", "0",
        "--model.encoding_size", "5", "--seed_everything", "3", "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
    ]  # fmt: skip
    assert fit_main(argv) == 0
    return root / "checkpoints" / "last.ckpt"


def shard_json(root: Path, split: str) -> dict[int, dict]:
    out = {}
    for path in sorted((root / split).glob("shard-*.tar")):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    out[meta["index"]] = meta
    return out


def test_embeddings_follow_the_format(checkpoint, fake_shards, tmp_path, capsys):
    out = tmp_path / "emb"
    assert main([str(checkpoint), str(fake_shards), "--split", "val", "test", "--out", str(out)]) == 0
    assert "val (16 samples), test (16 samples)" in capsys.readouterr().out
    meta = json.loads((out / "embeddings.json").read_text())
    image_factors = [
        "object_shape",
        "object_xpos",
        "object_ypos",
        "object_zpos",
        "object_alpharot",
        "object_betarot",
        "object_gammarot",
        "object_color",
        "spotlight_pos",
        "spotlight_color",
        "background_color",
    ]
    text_factors = [
        "object_shape",
        "object_xpos",
        "object_ypos",
        "object_zpos",
        "object_color_index",
        "text_phrasing",
    ]
    assert meta["representations"] == {"image": {"factors": image_factors}, "text": {"factors": text_factors}}
    assert meta["factors"]["object_shape"] == {"kind": "discrete", "role": "content", "n_values": 7}
    assert meta["factors"]["object_color"]["kind"] == "continuous"
    assert "object_color_name" not in meta["factors"]
    assert meta["seed"] == 3 and meta["source"]["global_step"] == 2
    for split in ("val", "test"):
        arrays = np.load(out / f"embeddings_{split}.npz")
        assert arrays["image"].dtype == np.float32 and arrays["image"].shape == (16, 5)
        assert arrays["text"].shape == (16, 5)
        assert set(arrays) == {"image", "text", *(f"factor:{n}" for n in set(image_factors + text_factors))}
        truth = shard_json(fake_shards, split)
        for name in image_factors + text_factors:
            values = arrays[f"factor:{name}"]
            kind = meta["factors"][name]["kind"]
            assert values.dtype == (np.int64 if kind == "discrete" else np.float64), name
            modality = "image" if name in image_factors else "text"
            assert values.tolist() == [truth[i][modality][name] for i in range(16)], name


def test_embeddings_are_the_model_outputs(checkpoint, fake_shards, tmp_path):
    out = tmp_path / "emb"
    assert (
        main([str(checkpoint), str(fake_shards), "--split", "test", "--out", str(out), "--batch-size", "3"])
        == 0
    )
    arrays = np.load(out / "embeddings_test.npz")
    module, _ = load_module(checkpoint)
    dm = MultimodalDataModule(str(fake_shards), batch_size=16, num_workers=0)
    batch = normalize_images(next(iter(dm.dataloader("test", train=False))))
    with torch.no_grad():
        z_image, z_text = module(batch["image"], batch["text"])
    order = batch["index"].argsort()
    assert np.allclose(arrays["image"], z_image[order].numpy(), atol=1e-5)
    assert np.allclose(arrays["text"], z_text[order].numpy(), atol=1e-5)


def test_vocabulary_mismatch_and_missing_checkpoint(checkpoint, fake_shards, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(fake_shards, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer"]["vocabulary"].append("zebra")
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert main([str(checkpoint), str(other), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "vocabulary of the checkpoint does not match" in err and str(checkpoint) in err
    assert main([str(tmp_path / "none.ckpt"), str(fake_shards), "--out", str(tmp_path / "e")]) == 2
    assert "none.ckpt: checkpoint not found" in capsys.readouterr().err


def test_convnet_image_backbone_trains_and_embeds(fake_shards, tmp_path):
    """``model.image_backbone: convnet`` takes the resolution from the manifest, and the
    checkpoint alone rebuilds it (with its global max pool) for ``mmcl embed``."""
    root = tmp_path / "convnet_run"
    argv = [
        "--config", str(REPO / "configs/train/quickstart.yaml"),
        "--data.root", str(fake_shards), "--data.batch_size", "16", "--data.num_workers", "0",
        "--model.encoding_size", "4", "--model.image_backbone", "convnet",
        "--model.image_base_channels", "8", "--model.image_global_max_pool", "true",
        "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
    ]  # fmt: skip
    assert fit_main(argv) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    module, _ = load_module(ckpt)
    resolution = json.loads((fake_shards / "manifest.json").read_text())["config"]["render"]["resolution"]
    assert module.hparams.image_backbone == "convnet" and module.hparams.image_resolution == resolution
    assert type(module.image_encoder.backbone).__name__ == "ConvImageBackbone"
    assert module.image_encoder.backbone.global_max_pool
    out = tmp_path / "emb"
    assert main([str(ckpt), str(fake_shards), "--split", "test", "--out", str(out)]) == 0
    arrays = np.load(out / "embeddings_test.npz")
    assert arrays["image"].shape[1] == 4 and np.isfinite(arrays["image"]).all()
