"""Damaged data on real shards (the painted ``fake_shards``, tests/mmcl/conftest.py): ``mmcl fit``,
``mmcl embed`` and ``datagen validate`` end with exit status 2 and one sentence naming the shard (and the key where there is one), or,
under ``--data.on_corrupt skip``, train on and count; the interpreter never dies from a signal.

Each command runs as a real process (`python -m mmcl.cli` / `datagen.cli`), because what went
wrong before was a segmentation fault inside libpng that no in-process test can survive.
Corruptions (a)-(d) are resealed: the manifest's sha256 is recomputed, as if the damage was done
before the dataset was finalised, so the per-sample checks are what must catch them; (e) and
(f) leave the manifest alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data import rewrite_shard  # tests/mmcl/test_data.py: rewrite a tar member by member

from mmcl.png import PNGError, check_png, decode_png_rgb

REPO = Path(__file__).resolve().parents[2]
SHARD = "train/shard-000001.tar"  # samples 16..31 of the tiny dataset
VAL_SHARD = "val/shard-000000.tar"
KEY = "000020"
VAL_KEY = "000005"


# ----------------------------------------------------------------------------- corruptions
def flip_image_data(png: bytes, n: int = 3) -> bytes:
    """Invert ``n`` bytes in the middle of the first IDAT chunk (its CRC no longer matches)."""
    pos = 8
    while png[pos + 4 : pos + 8] != b"IDAT":
        pos += 12 + struct.unpack(">I", png[pos : pos + 4])[0]
    length = struct.unpack(">I", png[pos : pos + 4])[0]
    out = bytearray(png)
    for i in range(n):
        out[pos + 8 + length // 2 + i] ^= 0xFF
    return bytes(out)


def set_latent(value):
    def edit(name: str, data: bytes) -> bytes:
        if name == f"{KEY}.json" or name == f"{VAL_KEY}.json":
            meta = json.loads(data)
            meta["image"]["object_xpos"] = value
            return json.dumps(meta).encode()
        return data

    return edit


def member_edit(fn, suffix: str):
    return lambda name, data: fn(data) if name in (f"{KEY}.{suffix}", f"{VAL_KEY}.{suffix}") else data


CORRUPTIONS = {
    # name: (edit of a shard, reseal the manifest, what the error must name besides the shard)
    "png_bit_flips": (lambda p: rewrite_shard(p, member_edit(flip_image_data, "png")), True, ".png"),
    "truncated_shard": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), True, None),
    "missing_png": (lambda p: rewrite_shard(p, member_edit(lambda d: None, "png")), True, "no .png"),
    "missing_json": (lambda p: rewrite_shard(p, member_edit(lambda d: None, "json")), True, "no .json"),
    "json_wrong_type": (lambda p: rewrite_shard(p, set_latent("left")), True, "object_xpos"),
    "json_out_of_range": (lambda p: rewrite_shard(p, set_latent(7)), True, "object_xpos"),
    "zero_length_shard": (lambda p: p.write_bytes(b""), False, None),
    "sha256_differs": (lambda p: p.write_bytes(p.read_bytes() + b"\0" * 1024), False, "sha256"),
}


def reseal(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    for entries in manifest["shards"].values():
        for entry in entries:
            entry["sha256"] = hashlib.sha256((root / entry["file"]).read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))


def damaged_copy(fake_shards: Path, dest: Path, corruption: str) -> Path:
    edit, resealed, _ = CORRUPTIONS[corruption]
    shutil.copytree(fake_shards, dest)
    for rel in (SHARD, VAL_SHARD):
        edit(dest / rel)
    if resealed:
        reseal(dest)
    return dest


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MMCL_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True)


def fit_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "mmcl.cli", "fit", "--config", str(REPO / "configs/train/quickstart.yaml"),
        "--data.root", str(root), "--data.batch_size", "16", "--data.num_workers", "1",
        "--model.encoding_size", "4", "--trainer.max_steps", "6", "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(out), *extra,
    ]  # fmt: skip


def assert_one_sentence(done: subprocess.CompletedProcess, command: str, *names: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])  # not a signal (< 0), not 1
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"{command}: error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for name in names:
        assert name in errors[0], (name, errors[0])


@pytest.fixture(scope="module")
def fitted(fake_shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corruption_fit")
    done = run(*fit_args(fake_shards, out), cwd=out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "checkpoints" / "last.ckpt"


# ----------------------------------------------------------------------------- the suite
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_damaged_shard_is_one_sentence_and_exit_2(corruption, fake_shards, fitted, tmp_path):
    root = damaged_copy(fake_shards, tmp_path / "data", corruption)
    _, _, detail = CORRUPTIONS[corruption]
    # fit reads the damaged training shard
    done = run(*fit_args(root, tmp_path / "fit"), cwd=tmp_path)
    assert_one_sentence(done, "mmcl fit", SHARD, *([detail] if detail else []))
    # embed reads the damaged validation shard
    done = run(
        "mmcl.cli",
        "embed",
        str(fitted),
        str(root),
        "--split",
        "val",
        "--out",
        str(tmp_path / "e"),
        cwd=tmp_path,
    )
    assert_one_sentence(done, "mmcl embed", VAL_SHARD)
    assert not (tmp_path / "e" / "embeddings_val.npz").exists()
    done = run("datagen.cli", "validate", str(root), "--quiet", cwd=tmp_path)
    assert_one_sentence(done, "datagen validate", SHARD)
    assert SHARD in done.stdout and VAL_SHARD in done.stdout  # the report lists both


@pytest.mark.parametrize("corruption", ["png_bit_flips", "missing_png", "json_out_of_range"])
def test_skip_policy_trains_on_and_counts(corruption, fake_shards, tmp_path):
    root = damaged_copy(fake_shards, tmp_path / "data", corruption)
    done = run(*fit_args(root, tmp_path / "fit", "--data.on_corrupt", "skip"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped corrupt sample (1 so far" in done.stderr and f"{SHARD}:{KEY}" in done.stderr
    assert (tmp_path / "fit" / "checkpoints" / "last.ckpt").is_file()


def test_sha256_mismatch_under_skip_warns_and_reads_on(fake_shards, tmp_path):
    root = damaged_copy(fake_shards, tmp_path / "data", "sha256_differs")
    done = run(*fit_args(root, tmp_path / "fit", "--data.on_corrupt", "skip"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{SHARD}: sha256 differs" in done.stderr and "reading its samples anyway" in done.stderr


def test_verify_false_reads_a_changed_shard(fake_shards, tmp_path):
    root = damaged_copy(fake_shards, tmp_path / "data", "sha256_differs")  # same samples, padded
    done = run(*fit_args(root, tmp_path / "fit", "--data.verify", "false"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_bad_config_value_is_one_sentence(fake_shards, tmp_path):
    done = run(*fit_args(fake_shards, tmp_path / "fit", "--data.batch_size", "0"), cwd=tmp_path)
    assert_one_sentence(done, "mmcl fit", "data.batch_size must be >= 1")


# ----------------------------------------------------------------------------- PNG check
def render_png(fake_shards: Path) -> bytes:
    with tarfile.open(fake_shards / SHARD) as tar:
        return tar.extractfile(f"{KEY}.png").read()


def test_png_fuzz_never_kills_the_process(fake_shards, tmp_path):
    """2 000 random corruptions of a real shard PNG, decoded in a child process: half are raw byte
    damage (bit flips, overwritten and cut bytes: mostly caught by a CRC), half damage the
    image data and then recompute the CRC (the inflate, length, window and filter checks must
    catch them). Each decodes or raises PNGError, and the child exits normally."""
    (tmp_path / "render.png").write_bytes(render_png(fake_shards))
    script = f"""
