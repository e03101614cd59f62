"""Every file datagen writes or reads: shards, manifest, PNG, and the published layout.

Writers are atomic (temporary name, then ``os.replace``) so a killed run leaves either the
old file or the complete new one, never half of one. Shards are byte-deterministic: tar
headers carry mtime 0 and uid/gid 0, and members follow a fixed order, so the same samples
give the same bytes (and sha256) on any machine, from any number of workers.

Formats: docs/formats.md (shards, manifest) and SPEC 2.8 (published layout).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from datagen.errors import DatasetError  # noqa: F401  (raised here; re-exported as io.DatasetError)

MANIFEST = "manifest.json"
FORMAT = "mmcl3d-shards/1"
PNG_COMPRESS_LEVEL = 6


# ----------------------------------------------------------------------------- atomic files
def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = _tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete leftovers of killed writers (``.NAME.tmp-PID``)."""
    stale = sorted(Path(folder).glob(".*.tmp-*")) if Path(folder).is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_writable(root: Path) -> None:
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DatasetError(f"{root}: output folder is not writable ({exc.strerror})") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- images
def encode_png(image: np.ndarray) -> bytes:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def decode_png(data: bytes, where: str = "image") -> np.ndarray:
    """PNG bytes -> (H, W, 3) uint8. ``verify()`` first: PIL checks chunk CRCs only there, and a
    damaged image-data chunk can otherwise decode to wrong pixels without an error."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # PIL raises many types for corrupt data
        raise DatasetError(f"{where}: cannot decode PNG ({exc})") from None


# ----------------------------------------------------------------------------- shards
def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _write_tar(fileobj, records: Iterable[dict]) -> int:
    count = 0
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rec in records:
            key = rec["key"]
            _tar_member(tar, f"{key}.png", rec["png"])
            _tar_member(tar, f"{key}.txt", rec["txt"].encode())
            _tar_member(tar, f"{key}.json", json.dumps(rec["json"], sort_keys=True).encode())
            count += 1
    return count


def write_shard(path: Path, records: Iterable[dict]) -> dict:
    """Write records ``{"key", "png": bytes, "txt": str, "json": dict}`` as one shard.

    Returns ``{"count", "sha256"}``. The shard appears under ``path`` only when complete.
    """
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            count = _write_tar(f, records)
            f.flush()
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"count": count, "sha256": digest}


def shard_bytes(records: Iterable[dict]) -> bytes:
    """The exact bytes ``write_shard`` would write, in memory (for remote workers)."""
    buf = io.BytesIO()
    _write_tar(buf, records)
    return buf.getvalue()


def read_shard(path: Path) -> Iterator[dict]:
    """Yield ``{"key", "png", "txt", "json"}`` per sample; errors name the shard and member."""
    path = Path(path)
    try:
        tar = tarfile.open(path)
    except (OSError, tarfile.TarError) as exc:
        raise DatasetError(f"{path}: not a readable tar shard ({exc})") from None
    with tar:
        current: dict | None = None
        try:
            for member in tar:
                key, _, ext = member.name.rpartition(".")
                if not key or ext not in ("png", "txt", "json"):
                    raise DatasetError(f"{path}: unexpected member {member.name!r}")
                data = tar.extractfile(member).read()
                if current is None or current["key"] != key:
                    if current is not None:
                        yield _finish(current, path)
                    current = {"key": key}
                current[ext] = data
        except (OSError, tarfile.TarError) as exc:
            raise DatasetError(f"{path}: truncated or corrupt shard ({exc})") from None
        if current is not None:
            yield _finish(current, path)


def _finish(rec: dict, path: Path) -> dict:
    missing = [e for e in ("png", "txt", "json") if e not in rec]
    if missing:
        raise DatasetError(f"{path}: sample {rec['key']} lacks {', '.join(missing)}")
    try:
        rec["txt"] = rec["txt"].decode()
        rec["json"] = json.loads(rec["json"])
    except (UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: sample {rec['key']} has unreadable txt/json ({exc})") from None
    return rec


# ----------------------------------------------------------------------------- manifest
def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path}: no manifest; is {root} a dataset made by `datagen generate`?")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if data.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {data.get('format')!r}, expected {FORMAT!r}")
    return data


def write_manifest(root: Path, manifest: dict) -> None:
    write_json(Path(root) / MANIFEST, manifest)


# ----------------------------------------------------------------------------- published layout
def published_digits(n: int) -> int:
    """Zero padding of the published image names: ceil(log10(N)) (6 for 125k, 4 for 10k)."""
    return max(1, math.ceil(math.log10(n))) if n > 1 else 1


def write_csv(path: Path, columns: list[str], rows: Iterable[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_value(row[c]) for c in columns})
    atomic_write_text(path, buf.getvalue())


def _csv_value(v):
    # repr of a float round-trips exactly; keep ints as ints.
    return repr(v) if isinstance(v, float) else v


def read_csv(path: Path) -> list[dict[str, str]]:
    if not Path(path).is_file():
        raise DatasetError(f"{path}: file not found")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
