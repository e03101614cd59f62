"""The sweep's YAML (every key documented in configs/sweep/*.yaml), its (K, seed) points and their point files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = ("simulation", "multimodal3dident")


@dataclass
class SimulationSweep:
    config: str | None = None  # configs/simulation/*.yaml (None: paper defaults)
    setting: str = "multimodal"
    row: str = "p1.0"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class M3diSweep:
    train_config: str = "configs/train/m3di_paper.yaml"
    dataset_root: str = "data/m3di"
    fit_args: list[str] = field(default_factory=list)
    embed_args: list[str] = field(default_factory=list)
    probes: list[str] = field(default_factory=lambda: ["linear", "kernel_ridge", "logistic", "mlp"])
    probe_max_samples: int | None = None


@dataclass
class SweepConfig:
    kind: str
    encoding_sizes: list[int]
    seeds: list[int]
    out: str | None = None
    simulation: SimulationSweep = field(default_factory=SimulationSweep)
    multimodal3dident: M3diSweep = field(default_factory=M3diSweep)


class SweepError(ValueError):
    """Bad sweep configuration or a failed run; the message names the key or the log file."""


def _section(cls: type, values: Any, name: str) -> Any:
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise SweepError(f"sweep config key {name!r} must be a mapping")
    known = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SweepError(
            f"unknown sweep config key(s) {[f'{name}.{u}' for u in unknown]}; known: {sorted(known)}"
        )
    return cls(**values)


def load_sweep_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Read and check a sweep YAML (every key documented in configs/sweep/*.yaml)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep config file {str(path)!r} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise SweepError(f"{path}: expected a mapping of sweep config keys")
    return sweep_config_from_dict({**values, **(overrides or {})}, str(path))


def sweep_config_from_dict(values: dict[str, Any], path: str) -> SweepConfig:
    """Check the sweep config ``values`` (read from ``path``); one sentence naming the key."""
    known = set(SweepConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise SweepError(f"{path}: unknown sweep config key(s) {unknown}; known: {sorted(known)}")
    for key in ("kind", "encoding_sizes", "seeds"):
        if values.get(key) is None:
            raise SweepError(f"{path}: sweep config needs the key {key!r}")
    if values["kind"] not in KINDS:
        raise SweepError(f"{path}: 'kind' must be one of {KINDS}, got {values['kind']!r}")
    for key in ("encoding_sizes", "seeds"):
        v = values[key]
        if (
            not isinstance(v, list)
            or not v
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in v)
        ):
            raise SweepError(f"{path}: {key!r} must be a non-empty list of integers, got {v!r}")
        if len(set(v)) != len(v):
            raise SweepError(f"{path}: {key!r} has duplicates: {v}")
    if min(values["encoding_sizes"]) < 1:
        raise SweepError(f"{path}: encoding sizes must be >= 1")
    m3di = _section(M3diSweep, values.get("multimodal3dident"), "multimodal3dident")
    from mmcl.probing.probes import ALL_PROBES

    bad = [p for p in m3di.probes if p not in ALL_PROBES]
    if bad:  # checked here, not after the first fit has run for minutes
        raise SweepError(
            f"{path}: multimodal3dident.probes has unknown probe(s) {bad}; choose from {list(ALL_PROBES)}"
        )
    return SweepConfig(
        kind=values["kind"],
        encoding_sizes=sorted(values["encoding_sizes"]),
        seeds=list(values["seeds"]),
        out=values.get("out"),
        simulation=_section(SimulationSweep, values.get("simulation"), "simulation"),
        multimodal3dident=m3di,
    )


def points(cfg: SweepConfig) -> list[tuple[int, int]]:
    """Every (encoding size, seed) of the sweep, in the order the tables list them."""
    return [(k, seed) for k in cfg.encoding_sizes for seed in cfg.seeds]


def point_file(out: Path, k: int, seed: int) -> Path:
    return out / "points" / f"k{k}_seed{seed}.json"


def parse_points(text: str, n: int) -> range:
    """``i:j`` (Python slice bounds, either may be empty) or ``i`` -> the indices of points."""
    try:
        if ":" in text:
            lo, hi = text.split(":", 1)
            chosen = range(n)[slice(int(lo) if lo else None, int(hi) if hi else None)]
        else:
            chosen = range(int(text), int(text) + 1)
    except ValueError:
        raise SweepError(f"--points must be I:J or I (integers), got {text!r}") from None
    if not chosen or chosen.start < 0 or chosen.stop > n:
        raise SweepError(f"--points {text} selects no point of the {n} of this sweep (0..{n - 1})")
    return chosen


def fingerprint(cfg: SweepConfig) -> str:
    """What a point's result depends on besides its own K and seed: every other sweep key."""
    what = {k: v for k, v in asdict(cfg).items() if k not in ("encoding_sizes", "seeds", "out")}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def check_points(cfg: SweepConfig, out: Path, chosen: Iterable[int]) -> None:
    """A finished point made under other settings is refused, never mixed into the tables."""
    fp = fingerprint(cfg)
    for i in chosen:
        k, seed = points(cfg)[i]
        path = point_file(out, k, seed)
        if path.exists() and json.loads(path.read_text()).get("fingerprint") != fp:
            raise SweepError(
                f"{path} was made with other sweep settings; use another --out or delete "
                f"{out / f'encoding_size={k}'} and the point file to redo it"
            )
