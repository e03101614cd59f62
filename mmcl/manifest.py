"""The dataset manifest (``ROOT/manifest.json``, docs/formats.md): factor table, tokenizer, shards.

Everything the learning side knows about a dataset comes from it; every problem with it is a
:class:`DataError` whose one sentence names the file and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mmcl.tokenizer import Tokenizer, TokenizerError

FORMAT = "mmcl3d-shards/1"
SPLITS: tuple[str, ...] = ("train", "val", "test")


class DataError(ValueError):
    """A dataset file or sample is unusable; the message names the file and key."""


class CorruptSample(DataError):
    """One sample is unusable (missing member, undecodable image, bad JSON, short shard)."""


@dataclass(frozen=True)
class FactorInfo:
    """One row of the manifest's factor table."""

    name: str
    modalities: tuple[str, ...]
    kind: str  # "discrete" | "continuous" | "categorical_name"
    role: str  # "content" | "style" | "image_specific" | "text_specific" | "constant"
    n_values: int | None
    period: float | None = None  # a periodic continuous factor (the object hue: 1.0)

    @property
    def numeric(self) -> bool:
        return self.kind in ("discrete", "continuous")

    @property
    def constant(self) -> bool:
        return self.role == "constant" or (self.kind == "discrete" and (self.n_values or 0) <= 1)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "role": self.role,
            "n_values": self.n_values,
            "modalities": list(self.modalities),
        }


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    relpath: str
    count: int
    sha256: str | None


@dataclass(frozen=True)
class Manifest:
    root: Path
    raw: dict
    factors: tuple[FactorInfo, ...]
    tokenizer: Tokenizer

    @property
    def path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.raw.get("counts", {}))

    @property
    def resolution(self) -> int | None:
        render = (self.raw.get("config") or {}).get("render") or {}
        return render.get("resolution")

    def factor(self, name: str) -> FactorInfo:
        for f in self.factors:
            if f.name == name:
                return f
        raise DataError(f"{self.path}: no factor named {name!r}")

    def factors_of(self, modality: str, numeric_only: bool = True) -> tuple[FactorInfo, ...]:
        """Factors observed in ``modality`` ('image' or 'text'), in table order."""
        return tuple(f for f in self.factors if modality in f.modalities and (f.numeric or not numeric_only))

    def content_factors(self) -> tuple[FactorInfo, ...]:
        """Non-constant factors with role 'content' (shape, x, y for Multimodal3DIdent)."""
        return tuple(f for f in self.factors if f.role == "content" and f.numeric and not f.constant)

    def shards(self, split: str) -> list[ShardInfo]:
        table = self.raw.get("shards", {})
        if split not in table or not table[split]:
            raise DataError(
                f"{self.path} lists no shards for split {split!r} (splits: {', '.join(table) or 'none'})"
            )
        out = []
        for i, entry in enumerate(table[split]):
            try:
                rel, count = entry["file"], int(entry["count"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{self.path}: shards.{split}[{i}] needs 'file' and 'count'") from None
            path = self.root / rel
            if not path.is_file():
                raise DataError(f"{path}: shard listed in {self.path} does not exist")
            out.append(ShardInfo(path, rel, count, entry.get("sha256")))
        return out


def load_manifest(root: str | Path) -> Manifest:
    """Read and check ``ROOT/manifest.json``; every problem is one sentence naming the file."""
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        hint = " (the path is not a directory)" if not root.is_dir() else ""
        raise DataError(
            f"{path} not found{hint}; a dataset root written by `datagen generate` holds it (docs/formats.md)"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from None
    if raw.get("format") != FORMAT:
        raise DataError(f"{path}: format is {raw.get('format')!r}, expected {FORMAT!r}")
    if raw.get("complete") is False:
        raise DataError(
            f"{path}: the dataset is incomplete (complete=false); finish it with `datagen finalize`"
        )
    for key in ("factors", "tokenizer", "shards"):
        if key not in raw:
            raise DataError(f"{path}: missing key {key!r}")
    factors = []
    for i, f in enumerate(raw["factors"]):
        try:
            factors.append(
                FactorInfo(
                    f["name"],
                    tuple(f["modalities"]),
                    f["kind"],
                    f["role"],
                    f.get("n_values"),
                    f.get("period"),
                )
            )
        except (KeyError, TypeError):
            raise DataError(f"{path}: factors[{i}] needs name, modalities, kind and role") from None
    try:
        tokenizer = Tokenizer.from_spec(raw["tokenizer"], where=str(path))
    except TokenizerError as exc:
        raise DataError(str(exc)) from None
    return Manifest(root, raw, tuple(factors), tokenizer)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_matches(shard: ShardInfo) -> bool:
    """Whether the shard's bytes hash to the manifest's sha256 (True when it lists none)."""
    return shard.sha256 is None or file_sha256(shard.path) == shard.sha256
