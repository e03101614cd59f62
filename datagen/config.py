"""Dataset and render configuration: dataclasses with defaults, presets, validation.

A ``DatasetConfig`` fully determines a dataset: with the same config (and the same mesh
library and palettes, whose digests the manifest records) every sample's latents, sentence
and pixels come out the same, whatever the number of workers, shards or machines. How the
work is executed (workers, threads, backend, device) is not part of it.

Presets (SPEC 2.3, 2.5):

* ``reference`` -- the upstream settings: 224x224, Cycles 512 samples, denoiser on.
* ``default``   -- the fast preset whose images match ``reference`` closely (see
  docs/benchmarks.md for the quality/speed frontier it was chosen from).
* ``draft``     -- small and quick, for demos and tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from datagen.design import build_design
from datagen.errors import ConfigError
from datagen.factors import COLOUR_MODES, HUE_MODES
from datagen.meshes import DEFAULT_SHAPES

SPLITS: tuple[str, ...] = ("train", "val", "test")
DESIGN_KEYS: tuple[str, ...] = ("factors", "describe", "edges", "templates")


@dataclass(frozen=True)
class RenderSettings:
    """Cycles settings. Upstream values (SPEC 2.3) unless a preset says otherwise."""

    resolution: int = 224
    samples: int = 512
    denoise: bool = True
    denoiser: str = "OPENIMAGEDENOISE"
    denoise_quality: str = "HIGH"  # OpenImageDenoise: HIGH (Blender's default), BALANCED, FAST
    denoise_prefilter: str = "ACCURATE"  # albedo/normal prefilter: ACCURATE, FAST, NONE
    max_bounces: int = 0
    blur_glossy: float = 2.0
    adaptive_threshold: float = 0.01  # Cycles' default adaptive-sampling noise threshold
    use_adaptive_sampling: bool = True
    light_tree: bool = True
    filter_width: float = 1.5

    def validate(self) -> None:
        if self.resolution < 8:
            raise ConfigError(f"render.resolution must be >= 8, got {self.resolution}")
        if self.samples < 1:
            raise ConfigError(f"render.samples must be >= 1, got {self.samples}")
        if self.max_bounces < 0:
            raise ConfigError(f"render.max_bounces must be >= 0, got {self.max_bounces}")
        if self.denoise_quality not in ("HIGH", "BALANCED", "FAST"):
            raise ConfigError(
                f"render.denoise_quality must be HIGH, BALANCED or FAST, got {self.denoise_quality!r}"
            )
        if self.denoise_prefilter not in ("ACCURATE", "FAST", "NONE"):
            raise ConfigError(
                f"render.denoise_prefilter must be ACCURATE, FAST or NONE, got {self.denoise_prefilter!r}"
            )
        if self.denoiser not in ("OPENIMAGEDENOISE", "OPTIX"):
            raise ConfigError(f"render.denoiser must be OPENIMAGEDENOISE or OPTIX, got {self.denoiser!r}")


PRESETS: dict[str, RenderSettings] = {
    "reference": RenderSettings(),
    # The fastest configuration of the quality/speed frontier (docs/bench/render.md) whose mean
    # PSNR against `reference` is >= 35 dB: 1 sample per pixel and OpenImageDenoise at FAST
    # quality (about 38 dB; the denoiser is most of its cost).
    "default": RenderSettings(samples=1, denoise=True, denoise_quality="FAST", use_adaptive_sampling=False),
    # 64x64 for demos and tests: 4 samples + the fast denoiser.
    "draft": RenderSettings(
        resolution=64, samples=4, denoise=True, denoise_quality="FAST", use_adaptive_sampling=False
    ),
}


@dataclass(frozen=True)
class DatasetConfig:
    seed: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"train": 125_000, "val": 10_000, "test": 10_000})
    shard_size: int = 1000
    colour_mode: str = "causal"
    hue_mode: str = "upstream"
    shapes: tuple[str, ...] = DEFAULT_SHAPES
    preset: str = "default"
    render: RenderSettings = field(default_factory=lambda: PRESETS["default"])
    # The factor design (datagen.design); empty = the thesis's dataset. Left out of the
    # manifest's config when empty, so default datasets keep their digest.
    factors: dict[str, dict] = field(default_factory=dict)
    describe: tuple[str, ...] = ()
    edges: tuple[dict, ...] = ()
    templates: tuple[str, ...] = ()

    def validate(self) -> DatasetConfig:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        unknown = set(self.counts) - set(SPLITS)
        if unknown:
            raise ConfigError(f"counts: unknown split(s) {sorted(unknown)}; expected {SPLITS}")
        for split, n in self.counts.items():
            if not isinstance(n, int) or n < 1:
                raise ConfigError(f"counts.{split} must be a positive integer, got {n!r}")
        if self.shard_size < 1:
            raise ConfigError(f"shard_size must be a positive integer, got {self.shard_size}")
        if self.colour_mode not in COLOUR_MODES:
            raise ConfigError(f"colour_mode must be one of {COLOUR_MODES}, got {self.colour_mode!r}")
        if self.hue_mode not in HUE_MODES:
            raise ConfigError(f"hue_mode must be one of {HUE_MODES}, got {self.hue_mode!r}")
        if len(self.shapes) < 1 or len(set(self.shapes)) != len(self.shapes):
            raise ConfigError(f"shapes must be a non-empty list of distinct names, got {list(self.shapes)}")
        self.render.validate()
        self.design  # noqa: B018 -- builds (and so checks) the factor design, kept for the sampler
        return self

    @cached_property
    def design(self):
        """The factor design (datagen.design), built once per config: the sampler, renderer and
        validator ask for it for every sample."""
        return build_design(self)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in self.counts)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shapes"] = list(self.shapes)
        d["counts"] = {s: self.counts[s] for s in self.splits}
        for key in DESIGN_KEYS:
            if not d[key]:
                del d[key]
            elif key != "factors":
                d[key] = list(d[key])
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def make_config(overrides: dict[str, Any] | None = None, where: str = "config") -> DatasetConfig:
    """Build a validated config from a plain dict (YAML or JSON), starting from the preset."""
    data = dict(overrides or {})
    fields = {f.name for f in dataclasses.fields(DatasetConfig)}
    _check_keys(data, fields, where)
    preset = data.get("preset", "default")
    if preset not in PRESETS:
        raise ConfigError(f"{where}: preset must be one of {sorted(PRESETS)}, got {preset!r}")
    render_over = data.pop("render", None) or {}
    if not isinstance(render_over, dict):
        raise ConfigError(f"{where}: render must be a mapping of render settings")
    _check_keys(render_over, {f.name for f in dataclasses.fields(RenderSettings)}, f"{where}: render")
    render = dataclasses.replace(PRESETS[preset], **render_over)
    if "shapes" in data:
        data["shapes"] = tuple(data["shapes"])
    for key in ("describe", "edges", "templates"):
        if key in data:
            if not isinstance(data[key], list | tuple):
                raise ConfigError(f"{where}: {key} must be a list, got {data[key]!r}")
            data[key] = tuple(data[key])
    if "factors" in data and data["factors"] is None:
        data["factors"] = {}
    if "counts" in data:
        if not isinstance(data["counts"], dict):
            raise ConfigError(f"{where}: counts must map split names to sample counts")
        data["counts"] = dict(data["counts"])
    try:
        cfg = DatasetConfig(**data, render=render)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        return cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: Path) -> DatasetConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return make_config(data, where=str(path))


def config_from_json(data: dict) -> DatasetConfig:
    return make_config(data, where="manifest config")
