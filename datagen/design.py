"""A dataset's factor design: which factors exist, how each is distributed, which the sentence
describes, and how the factors depend on each other (after 3DIdentBox, Bizeul et al.,
CLeaR 2023, which does this for image pairs without text).

The factors themselves are still the one table of :mod:`datagen.factors`; a design only sets,
per dataset, what that table leaves open. Config keys (documented in
``configs/datagen/m3di_paper.yaml``):

* ``factors`` -- per factor: ``distribution`` (``uniform``; ``truncnormal`` with ``mean`` in
  [0, 1] and ``std`` in (0, 1], truncated to [0, 1]; ``levels`` with ``levels`` = k >= 2, the
  centres (i + 0.5) / k of k equal bins), for x/y ``positions: grid | continuous`` (continuous:
  a latent in [0, 1] placed over the grid's range, Blender coordinate v*6 - 3), and for
  ``object_material`` the ``values`` it takes (``rubber``, ``metal``).
* ``describe`` -- factors the sentence names besides shape, position and object colour:
  ``spotlight_color``, ``background_color`` (nearest name in the sample's palette, like the
  object colour), ``spotlight_pos`` (back / right / front, thirds of the semicircle) and
  ``object_material``. A described factor becomes shared: role ``style`` for the colours (the
  name depends on the random palette), ``content`` for the others.
* ``edges`` -- ``{cause, effect, mechanism, strength}``: ``interval`` (today's causal colour:
  the effect lies in the cause's bin, (bin + u) / bins, blended with the independent draw as
  (1 - s) u + s (bin + u) / bins) or ``linear_gaussian`` (a Gaussian copula: Phi(s c~ +
  sqrt(1 - s^2) Phi^-1(u)) with c~ the cause standardised as a uniform variable, so s is the
  latent correlation). ``colour_mode: causal`` is the edge object_xpos -> object_color,
  interval, strength 1. Effects are continuous image factors; cycles are an error.
* ``templates`` -- optional sentence templates replacing the default ones (the five of the
  thesis, each followed by one clause per described factor); every template holds each slot once.

Every random draw of a sample comes from the same stream in the same order as before designs
existed (material last), and each continuous factor is its distribution's inverse CDF applied
to its uniform draw after the edges into it: so a default design reproduces the earlier
datasets byte for byte (tests/datagen/test_default_digest.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from statistics import NormalDist

from datagen.errors import ConfigError
from datagen.factors import (
    DESCRIBED_ROLES,
    FACTORS,
    IMAGE,
    MATERIALS,
    OPTIONAL_FACTORS,
    POSITION_WORDS,
    SPOTLIGHT_WORDS,
    TEXT,
    Factor,
    SceneParameters,
    background_rgb,
    object_rgb,
    scene_parameters,
    spotlight_rgb,
)
from datagen.text import (
    CLAUSES,
    DEFAULT_GRAMMAR,
    SLOT_OF_FACTOR,
    TEMPLATES,
    Grammar,
    GrammarError,
    all_colour_names,
)

DISTRIBUTIONS = ("uniform", "truncnormal", "levels")
MECHANISMS = ("interval", "linear_gaussian")
POSITION_MODES = ("grid", "continuous")
POSITIONS = ("object_xpos", "object_ypos")
DESCRIBABLE = tuple(CLAUSES)
CONTINUOUS_POSITIONS = {
    "object_xpos": "continuous in [0, 1], 0 left, 1 right; Blender y = v*6-3; the text names its third",
    "object_ypos": "continuous in [0, 1], 0 top, 1 bottom; Blender x = v*6-3; the text names its third",
}
# The thesis's causal colour (seed 003 §4.4): hue = (xpos + U(0, 1)) / 3.
CAUSAL_COLOUR_EDGE = {
    "cause": "object_xpos",
    "effect": "object_color",
    "mechanism": "interval",
    "strength": 1.0,
}
_STANDARD_NORMAL = NormalDist()
_EPS = 1e-12


class DesignError(ConfigError):
    """A factor setting, description or edge is invalid; the message names the key."""


@dataclass(frozen=True)
class Distribution:
    """Marginal of a continuous factor on [0, 1], applied as an inverse CDF to a uniform draw."""

    kind: str = "uniform"
    mean: float = 0.5
    std: float = 1.0
    levels: int = 0

    def transform(self, u: float) -> float:
        if self.kind == "uniform":
            return u  # exactly the draw: default datasets stay byte-identical
        if self.kind == "levels":
            return (min(int(u * self.levels), self.levels - 1) + 0.5) / self.levels
        lo = _STANDARD_NORMAL.cdf((0.0 - self.mean) / self.std)
        hi = _STANDARD_NORMAL.cdf((1.0 - self.mean) / self.std)
        p = min(max(lo + u * (hi - lo), _EPS), 1 - _EPS)
        return min(max(self.mean + self.std * _STANDARD_NORMAL.inv_cdf(p), 0.0), 1.0)

    def to_json(self) -> dict:
        if self.kind == "truncnormal":
            return {"distribution": self.kind, "mean": self.mean, "std": self.std}
        if self.kind == "levels":
            return {"distribution": self.kind, "levels": self.levels}
        return {"distribution": self.kind}


@dataclass(frozen=True)
class Edge:
    """cause -> effect with a mechanism and a strength in [0, 1]."""

    cause: str
    effect: str
    mechanism: str
    strength: float
    bins: int  # interval: the cause's number of bins (its classes when discrete)
    cause_values: int | None  # classes of a discrete cause, None when continuous

    def _unit(self, c: float) -> float:
        """The cause on [0, 1]."""
        if self.cause_values is None:
            return float(c)
        return float(c) / (self.cause_values - 1)

    def bin(self, c: float) -> int:
        """The interval mechanism's bin of the cause: its class, or its bin of [0, 1]."""
        return int(c) if self.cause_values is not None else min(int(c * self.bins), self.bins - 1)

    def apply(self, u: float, c: float) -> float:
        s = self.strength
        if self.mechanism == "interval":
            inside = (self.bin(c) + u) / self.bins
            return inside if s == 1 else (1 - s) * u + s * inside
        z = _STANDARD_NORMAL.inv_cdf(min(max(u, _EPS), 1 - _EPS))
        standardised = (self._unit(c) - 0.5) * math.sqrt(12.0)
        return _STANDARD_NORMAL.cdf(s * standardised + math.sqrt(max(0.0, 1 - s * s)) * z)

    def to_json(self) -> dict:
        d = {
            "cause": self.cause,
            "effect": self.effect,
            "mechanism": self.mechanism,
            "strength": self.strength,
        }
        if self.mechanism == "interval":
            d["bins"] = self.bins
        return d


