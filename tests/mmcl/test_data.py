"""mmcl.data on real shards (tests/mmcl/conftest.py ``fake_shards``: 48/16/16 samples,
32x32, 16 per shard, so 3 train shards): decoding, epoch partition over ranks and workers,
deterministic shuffling, exact mid-epoch resume, resampling, corrupt samples, bad input."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmcl.data import (
    IMAGE_MEAN,
    IMAGE_STD,
    EpochPlan,
    MultimodalDataModule,
    ShardStream,
    normalize_images,
    skipped_batches,
    worker_quotas,
)
from mmcl.manifest import DataError, load_manifest


def shard_samples(root: Path, split: str) -> dict[int, dict]:
    """Ground truth straight from the tar files: index -> {png, txt, json}."""
    manifest = json.loads((root / "manifest.json").read_text())
    out = {}
    for shard in manifest["shards"][split]:
        with tarfile.open(root / shard["file"]) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                meta = json.loads(data)
                key = name[: -len(".json")]
                out[meta["index"]] = {
                    "json": meta,
                    "txt": members[key + ".txt"].decode(),
                    "png": members[key + ".png"],
                }
    return out


def all_batches(stream: ShardStream, epoch: int, start: int = 0) -> list[list[dict]]:
    """Batches per role, produced in-process for each worker role (no worker processes)."""
    stream.set_position(epoch, start)
    quotas = worker_quotas(len(stream), stream.n_workers)
    return [
        list(
            stream._role_batches(
                epoch,
                role,
                quotas[role] - skipped_batches(start, role, stream.n_workers),
                skipped_batches(start, role, stream.n_workers) * stream.batch_size,
            )
        )
        for role in range(stream.n_workers)
    ]


def round_robin(per_role: list[list[dict]], first_role: int = 0) -> list[dict]:
    n = len(per_role)
    order = [per_role[(first_role + i) % n] for i in range(n)]
    out, i = [], 0
    while any(i < len(r) for r in order):
        out += [r[i] for r in order if i < len(r)]
        i += 1
    return out


def test_manifest_factor_table_and_tokenizer(fake_shards):
    m = load_manifest(fake_shards)
    assert [f.name for f in m.content_factors()] == ["object_shape", "object_xpos", "object_ypos"]
    assert "object_color_name" not in [f.name for f in m.factors_of("text")]
    assert "object_color_index" in [f.name for f in m.factors_of("text")]
    assert m.resolution == 32 and m.counts == {"train": 48, "val": 16, "test": 16}
    assert len(m.shards("train")) == 3 and m.tokenizer.vocabulary[0] == "<pad>"


def test_batches_hold_exactly_the_shard_contents(fake_shards):
    truth = shard_samples(fake_shards, "val")
    dm = MultimodalDataModule(str(fake_shards), batch_size=5, num_workers=0)
    batches = list(dm.dataloader("val", train=False))
    assert [len(b["index"]) for b in batches] == [5, 5, 5, 1]  # evaluation keeps the partial batch
    seen = []
    for b in batches:
        assert b["image"].dtype == torch.uint8 and b["image"].shape[1:] == (3, 32, 32)
        assert b["text"].dtype == torch.int64 and b["text"].shape[1] == dm.max_text_length
        for i, idx in enumerate(b["index"].tolist()):
            t = truth[idx]
            png = np.asarray(Image.open(io.BytesIO(t["png"])).convert("RGB"))
            assert torch.equal(b["image"][i], torch.from_numpy(png).permute(2, 0, 1))
            tokens = re.findall(r"[a-z0-9]+|[^\sa-z0-9]", t["txt"].lower())
            assert dm.tokenizer.decode(b["text"][i]) == tokens
            assert b["text_length"][i] == len(tokens) + 2
            for modality in ("image", "text"):
                for name, values in b[f"latents_{modality}"].items():
                    assert values[i].item() == t["json"][modality][name]
            assert b["latents_image"]["object_color"].dtype == torch.float64
            assert b["latents_text"]["object_color_index"].dtype == torch.int64
            seen.append(idx)
    assert sorted(seen) == list(range(16))


@pytest.mark.parametrize(
    "world_size, n_workers, batch_size", [(1, 1, 8), (1, 3, 5), (2, 4, 4), (3, 2, 5), (4, 5, 2)]
)
def test_epoch_is_partitioned_over_ranks_and_workers(fake_shards, world_size, n_workers, batch_size):
    """More consumers than the 3 shards is fine; every rank gets the same number of batches."""
    m = load_manifest(fake_shards)
    per_rank = []
    for rank in range(world_size):
        stream = ShardStream(
            m,
            "train",
            batch_size,
            train=True,
            shuffle=True,
            seed=3,
            shuffle_buffer=7,
            rank=rank,
            world_size=world_size,
            num_workers=n_workers,
        )
        batches = round_robin(all_batches(stream, epoch=2))
        assert len(batches) == len(stream) == 48 // (world_size * batch_size)
        assert all(len(b["index"]) == batch_size for b in batches)
        per_rank.append([i for b in batches for i in b["index"].tolist()])
    flat = [i for r in per_rank for i in r]
    assert len(flat) == len(set(flat)), "a sample was served twice in one epoch"
    assert 48 - len(flat) < world_size * batch_size  # only the drop_last remainder is left out


def test_evaluation_covers_every_sample_on_several_ranks(fake_shards):
    m = load_manifest(fake_shards)
    seen = []
    for rank in range(2):
        stream = ShardStream(m, "test", 3, train=False, shuffle=False, rank=rank, world_size=2, num_workers=2)
        seen += [i for b in round_robin(all_batches(stream, 0)) for i in b["index"].tolist()]
    assert sorted(seen) == list(range(16))


def test_epoch_plan_arithmetic():
    plan = EpochPlan.make(100, world_size=2, n_workers=3, batch_size=8, drop_last=True)
    assert plan.n_batches == 6 and worker_quotas(6, 3) == [2, 2, 2]
    assert plan.ranges[0] == ((0, 16), (16, 32), (32, 48)) and plan.ranges[1][0] == (50, 66)
    assert worker_quotas(7, 3) == [3, 2, 2]
    # after 4 batches (roles 0,1,2,0) role 0 has done 2, roles 1 and 2 one each
    assert [skipped_batches(4, r, 3) for r in range(3)] == [2, 1, 1]


def test_shuffling_is_a_function_of_seed_epoch_and_rank(fake_shards):
    m = load_manifest(fake_shards)

    def order(seed, epoch, rank=0):
        s = ShardStream(
            m,
            "train",
            4,
            train=True,
            shuffle=True,
            seed=seed,
            shuffle_buffer=10,
            rank=rank,
            world_size=2,
            num_workers=2,
        )
        return [i for b in round_robin(all_batches(s, epoch)) for i in b["index"].tolist()]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    assert set(order(0, 0)).isdisjoint(order(0, 0, rank=1))


def test_real_worker_processes_serve_round_robin_and_resume_exactly(fake_shards):
    """Through the real DataLoader with 4 worker processes (more than the 3 shards): one
    epoch's batches, then a loader resumed after 5 batches continues with batch 5 onwards."""
    dm = MultimodalDataModule(
        str(fake_shards), batch_size=4, num_workers=4, seed=5, shuffle_buffer=6, persistent_workers=False
    )
    loader = dm.dataloader("train", train=True)
    loader.load_state_dict({"epoch": 1, "batches_done": 0})
    full = [b["index"].tolist() for b in loader]
    assert len(full) == len(loader) == 12
    m = dm.manifest
    expected = round_robin(
        all_batches(
            ShardStream(m, "train", 4, train=True, shuffle=True, seed=5, shuffle_buffer=6, num_workers=4), 1
        )
    )
    assert full == [b["index"].tolist() for b in expected]
    resumed = dm.dataloader("train", train=True)
    resumed.load_state_dict({"epoch": 1, "batches_done": 5})
    assert [b["index"].tolist() for b in resumed] == full[5:]
    assert resumed.wait_seconds > 0


