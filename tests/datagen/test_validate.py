"""``datagen validate`` passes on real data and catches each kind of damage."""

import shutil

from datagen import io
from datagen.cli import main
from datagen.validate import validate


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def rewrite_shard(path, change):
    recs = list(io.read_shard(path))
    change(recs)
    io.write_shard(path, recs)


def test_validate_passes_on_generated_data(tiny_dataset, capsys):
    assert main(["validate", str(tiny_dataset), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "checked      80 samples" in out and "OK" in out


def test_tampered_sentence_fails_even_with_a_fixed_up_sha(tiny_dataset, tmp_path):
    root = copy(tiny_dataset, tmp_path / "ds")
    shard = root / "train" / "shard-000001.tar"

    def swap_position(recs):
        t = recs[3]["txt"]
        recs[3]["txt"] = (
            t.replace("-left", "-right")
            if "-left" in t
            else t.replace("-center", "-left").replace("-right", "-left")
        )

    rewrite_shard(shard, swap_position)
    m = io.read_manifest(root)
    m["shards"]["train"][1]["sha256"] = io.sha256_file(shard)
    io.write_manifest(root, m)
    report = validate(root, progress=False)
    assert not report.ok and set(report.failures) == {"sentence"}
    assert "train/shard-000001.tar:000019" in report.text()


def test_changed_latent_and_wrong_colour_name_are_caught(tiny_dataset, tmp_path):
    root = copy(tiny_dataset, tmp_path / "ds")

    def break_colour(recs):
        recs[0]["json"]["text"]["object_color_name"] = "xkcd:puke"

    rewrite_shard(root / "val" / "shard-000000.tar", break_colour)
    report = validate(root, progress=False)
    assert {"sha256", "sampler", "sentence", "colour"} <= set(report.failures)


def test_missing_and_truncated_shards(tiny_dataset, tmp_path, capsys):
    root = copy(tiny_dataset, tmp_path / "ds")
    (root / "test" / "shard-000000.tar").unlink()
    data = (root / "train" / "shard-000000.tar").read_bytes()
    (root / "train" / "shard-000000.tar").write_bytes(data[: len(data) // 2])
    assert main(["validate", str(root), "--quiet", "--report", str(tmp_path / "r.txt")]) == 2
    text = (tmp_path / "r.txt").read_text()
    assert "test/shard-000000.tar: listed in the manifest but missing" in text
    assert "[sha256]" in text and "FAILED" in text
