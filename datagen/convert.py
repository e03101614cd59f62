"""Convert between the published Multimodal3DIdent layout and our shards (SPEC 2.8).

Published layout, per split::

    SPLIT/images/NNNNNN.png        zero-padded to ceil(log10(N)) digits
    SPLIT/text/text_raw.txt        one sentence per line
    SPLIT/latents_image.csv        columns of the image factors
    SPLIT/latents_text.csv         columns of the text factors

Both directions are lossless for latents (floats round-trip through ``repr``) and text, and
pixel-identical for images (RGB PNG bytes are copied unchanged; other PNG modes are decoded
to RGB once). A dataset converted from the published files records that origin in its
manifest; ``datagen validate`` then skips the checks that need our sampler.
"""

from __future__ import annotations

import io as _io
import sys
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from datagen import io
from datagen.config import SPLITS, config_from_json, make_config
from datagen.design import design_of
from datagen.factors import THESIS_SHAPES, factor, factors_of
from datagen.pipeline import ShardTask, base_manifest, finalize, plan_shards, prepare_root
from datagen.progress import Progress
from datagen.text import PALETTE_NAMES, palettes, parse_sentence


class ConvertError(RuntimeError):
    pass


def palette_of(colour_name: str) -> str:
    """Tableau names start with ``tab:``, XKCD names with ``xkcd:``; CSS4 names are bare."""
    for p in palettes():
        if colour_name in p.colour_names:
            return p.name
    raise ConvertError(f"colour name {colour_name!r} is in none of the palettes {PALETTE_NAMES}")


def _parse_value(name: str, raw: str, where: str):
    f = factor(name)
    try:
        if f.kind == "categorical_name":
            return raw
        if f.kind == "discrete":
            return int(float(raw)) if float(raw).is_integer() else _bad(where, name, raw, "an integer")
        return float(raw)
    except ValueError:
        return _bad(where, name, raw, "a number")


def _bad(where, name, raw, what):
    raise ConvertError(f"{where}: column {name} has {raw!r}, expected {what}")


def _read_latents(path: Path, modality: str) -> list[dict]:
    rows = io.read_csv(path)
    cols = [f.name for f in factors_of(modality)]
    if rows:
        missing = [c for c in cols if c not in rows[0]]
        if missing:
            raise ConvertError(f"{path}: missing column(s) {missing}; expected {cols}")
    return [{c: _parse_value(c, row[c], f"{path}:{i + 2}") for c in cols} for i, row in enumerate(rows)]


def read_published_split(src: Path, split: str) -> tuple[list[dict], list[dict], list[str], list[Path]]:
    d = Path(src) / split
    image = _read_latents(d / "latents_image.csv", "image")
    text = _read_latents(d / "latents_text.csv", "text")
    text_file = d / "text" / "text_raw.txt"
    if not text_file.is_file():
        raise ConvertError(f"{text_file}: file not found")
    sentences = text_file.read_text().splitlines()
    n = len(image)
    if not (len(text) == len(sentences) == n):
        raise ConvertError(
            f"{d}: {n} rows in latents_image.csv, {len(text)} in latents_text.csv and "
            f"{len(sentences)} lines in text/text_raw.txt; they must match"
        )
    digits = io.published_digits(n)
    images = [d / "images" / f"{i:0{digits}d}.png" for i in range(n)]
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise ConvertError(f"{missing[0]}: image not found ({len(missing)} of {n} missing in {d / 'images'})")
    return image, text, sentences, images


def _rgb_png_bytes(path: Path) -> tuple[bytes, int]:
    data = path.read_bytes()
    try:
        with Image.open(_io.BytesIO(data)) as im:
            if im.format == "PNG" and im.mode == "RGB":
                return data, im.size[0]
            rgb = im.convert("RGB")
            buf = _io.BytesIO()
            rgb.save(buf, format="PNG", compress_level=io.PNG_COMPRESS_LEVEL)
            return buf.getvalue(), im.size[0]
    except Exception as exc:
        raise ConvertError(f"{path}: cannot read image ({exc})") from None