def test_persistent_workers_follow_the_epoch(fake_shards):
    dm = MultimodalDataModule(str(fake_shards), batch_size=8, num_workers=2, persistent_workers=True)
    loader = dm.dataloader("train", train=True)
    epochs = [[b["index"].tolist() for b in loader] for _ in range(3)]  # epochs 0, 1, 2
    assert epochs[0] != epochs[1] != epochs[2]
    again = dm.dataloader("train", train=True)
    again.load_state_dict({"epoch": 2, "batches_done": 0})
    assert [b["index"].tolist() for b in again] == epochs[2]


def test_cache_serves_the_same_batches_and_later_epochs_never_read_the_shards(copy_of):
    """With ``cache`` the first epoch reads and decodes every shard once; the next epochs' batches
    (another shard order and shuffle) equal the uncached loader's, also with the shard files gone
    from disk, which the uncached loader cannot read."""
    root = copy_of()

    def epochs(cache: bool, remove_after_first: bool = False) -> list[list[dict]]:
        dm = MultimodalDataModule(
            str(root), batch_size=8, num_workers=0, seed=3, shuffle_buffer=10, cache=cache
        )
        loader = dm.dataloader("train", train=True)
        out = []
        for epoch in range(3):
            loader.load_state_dict({"epoch": epoch, "batches_done": 0})
            out.append(list(loader))
            if remove_after_first and epoch == 0:
                for shard in (root / "train").glob("shard-*.tar"):
                    shard.rename(shard.with_suffix(".moved"))
        return out

    plain = epochs(cache=False)
    cached = epochs(cache=True, remove_after_first=True)
    assert [len(e) for e in cached] == [len(e) for e in plain] == [6, 6, 6]
    assert plain[0][0]["key"] != plain[1][0]["key"]  # the epochs differ, so the order is tested
    for p_epoch, c_epoch in zip(plain, cached):
        for p, c in zip(p_epoch, c_epoch):
            assert p["key"] == c["key"]
            assert torch.equal(p["image"], c["image"]) and torch.equal(p["text"], c["text"])
            assert torch.equal(p["latents_image"]["object_shape"], c["latents_image"]["object_shape"])
    with pytest.raises(DataError):
        epochs(cache=False)  # the shards are gone: only the cache could serve them