import struct, zlib
import numpy as np
from mmcl.png import PNGError, decode_png_rgb
data = open({str(tmp_path / "render.png")!r}, "rb").read()
pos = 8
while data[pos + 4 : pos + 8] != b"IDAT":
    pos += 12 + struct.unpack(">I", data[pos : pos + 4])[0]
length = struct.unpack(">I", data[pos : pos + 4])[0]
body = data[pos + 8 : pos + 8 + length]
raw = zlib.decompress(body)

def resealed(new_body):
    chunk = struct.pack(">I", len(new_body)) + b"IDAT" + new_body + struct.pack(">I", zlib.crc32(b"IDAT" + new_body))
    return data[:pos] + chunk + data[pos + 12 + length :]

rng = np.random.default_rng(0)
refused = {{"raw": 0, "resealed": 0}}
for i in range(2000):
    kind = i % 8
    if kind < 4:
        b = bytearray(data)
        if kind == 0:
            for _ in range(int(rng.integers(1, 4))):
                b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            b = b[: int(rng.integers(len(b)))]
        elif kind == 2:
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        else:
            j = int(rng.integers(len(b)))
            b = b[:j] + b[j + int(rng.integers(1, 20)):]
        group = "raw"
    else:
        group = "resealed"
        if kind == 4:  # damaged compressed stream
            nb = bytearray(body)
            nb[int(rng.integers(len(nb)))] ^= 1 << int(rng.integers(8))
            b = resealed(bytes(nb))
        elif kind == 5:  # cut compressed stream
            b = resealed(body[: int(rng.integers(2, len(body)))])
        elif kind == 6:  # valid stream of the wrong length
            cut = int(rng.integers(1, len(raw)))
            b = resealed(zlib.compress(raw[:cut] if rng.random() < 0.5 else raw + raw[:cut]))
        else:  # valid stream, scanline filter bytes out of range
            nr = bytearray(raw)
            row = int(rng.integers(32))
            nr[row * (len(raw) // 32)] = int(rng.integers(5, 256))
            b = resealed(zlib.compress(bytes(nr)))
    try:
        decode_png_rgb(bytes(b))
    except PNGError:
        refused[group] += 1
print(refused["raw"], refused["resealed"])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    raw, resealed = map(int, done.stdout.split())
    assert raw > 950 and resealed > 950, (raw, resealed)  # nearly all caught, none crashed


def test_png_check_accepts_what_libpng_and_pil_decode(fake_shards):
    data = render_png(fake_shards)
    assert check_png(data) is True
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert (decode_png_rgb(data).permute(1, 2, 0).numpy() == expected).all()
    # a palette image is not for libpng here: PIL decodes it
    buf = io.BytesIO()
    Image.fromarray(expected).convert("P").save(buf, format="PNG")
    assert check_png(buf.getvalue()) is False
    assert decode_png_rgb(buf.getvalue()).shape == (3, *expected.shape[:2])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d[:-20], "truncated"),
        (flip_image_data, "CRC mismatch in chunk 'IDAT'"),
        (lambda d: b"GIF89a" + d[6:], "no PNG signature"),
    ],
)
def test_png_check_names_the_problem(fake_shards, damage, message):
    with pytest.raises(PNGError, match=message):
        decode_png_rgb(damage(render_png(fake_shards)))


def test_png_check_catches_what_only_libpng_would_see(fake_shards):
    """Valid CRCs around image data that libpng rejects (it would segfault inside torchvision)."""
    data = render_png(fake_shards)
    pos = 8
    while data[pos + 4 : pos + 8] != b"IDAT":
        pos += 12 + struct.unpack(">I", data[pos : pos + 4])[0]
    length = struct.unpack(">I", data[pos : pos + 4])[0]
    raw = bytearray(zlib.decompress(data[pos + 8 : pos + 8 + length]))

    def with_raw(new_raw: bytes) -> bytes:
        comp = zlib.compress(bytes(new_raw))
        chunk = struct.pack(">I", len(comp)) + b"IDAT" + comp + struct.pack(">I", zlib.crc32(b"IDAT" + comp))
        return data[:pos] + chunk + data[pos + 12 + length :]

    bad_filter = bytearray(raw)
    bad_filter[0] = 9
    with pytest.raises(PNGError, match="filter type 9"):
        decode_png_rgb(with_raw(bad_filter))
    with pytest.raises(PNGError, match="image data hold"):
        decode_png_rgb(with_raw(raw[: len(raw) // 2]))
