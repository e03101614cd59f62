"""Published layout <-> shards (SPEC 2.8): lossless latents and text, identical pixels."""

import numpy as np

from datagen import io
from datagen.cli import main
from datagen.validate import validate


def samples_of(root):
    out = {}
    m = io.read_manifest(root)
    for split in m["counts"]:
        for entry in m["shards"][split]:
            for rec in io.read_shard(root / entry["file"]):
                out[(split, rec["json"]["index"])] = rec
    return out


def test_round_trip_shards_published_shards(tiny_dataset, tmp_path):
    pub, back = tmp_path / "published", tmp_path / "back"
    assert main(["convert", str(tiny_dataset), str(pub), "--quiet"]) == 0
    assert sorted(p.name for p in (pub / "train" / "images").iterdir())[:2] == ["00.png", "01.png"]
    assert len((pub / "val" / "text" / "text_raw.txt").read_text().splitlines()) == 16
    assert main(["convert", str(pub), str(back), "--shard-size", "16", "--quiet"]) == 0
    a, b = samples_of(tiny_dataset), samples_of(back)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["txt"] == b[k]["txt"]
        assert a[k]["json"]["image"] == b[k]["json"]["image"]  # exact floats
        assert a[k]["json"]["text"] == b[k]["json"]["text"]
        assert a[k]["json"]["palette"] == b[k]["json"]["palette"]
        assert a[k]["png"] == b[k]["png"]
    manifest = io.read_manifest(back)
    assert manifest["origin"]["type"] == "published"
    assert manifest["tokenizer"]["vocabulary"] == io.read_manifest(tiny_dataset)["tokenizer"]["vocabulary"]
    report = validate(back, progress=False)
    assert report.ok, report.text()


def test_round_trip_published_shards_published_is_identical(tiny_dataset, tmp_path):
    pub, shards, pub2 = tmp_path / "p1", tmp_path / "s", tmp_path / "p2"
    main(["convert", str(tiny_dataset), str(pub), "--quiet"])
    # The published release stored RGBA PNGs; conversion keeps pixels, drops the opaque alpha.
    img = pub / "test" / "images" / "03.png"
    rgb = io.decode_png(img.read_bytes())
    from PIL import Image

    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA").save(img)
    assert main(["convert", str(pub), str(shards), "--quiet"]) == 0
    assert main(["convert", str(shards), str(pub2), "--quiet"]) == 0
    for split in ("train", "val", "test"):
        for name in ("latents_image.csv", "latents_text.csv", "text/text_raw.txt"):
            assert (pub / split / name).read_bytes() == (pub2 / split / name).read_bytes()
        for p in (pub / split / "images").iterdir():
            assert np.array_equal(
                io.decode_png(p.read_bytes()), io.decode_png((pub2 / split / "images" / p.name).read_bytes())
            )


def test_convert_errors_name_the_file(tiny_dataset, tmp_path, capsys):
    pub = tmp_path / "pub"
    main(["convert", str(tiny_dataset), str(pub), "--quiet"])
    (pub / "val" / "images" / "05.png").unlink()
    assert main(["convert", str(pub), str(tmp_path / "out"), "--quiet"]) == 2
    assert "05.png: image not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["convert", str(tmp_path / "nothing"), str(tmp_path / "o2"), "--quiet"]) == 2