def test_resampled_mode_has_a_nominal_epoch_length(fake_shards):
    dm = MultimodalDataModule(str(fake_shards), batch_size=8, num_workers=0, resampled=True, epoch_batches=9)
    loader = dm.dataloader("train", train=True)
    e0 = [b["index"].tolist() for b in loader]
    e1 = [b["index"].tolist() for b in loader]
    assert len(e0) == len(e1) == len(loader) == 9  # more than one pass over 48 samples
    assert e0 != e1 and all(0 <= i < 48 for b in e0 for i in b)
    again = dm.dataloader("train", train=True)
    assert [b["index"].tolist() for b in again] == e0


def test_normalisation_matches_to_tensor_and_normalize():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    out = normalize_images({"image": x, "index": torch.arange(2)})["image"]
    ref = (x.float() / 255 - torch.tensor(IMAGE_MEAN)[:, None, None]) / torch.tensor(IMAGE_STD)[:, None, None]
    assert out.dtype == torch.float32 and torch.allclose(out, ref, atol=1e-5)


# ----------------------------------------------------------------------------- bad input
def rewrite_shard(path: Path, edit) -> None:
    """Rewrite a tar, passing each (name, bytes) through ``edit`` (None drops the member)."""
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            new = edit(name, data)
            if new is not None:
                info = tarfile.TarInfo(name)
                info.size = len(new)
                tar.addfile(info, io.BytesIO(new))


@pytest.fixture
def copy_of(fake_shards, tmp_path):
    def make() -> Path:
        root = tmp_path / "copy"
        shutil.copytree(fake_shards, root)
        return root

    return make