def published_to_shards(
    src: Path, dst: Path, shard_size: int = 1000, overwrite: bool = False, progress: bool = True, log=None
) -> dict:
    log = log or (lambda m: print(m, file=sys.stderr))
    src = Path(src)
    splits = [s for s in SPLITS if (src / s / "latents_image.csv").is_file()]
    if not splits:
        raise ConvertError(
            f"{src}: no SPLIT/latents_image.csv for any of {SPLITS}; is this the published layout?"
        )
    data = {s: read_published_split(src, s) for s in splits}
    words = list(THESIS_SHAPES)
    for s in splits:  # shape words as the sentences use them
        for lat, sentence in zip(data[s][1], data[s][2]):
            try:
                words[lat["object_shape"]] = parse_sentence(sentence).shape_word
            except (ValueError, IndexError):
                raise ConvertError(f"{src / s}: sentence {sentence!r} matches no template") from None
    resolution = _rgb_png_bytes(data[splits[0]][3][0])[1]
    config = make_config(
        {
            "counts": {s: len(data[s][0]) for s in splits},
            "shard_size": shard_size,
            "shapes": [w.replace(" ", "_") for w in words],
            "preset": "reference",
            "render": {"resolution": resolution},
        },
        where="converted dataset",
    )
    shapes = [
        {"name": w.replace(" ", "_"), "word": w, "index": i, "source": f"published dataset {src}"}
        for i, w in enumerate(words)
    ]
    manifest = base_manifest(config, shapes, tuple(words))
    manifest["origin"] = {"type": "published", "source": str(src.resolve())}
    prepare_root(dst, manifest, overwrite)
    bar = Progress(sum(config.counts.values()), "convert", "samples", enabled=progress)
    for task in plan_shards(config):
        (Path(dst) / task.split).mkdir(exist_ok=True)
        io.write_shard(Path(dst) / task.relpath, _published_records(task, data[task.split], config, bar))
    log(f"[convert] {src} -> {dst}")
    return finalize(dst)


def _published_records(task: ShardTask, split_data, config, bar) -> Iterator[dict]:
    image, text, sentences, paths = split_data
    for i in range(task.start, task.stop):
        png, size = _rgb_png_bytes(paths[i])
        if size != config.render.resolution:
            raise ConvertError(f"{paths[i]}: {size}x{size} image, the others are {config.render.resolution}")
        meta = {
            "index": i,
            "split": task.split,
            "key": f"{i:06d}",
            "seed": None,
            "image": image[i],
            "text": text[i],
            "palette": palette_of(text[i]["object_color_name"]),
            "shape_word": config.shapes[text[i]["object_shape"]].replace("_", " "),
            "render_seed": None,
            "render": {"preset": "published", "resolution": config.render.resolution},
        }
        bar.update(1)
        yield {"key": f"{i:06d}", "png": png, "txt": sentences[i], "json": meta}


def shards_to_published(src: Path, dst: Path, progress: bool = True, log=None) -> Path:
    log = log or (lambda m: print(m, file=sys.stderr))
    manifest = io.read_manifest(src)
    design = design_of(config_from_json(manifest["config"]))  # the dataset's columns
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise ConvertError(f"{dst}: folder is not empty; choose an empty or new folder")
    io.check_writable(dst)
    bar = Progress(sum(manifest["counts"].values()), "convert", "samples", enabled=progress)
    for split, n in manifest["counts"].items():
        digits = io.published_digits(n)
        (dst / split / "images").mkdir(parents=True, exist_ok=True)
        (dst / split / "text").mkdir(parents=True, exist_ok=True)
        image_rows, text_rows, sentences = [], [], []
        for entry in manifest["shards"][split]:
            for rec in io.read_shard(Path(src) / entry["file"]):
                i = rec["json"]["index"]
                io.atomic_write_bytes(dst / split / "images" / f"{i:0{digits}d}.png", rec["png"])
                image_rows.append(rec["json"]["image"])
                text_rows.append(rec["json"]["text"])
                if "\n" in rec["txt"]:
                    raise ConvertError(f"{entry['file']}:{rec['key']}: sentence contains a newline")
                sentences.append(rec["txt"])
                bar.update(1)
        io.write_csv(
            dst / split / "latents_image.csv", [f.name for f in design.factors_of("image")], image_rows
        )
        io.write_csv(dst / split / "latents_text.csv", [f.name for f in design.factors_of("text")], text_rows)
        io.atomic_write_text(dst / split / "text" / "text_raw.txt", "\n".join(sentences) + "\n")
    log(f"[convert] {src} -> {dst} (published layout)")
    return dst