@dataclass(frozen=True)
class Design:
    factors: tuple[Factor, ...]  # the dataset's factor table, in table order
    distributions: dict[str, Distribution]  # continuous image factors
    edges: tuple[Edge, ...]
    order: tuple[str, ...]  # continuous image factors, causes before effects
    continuous_positions: frozenset[str]
    materials: tuple[str, ...]  # () when the dataset has no material factor
    described: tuple[str, ...]
    grammar: Grammar
    hue_mode: str
    toolbox: bool  # anything beyond the default design (then samples record render-space values)

    def factor(self, name: str) -> Factor:
        return next(f for f in self.factors if f.name == name)

    def factors_of(self, modality: str) -> tuple[Factor, ...]:
        return tuple(f for f in self.factors if modality in f.modalities)

    def n_values(self, f: Factor, n_shapes: int) -> int | None:
        if f.name == "object_shape":
            return n_shapes
        if f.name.endswith("_color_index"):
            return len(all_colour_names())
        return f.n_values

    def resolve(self, values: dict, uniforms: dict[str, float]) -> None:
        """Fill ``values`` with every continuous image factor: edges into it, then its marginal."""
        incoming: dict[str, list[Edge]] = {}
        for e in self.edges:
            incoming.setdefault(e.effect, []).append(e)
        for name in self.order:
            u = uniforms[name]
            for e in incoming.get(name, ()):
                u = e.apply(u, values[e.cause])
            values[name] = self.distributions[name].transform(u)

    def word_index(self, name: str, value) -> int:
        """Which of its three words names a position or the spotlight's side: a grid position
        is its own index; a continuous value names the third of [0, 1] it lies in."""
        if name in POSITIONS and name not in self.continuous_positions:
            return int(value)
        return min(int(value * 3), 2)

    def named_colours(self, image: dict) -> list[tuple[str, tuple[float, float, float]]]:
        """(factor, base RGB) of every colour the sentence names: the object's, and the
        spotlight's and background's when described."""
        out = [("object_color", object_rgb(image["object_color"]))]
        for name, rgb_of in (("spotlight_color", spotlight_rgb), ("background_color", background_rgb)):
            if name in self.described:
                out.append((name, rgb_of(image[name], self.hue_mode)))
        return out

    def fills(self, values: dict, shape_word: str) -> dict[str, str]:
        """The word of every slot of the grammar for a sample's latents (image and text)."""
        fills = {
            "SHAPE": shape_word,
            "COLOR": values["object_color_name"],
            **{
                slot: POSITION_WORDS[name][self.word_index(name, values[name])]
                for slot, name in (("XPOS", "object_xpos"), ("YPOS", "object_ypos"))
            },
        }
        for name in ("spotlight_color", "background_color"):
            if name in self.described:
                fills[SLOT_OF_FACTOR[name]] = values[f"{name}_name"]
        if "spotlight_pos" in self.described:
            fills["SPOTLIGHT_POS"] = SPOTLIGHT_WORDS[
                self.word_index("spotlight_pos", values["spotlight_pos"])
            ]
        if "object_material" in self.described:
            fills["MATERIAL"] = self.materials[values["object_material"]]
        return fills

    def scene(self, latents: dict) -> SceneParameters:
        """Render-space values of one sample's image latents."""
        p = scene_parameters(latents, self.hue_mode)
        if self.continuous_positions:
            loc = list(p.location)
            for name, axis in (("object_ypos", 0), ("object_xpos", 1)):
                if name in self.continuous_positions:
                    loc[axis] = float(latents[name]) * 6 - 3
            p = dataclasses.replace(p, location=tuple(loc))
        if self.materials:
            p = dataclasses.replace(p, material=self.materials[int(latents["object_material"])])
        return p

    def to_json(self) -> dict:
        """What the manifest records of a non-default design."""
        return {
            "distributions": {k: v.to_json() for k, v in self.distributions.items() if v.kind != "uniform"},
            "positions": {n: ("continuous" if n in self.continuous_positions else "grid") for n in POSITIONS},
            "materials": list(self.materials),
            "described": list(self.described),
            "edges": [e.to_json() for e in self.edges],
        }