def iterate(root: Path, split: str = "train", **kw) -> list[dict]:
    # the shards are edited without updating the manifest: per-sample checks are tested here,
    # the sha256 check only where a test asks for it (tests/mmcl/test_corruption.py has both)
    kw.setdefault("verify", False)
    dm = MultimodalDataModule(str(root), batch_size=kw.pop("batch_size", 8), num_workers=0, **kw)
    return list(dm.dataloader(split, train=split == "train"))


def test_missing_member_is_an_error_naming_shard_and_key(copy_of):
    root = copy_of()
    rewrite_shard(root / "train/shard-000001.tar", lambda n, d: None if n == "000020.png" else d)
    with pytest.raises(
        DataError, match=r"train/shard-000001.tar:000020: sample has no .png member \(has json, txt\)"
    ):
        iterate(root)


def test_skip_policy_warns_counts_and_keeps_the_batch_count(copy_of):
    root = copy_of()
    rewrite_shard(root / "train/shard-000001.tar", lambda n, d: None if n == "000020.png" else d)
    rewrite_shard(root / "train/shard-000002.tar", lambda n, d: b"not a png" if n == "000040.png" else d)
    with pytest.warns(UserWarning, match=r"skipped corrupt sample \(\d so far") as record:
        batches = iterate(root, on_corrupt="skip")
    messages = " ".join(str(w.message) for w in record)
    assert (
        "000020: sample has no .png" in messages
        and "000040.png: not a sound PNG (no PNG signature)" in messages
    )
    assert len(batches) == 6 and all(len(b["index"]) == 8 for b in batches)
    served = [i for b in batches for i in b["index"].tolist()]
    assert 20 not in served and 40 not in served


def test_truncated_shard_and_checksums(copy_of):
    root = copy_of()
    path = root / "train/shard-000002.tar"
    path.write_bytes(path.read_bytes()[:9000])
    with pytest.raises(DataError, match=r"shard-000002.tar"):
        iterate(root)
    with pytest.raises(DataError, match=r"shard-000002.tar: sha256 differs"):
        iterate(root, verify=True)


def test_shard_without_json_members(copy_of):
    root = copy_of()
    rewrite_shard(root / "val/shard-000000.tar", lambda n, d: None if n.endswith(".json") else d)
    with pytest.raises(
        DataError, match=r"val/shard-000000.tar:000000: sample has no .json member \(has png, txt\)"
    ):
        iterate(root, "val")


def test_vocabulary_that_does_not_match_the_shards(copy_of):
    root = copy_of()
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["tokenizer"]["vocabulary"].remove("image")  # a word every template uses
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        DataError, match=r"shard-0000\d\d.tar:\d{6}.txt: token 'image' of .* not in the manifest's vocab"
    ):
        iterate(root, "val")


def test_checkpoint_vocabulary_must_equal_the_manifest(fake_shards):
    vocab = list(load_manifest(fake_shards).tokenizer.vocabulary)
    MultimodalDataModule(str(fake_shards), expected_vocabulary=vocab)
    with pytest.raises(DataError, match=r"manifest.json: the vocabulary of the checkpoint does not match"):
        MultimodalDataModule(str(fake_shards), expected_vocabulary=vocab[:-1] + ["zzz"])


def test_missing_files_and_bad_settings(copy_of, tmp_path):
    with pytest.raises(DataError, match=r"nowhere/manifest.json not found"):
        MultimodalDataModule(str(tmp_path / "nowhere"))
    root = copy_of()
    (root / "test/shard-000000.tar").unlink()
    with pytest.raises(
        DataError, match=r"test/shard-000000.tar: shard listed in .*manifest.json does not exist"
    ):
        MultimodalDataModule(str(root)).test_dataloader()
    with pytest.raises(DataError, match="make no batch of 64"):
        MultimodalDataModule(str(root), batch_size=64).train_dataloader()
    with pytest.raises(DataError, match="on_corrupt must be"):
        MultimodalDataModule(str(root), on_corrupt="ignore")
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(DataError, match="incomplete"):
        load_manifest(root)
