"""Reading and checking the embeddings files of docs/formats.md (``DIR/embeddings_<split>.npz``
+ ``DIR/embeddings.json``), written by ``mmcl embed``, ``mmcl simulate`` and ``mmcl dmvae eval``.

Every problem is reported as one ``EmbeddingsError`` sentence naming the file and key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class EmbeddingsError(ValueError):
    """Bad or inconsistent embeddings input (message names the file and key)."""


@dataclass
class Embeddings:
    """Features per representation and targets per factor, both keyed by split."""

    directory: Path
    meta: dict[str, Any]
    features: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # rep -> split -> (N, d)
    targets: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # factor -> split -> (N,)

    def factors_of(self, representation: str) -> list[str]:
        return list(self.meta["representations"][representation]["factors"])

    def factor_meta(self, factor: str) -> dict[str, Any]:
        return self.meta["factors"][factor]


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / "embeddings.json"
    if not path.is_file():
        raise EmbeddingsError(
            f"{path} not found; `mmcl embed` / `mmcl simulate` write it next to the .npz files"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise EmbeddingsError(f"{path} is not valid JSON ({err})") from None
    for key in ("representations", "factors"):
        if not isinstance(meta.get(key), dict) or not meta[key]:
            raise EmbeddingsError(f"{path} has no non-empty {key!r} mapping")
    for rep, spec in meta["representations"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("factors"), list):
            raise EmbeddingsError(f"{path}: representations[{rep!r}] needs a 'factors' list")
        for name in spec["factors"]:
            if name not in meta["factors"]:
                raise EmbeddingsError(
                    f"{path}: factor {name!r} listed for representation {rep!r} does not exist in 'factors'"
                )
    return meta


def load_embeddings(
    directory: str | Path,
    splits: tuple[str, ...] = ("val", "test"),
    representations: list[str] | None = None,
    factors: list[str] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> Embeddings:
    """Load and check the given splits; optionally keep some representations / factors and a
    seeded random subset of at most ``max_samples`` samples per split (original order kept)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EmbeddingsError(f"embeddings directory {directory} does not exist")
    meta = _read_meta(directory)
    reps = list(meta["representations"]) if representations is None else list(representations)
    for rep in reps:
        if rep not in meta["representations"]:
            raise EmbeddingsError(
                f"representation {rep!r} does not exist in {directory / 'embeddings.json'}; "
                f"known: {', '.join(meta['representations'])}"
            )
    if factors is not None:
        for name in factors:
            if name not in meta["factors"]:
                raise EmbeddingsError(
                    f"factor {name!r} does not exist in {directory / 'embeddings.json'}; "
                    f"known: {', '.join(meta['factors'])}"
                )
        meta = {
            **meta,
            "representations": {
                r: {**s, "factors": [f for f in s["factors"] if f in factors]}
                for r, s in meta["representations"].items()
            },
        }
    meta = {**meta, "representations": {r: meta["representations"][r] for r in reps}}
    wanted = list(dict.fromkeys(f for r in reps for f in meta["representations"][r]["factors"]))
    out = Embeddings(directory, meta)
    for split in splits:
        path = directory / f"embeddings_{split}.npz"
        if not path.is_file():
            raise EmbeddingsError(f"{path} not found")
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            arrays = {}
            for rep in reps:
                if rep not in keys:
                    raise EmbeddingsError(
                        f"{path} has no array {rep!r} (representation listed in embeddings.json)"
                    )
                arrays[rep] = np.asarray(npz[rep])
            for name in wanted:
                key = f"factor:{name}"
                if key not in keys:
                    raise EmbeddingsError(f"{path} has no array {key!r} (factor listed in embeddings.json)")
                arrays[key] = np.asarray(npz[key])
        n = _check_split(path, arrays, reps)
        index = np.arange(n)
        if max_samples is not None and n > max_samples:
            rng = np.random.default_rng([seed, len(split), sum(map(ord, split))])
            index = np.sort(rng.choice(n, size=max_samples, replace=False))
        for rep in reps:
            feats = arrays[rep]
            out.features.setdefault(rep, {})[split] = (feats[:, None] if feats.ndim == 1 else feats)[index]
        for name in wanted:
            out.targets.setdefault(name, {})[split] = arrays[f"factor:{name}"][index]
    return out


def _check_split(path: Path, arrays: dict[str, np.ndarray], reps: list[str]) -> int:
    n = None
    first = None
    for key, arr in arrays.items():
        if arr.ndim == 0:
            raise EmbeddingsError(f"{path}: array {key!r} is a scalar, expected one row per sample")
        if key in reps and arr.ndim > 2:
            raise EmbeddingsError(f"{path}: representation {key!r} has shape {arr.shape}, expected (N, d)")
        if key.startswith("factor:") and arr.ndim != 1:
            raise EmbeddingsError(f"{path}: {key!r} has shape {arr.shape}, expected (N,)")
        if n is None:
            n, first = len(arr), key
        elif len(arr) != n:
            raise EmbeddingsError(
                f"{path}: {key!r} has {len(arr)} samples but {first!r} has {n}; embeddings and latents "
                "must have the same length"
            )
        if key in reps:
            if not np.issubdtype(arr.dtype, np.number):
                raise EmbeddingsError(f"{path}: representation {key!r} is not numeric (dtype {arr.dtype})")
            if not np.isfinite(arr).all():
                raise EmbeddingsError(f"{path}: representation {key!r} contains NaN or inf values")
        elif np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise EmbeddingsError(f"{path}: {key!r} contains NaN or inf values")
    return int(n or 0)
