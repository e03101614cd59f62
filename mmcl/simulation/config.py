"""Configuration of the numerical simulation (seed 003 §8.4.1, Table A.2a; SPEC §5).

The defaults below are the paper's settings; ``configs/simulation/paper.yaml`` documents every
key once and ``configs/simulation/cpu.yaml`` overrides a few for a 2-core CPU. Loading checks
every value (types, ranges, known row and setting names) and rejects unknown keys, so a typo
fails at once with a sentence naming the key instead of silently running the paper default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Table 8.1 rows: name -> (p(chg.), statistical dependence, causal dependence).
ROWS: dict[str, tuple[float, bool, bool]] = {
    "p1.0": (1.0, False, False),
    "p0.75": (0.75, False, False),
    "p0.75-stat": (0.75, True, False),
    "p0.75-cau": (0.75, False, True),
    "p0.75-stat-cau": (0.75, True, True),
}
# Table 8.1a (multi-view: f_1 = f_2, no m_i) and 8.1b (multimodal: f_1 != f_2).
SETTINGS: tuple[str, ...] = ("multimodal", "multiview")
STAT_COVARIANCES: tuple[str, ...] = ("upstream", "independent")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
# infonce: Eq. 8.2 with in-batch cross-modal negatives; lpsimclr: upstream's simulation loss
# (negatives from a fresh batch through the anchor's own encoder, mmcl.losses.fresh_negatives).
SIM_LOSSES: tuple[str, ...] = ("infonce", "lpsimclr")
# Fig. A.5: the latent group drawn from a uniform categorical with k classes instead of a normal.
DISCRETE_BLOCKS: tuple[str, ...] = ("content", "style", "modality_specific")


@dataclass
class SimulationConfig:
    settings: list[str] = field(default_factory=lambda: ["multimodal", "multiview"])
    rows: list[str] = field(default_factory=lambda: list(ROWS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    content_n: int = 5
    style_n: int = 5
    modality_n: int = 5
    encoding_size: int = 5
    latent_std: float = 1.0
    style_change_std: float = 1.0
    discrete_block: str | None = None
    discrete_classes: int = 5
    stat_covariance: str = "upstream"
    mixing_layers: int = 3
    mixing_slope: float = 0.2
    cond_thresh_ratio: float = 1e-3
    cond_pool: int = 25000
    encoder_widths: list[int] | None = None
    encoder_slope: float = 0.01
    tau: float = 1.0
    loss: str = "infonce"
    lr: float = 1e-4
    lr_schedule: str = "constant"
    batch_size: int = 6144
    steps: int = 300000
    grad_clip: float = 2.0
    eval_samples: int = 20480
    interventions: bool = True
    probe_solver: str = "eigh"
    checkpoint_every: int = 1000
    log_every: int = 1000
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        validate(self)

    # -- derived quantities -------------------------------------------------------------
    def data_dim(self, setting: str) -> int:
        """d = n_c + n_s + n_m (multimodal) or n_c + n_s (multi-view, no m_i)."""
        return self.content_n + self.style_n + (self.modality_n if setting == "multimodal" else 0)

    def widths(self, setting: str) -> list[int]:
        """Encoder hidden widths; default [10d, 50d, 50d, 50d, 50d, 10d] (upstream)."""
        if self.encoder_widths is not None:
            return list(self.encoder_widths)
        d = self.data_dim(setting)
        return [10 * d, 50 * d, 50 * d, 50 * d, 50 * d, 10 * d]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(SimulationConfig)}


def _type_ok(value: Any, annotation: Any) -> bool:
    hint = typing.get_type_hints(SimulationConfig)[annotation] if isinstance(annotation, str) else annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def validate(cfg: SimulationConfig) -> None:
    """Raise ``ValueError`` with one sentence naming the first offending key."""
    hints = typing.get_type_hints(SimulationConfig)
    for name in FIELDS:
        value = getattr(cfg, name)
        if not _type_ok(value, hints[name]):
            raise ValueError(f"simulation config key {name!r} must be of type {hints[name]}, got {value!r}")
    for name in (
        "content_n",
        "style_n",
        "encoding_size",
        "mixing_layers",
        "batch_size",
        "steps",
        "cond_pool",
        "checkpoint_every",
        "log_every",
    ):
        if getattr(cfg, name) < 1:
            raise ValueError(f"simulation config key {name!r} must be >= 1, got {getattr(cfg, name)}")
    if cfg.modality_n < 0:
        raise ValueError(f"simulation config key 'modality_n' must be >= 0, got {cfg.modality_n}")
    for name in ("latent_std", "style_change_std", "tau", "lr", "grad_clip"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"simulation config key {name!r} must be > 0, got {getattr(cfg, name)}")
    if not 0 < cfg.cond_thresh_ratio < 1:
        raise ValueError(
            f"simulation config key 'cond_thresh_ratio' must be in (0, 1), got {cfg.cond_thresh_ratio}"
        )
    if cfg.eval_samples < 6:
        raise ValueError(
            f"simulation config key 'eval_samples' must be >= 6 (3 CV folds), got {cfg.eval_samples}"
        )
    if cfg.batch_size < 2:
        raise ValueError(f"simulation config key 'batch_size' must be >= 2 (negatives), got {cfg.batch_size}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ValueError(f"simulation config key 'threads' must be >= 1 or null, got {cfg.threads}")
    if cfg.encoder_widths is not None and (not cfg.encoder_widths or min(cfg.encoder_widths) < 1):
        raise ValueError(
            f"simulation config key 'encoder_widths' must be null or positive ints, got {cfg.encoder_widths}"
        )
    bad = [r for r in cfg.rows if r not in ROWS]
    if bad or not cfg.rows:
        raise ValueError(f"simulation config key 'rows' has unknown row(s) {bad}; known rows: {list(ROWS)}")
    bad = [s for s in cfg.settings if s not in SETTINGS]
    if bad or not cfg.settings:
        raise ValueError(
            f"simulation config key 'settings' has unknown setting(s) {bad}; known: {list(SETTINGS)}"
        )
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(
            f"simulation config key 'seeds' must be a non-empty list of distinct ints, got {cfg.seeds}"
        )
    if cfg.discrete_block is not None:
        if cfg.discrete_block not in DISCRETE_BLOCKS:
            raise ValueError(
                f"simulation config key 'discrete_block' must be null or one of {DISCRETE_BLOCKS}, "
                f"got {cfg.discrete_block!r}"
            )
        if cfg.discrete_classes < 2:
            raise ValueError(
                f"simulation config key 'discrete_classes' must be >= 2, got {cfg.discrete_classes}"
            )
        dependent = [r for r in cfg.rows if ROWS[r][1] or ROWS[r][2]]
        if dependent:
            raise ValueError(
                f"simulation config key 'discrete_block' needs rows without statistical or causal "
                f"dependence (Fig. A.5); drop {dependent} from 'rows'"
            )
        if cfg.discrete_block == "modality_specific" and "multiview" in cfg.settings:
            raise ValueError(
                "simulation config key 'discrete_block: modality_specific' needs settings [multimodal] "
                "(multi-view data has no modality-specific latents)"
            )
    if cfg.loss not in SIM_LOSSES:
        raise ValueError(f"simulation config key 'loss' must be one of {SIM_LOSSES}, got {cfg.loss!r}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"simulation config key 'lr_schedule' must be one of {LR_SCHEDULES}, got {cfg.lr_schedule!r}"
        )
    if cfg.probe_solver not in ("eigh", "cholesky"):
        raise ValueError(
            f"simulation config key 'probe_solver' must be 'eigh' or 'cholesky', got {cfg.probe_solver!r}"
        )
    if cfg.stat_covariance not in STAT_COVARIANCES:
        raise ValueError(
            f"simulation config key 'stat_covariance' must be one of {STAT_COVARIANCES}, got {cfg.stat_covariance!r}"
        )
    if cfg.stat_covariance == "upstream" and len({cfg.content_n, cfg.style_n, cfg.modality_n} - {0}) > 1:
        raise ValueError(
            "simulation config key 'stat_covariance: upstream' reuses one covariance for every block "
            "and needs content_n == style_n == modality_n; use 'independent'"
        )


def _coerce_float(name: str, value: Any) -> Any:
    """PyYAML reads ``1e-4`` (no dot) as a string; accept it for float keys."""
    if typing.get_type_hints(SimulationConfig)[name] is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def from_dict(values: dict[str, Any], source: str = "config") -> SimulationConfig:
    """Build a config from a mapping, rejecting unknown keys."""
    if not isinstance(values, dict):
        raise ValueError(
            f"{source}: expected a mapping of simulation config keys, got {type(values).__name__}"
        )
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"{source}: unknown simulation config key(s) {unknown}; known keys: {sorted(FIELDS)}"
        )
    values = {k: _coerce_float(k, v) for k, v in values.items()}
    try:
        return SimulationConfig(**values)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> SimulationConfig:
    """Read a YAML config (``None``: paper defaults) and apply ``overrides``."""
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"simulation config file {str(path)!r} does not exist")
        values = yaml.safe_load(path.read_text()) or {}
        source = str(path)
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a mapping of simulation config keys")
    values = {**values, **(overrides or {})}
    return from_dict(values, source)