# ----------------------------------------------------------------------------- building
def design_of(config) -> Design:
    """The design of a validated ``DatasetConfig`` (built once per config object)."""
    return config.design


def _number(where: str, value, lo: float, hi: float, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DesignError(f"{where} must be a number, got {value!r}")
    if value > hi or value < lo or (lo_open and value == lo):
        bracket = "(" if lo_open else "["
        raise DesignError(f"{where} must be in {bracket}{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _by_name() -> dict[str, Factor]:
    return {f.name: f for f in FACTORS}


def _settings(config) -> tuple[dict[str, Distribution], frozenset[str], tuple[str, ...]]:
    table = _by_name()
    if not isinstance(config.factors, dict):
        raise DesignError("factors must map factor names to their settings")
    distributions: dict[str, Distribution] = {}
    continuous: set[str] = set()
    materials: tuple[str, ...] = ()
    for name, raw in config.factors.items():
        where = f"factors.{name}"
        if name not in table:
            raise DesignError(f"{where}: unknown factor; known factors: {', '.join(table)}")
        f = table[name]
        settable = (
            name in POSITIONS
            or name == "object_material"
            or (f.kind == "continuous" and IMAGE in f.modalities)
        )
        if not settable:
            raise DesignError(
                f"{where}: this factor's distribution is fixed; settable are the continuous image factors, "
                "object_xpos/object_ypos and object_material"
            )
        if not isinstance(raw, dict):
            raise DesignError(f"{where} must be a mapping of settings, got {raw!r}")
        raw = dict(raw)
        allowed = {"distribution", "mean", "std", "levels"}
        if name in POSITIONS:
            allowed.add("positions")
            mode = raw.pop("positions", "grid")
            if mode not in POSITION_MODES:
                raise DesignError(f"{where}.positions must be one of {POSITION_MODES}, got {mode!r}")
            if mode == "continuous":
                continuous.add(name)
        if name == "object_material":
            allowed = {"values", "distribution"}
            values = raw.pop("values", list(MATERIALS))
            if (
                not isinstance(values, list | tuple)
                or not values
                or len(set(values)) != len(values)
                or any(v not in MATERIALS for v in values)
            ):
                raise DesignError(
                    f"{where}.values must be a non-empty list of distinct materials from {list(MATERIALS)}, got {values!r}"
                )
            materials = tuple(values)
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise DesignError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        kind = raw.get("distribution", "uniform")
        if kind not in DISTRIBUTIONS:
            raise DesignError(f"{where}.distribution must be one of {DISTRIBUTIONS}, got {kind!r}")
        is_continuous = f.kind == "continuous" or name in continuous
        if kind != "uniform" and not is_continuous:
            raise DesignError(
                f"{where}.distribution: {kind} needs a continuous factor; {name} is discrete here "
                "(uniform over its values)" + (" unless positions: continuous" if name in POSITIONS else "")
            )
        for key in {"mean", "std"} & set(raw):
            if kind != "truncnormal":
                raise DesignError(f"{where}.{key} applies to distribution truncnormal only")
        if "levels" in raw and kind != "levels":
            raise DesignError(f"{where}.levels applies to distribution levels only")
        if kind == "truncnormal":
            mean = _number(f"{where}.mean", raw.get("mean", 0.5), 0.0, 1.0)
            std = _number(f"{where}.std", raw.get("std", 0.25), 0.0, 1.0, lo_open=True)
            distributions[name] = Distribution("truncnormal", mean, std)
        elif kind == "levels":
            k = raw.get("levels")
            if isinstance(k, bool) or not isinstance(k, int) or k < 2:
                raise DesignError(f"{where}.levels must be an integer >= 2, got {k!r}")
            distributions[name] = Distribution("levels", levels=k)
    for f in FACTORS:
        if IMAGE in f.modalities and (f.kind == "continuous" or f.name in continuous):
            distributions.setdefault(f.name, Distribution())
    return distributions, frozenset(continuous), materials


def _table(
    config, continuous: frozenset[str], materials: tuple[str, ...], described: tuple[str, ...], grammar
):
    """The dataset's factor table: the global one with this design's choices applied."""
    out = []
    for f in FACTORS:
        if f.name in OPTIONAL_FACTORS:
            owner = OPTIONAL_FACTORS[f.name]
            if owner == "object_material" and not materials:
                continue
            if owner != "object_material" and owner not in described:
                continue
        if f.name in continuous:
            f = dataclasses.replace(
                f, kind="continuous", n_values=None, description=CONTINUOUS_POSITIONS[f.name]
            )
        if f.name == "object_material":
            f = dataclasses.replace(
                f, n_values=len(materials), role="constant" if len(materials) == 1 else f.role
            )
        if f.name in described:
            role = DESCRIBED_ROLES[f.name]
            modalities = f.modalities if role == "style" else (IMAGE, TEXT)
            f = dataclasses.replace(f, role=role, modalities=modalities)
        if f.name == "text_phrasing":
            f = dataclasses.replace(f, n_values=len(grammar.templates))
        out.append(f)
    return tuple(out)


def _edges(config, table: dict[str, Factor], distributions: dict[str, Distribution]) -> tuple[Edge, ...]:
    raw_edges = [(f"edges[{i}]", raw) for i, raw in enumerate(config.edges)]
    if config.colour_mode == "causal":
        raw_edges.insert(0, ("colour_mode: causal", CAUSAL_COLOUR_EDGE))
    edges, seen = [], set()
    for where, raw in raw_edges:
        if not isinstance(raw, dict):
            raise DesignError(f"{where} must be a mapping with cause, effect, mechanism, strength")
        unknown = sorted(set(raw) - {"cause", "effect", "mechanism", "strength", "bins"})
        missing = sorted({"cause", "effect", "mechanism", "strength"} - set(raw))
        if unknown or missing:
            raise DesignError(
                f"{where}: "
                + (f"unknown key(s) {unknown}" if unknown else f"missing key(s) {missing}")
                + "; an edge has cause, effect, mechanism, strength (and bins for interval)"
            )
        cause, effect = raw["cause"], raw["effect"]
        for key, name in (("cause", cause), ("effect", effect)):
            if name not in table:
                raise DesignError(
                    f"{where}.{key}: unknown factor {name!r}; known factors: {', '.join(table)}"
                )
        c = table[cause]
        if IMAGE not in c.modalities or c.role == "constant":
            raise DesignError(f"{where}.cause: {cause} is not a varying image factor")
        if effect not in distributions:
            raise DesignError(
                f"{where}.effect: {effect} is not a continuous image factor (effects must be; "
                f"they are {', '.join(distributions)})"
            )
        if cause == effect:
            raise DesignError(f"{where}: {cause} cannot cause itself")
        if (cause, effect) in seen:
            raise DesignError(
                f"{where}: the edge {cause} -> {effect} is given twice"
                + (
                    " (colour_mode: causal already adds it; use colour_mode: independent)"
                    if (cause, effect) == ("object_xpos", "object_color")
                    else ""
                )
            )
        seen.add((cause, effect))
        if raw["mechanism"] not in MECHANISMS:
            raise DesignError(f"{where}.mechanism must be one of {MECHANISMS}, got {raw['mechanism']!r}")
        strength = _number(f"{where}.strength", raw["strength"], 0.0, 1.0)
        discrete = c.kind == "discrete"
        values = (len(config.shapes) if cause == "object_shape" else c.n_values) if discrete else None
        bins = raw.get("bins")
        if bins is not None and (raw["mechanism"] != "interval" or discrete):
            raise DesignError(
                f"{where}.bins applies to the interval mechanism with a continuous cause "
                "(a discrete cause's bins are its classes)"
            )
        if bins is not None and (isinstance(bins, bool) or not isinstance(bins, int) or bins < 2):
            raise DesignError(f"{where}.bins must be an integer >= 2, got {bins!r}")
        if discrete and (values is None or values < 2):
            raise DesignError(f"{where}.cause: {cause} has fewer than 2 values in this dataset")
        edges.append(
            Edge(cause, effect, raw["mechanism"], strength, values if discrete else (bins or 3), values)
        )
    return tuple(edges)


def _topological(names: list[str], edges: tuple[Edge, ...]) -> tuple[str, ...]:
    """Continuous factors, causes first, ties in table order; a cycle is an error naming it."""
    parents = {n: {e.cause for e in edges if e.effect == n and e.cause in names} for n in names}
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names if n not in order and parents[n] <= set(order)]
        if not ready:
            raise DesignError(f"edges: cycle {_cycle(names, order, parents)}; the edges must form a DAG")
        order.append(ready[0])
    return tuple(order)


def _cycle(names, done, parents) -> str:
    node = next(n for n in names if n not in done)
    path: list[str] = []
    while node not in path:
        path.append(node)
        node = next(p for p in sorted(parents[node]) if p not in done)
    cycle = path[path.index(node) :] + [node]
    return " -> ".join(reversed(cycle))


def build_design(config) -> Design:
    distributions, continuous, materials = _settings(config)
    if not isinstance(config.describe, list | tuple):
        raise DesignError(f"describe must be a list of factor names, got {config.describe!r}")
    for name in config.describe:
        if name not in DESCRIBABLE:
            raise DesignError(
                f"describe: {name!r} cannot be described; describable factors: {', '.join(DESCRIBABLE)}"
            )
    if len(set(config.describe)) != len(config.describe):
        raise DesignError(f"describe: a factor is listed twice in {list(config.describe)}")
    if "object_material" in config.describe and not materials:
        raise DesignError("describe: object_material needs factors.object_material (its values) to exist")
    described = tuple(n for n in DESCRIBABLE if n in config.describe)
    try:
        if config.templates:
            grammar = Grammar.custom(
                tuple(config.templates), tuple(SLOT_OF_FACTOR[n] for n in described), materials
            )
        elif described or materials:
            grammar = Grammar.extended(TEMPLATES, described, materials)
        else:
            grammar = DEFAULT_GRAMMAR
    except GrammarError as exc:
        raise DesignError(str(exc)) from None
    factors = _table(config, continuous, materials, described, grammar)
    table = {f.name: f for f in factors}
    edges = _edges(config, table, distributions)
    order = _topological([n for n in table if n in distributions], edges)
    toolbox = bool(config.factors or config.describe or config.edges or config.templates)
    return Design(
        factors,
        distributions,
        edges,
        order,
        continuous,
        materials,
        described,
        grammar,
        config.hue_mode,
        toolbox,
    )
