"""Latent sampling (seed 003 Table 4.1; SPEC 2.1, 2.2, 2.6).

Each sample's random stream derives only from (dataset seed, split, index), so the same
dataset comes out whatever the number of workers, shards or machines, and after any
interruption. ``sample`` draws the image latents, the text latents and the render seed of one
index; ``samples`` is the first stage of the pipeline (indices -> records).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from datagen.config import SPLITS, DatasetConfig
from datagen.design import design_of
from datagen.text import colour_index, nearest_rgb_name, palettes


@dataclass(frozen=True)
class Sample:
    split: str
    index: int
    image: dict  # image latents by column name (SPEC 2.8 latents_image.csv)
    text: dict  # text latents by column name (SPEC 2.8 latents_text.csv)
    palette: str
    shape_word: str
    sentence: str
    render_seed: int

    @property
    def key(self) -> str:
        return f"{self.index:06d}"


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))


def sample(config: DatasetConfig, split: str, index: int, shape_words: tuple[str, ...]) -> Sample:
    """Draw everything about one sample. The order of draws is part of the dataset format."""
    design = design_of(config)
    rng = sample_rng(config.seed, split, index)
    values: dict = {"object_shape": int(rng.integers(len(config.shapes)))}
    uniforms: dict[str, float] = {}
    for name in ("object_xpos", "object_ypos"):
        if name in design.continuous_positions:
            uniforms[name] = float(rng.random())
        else:
            values[name] = int(rng.integers(3))
    values["object_zpos"] = 0
    for name, u in zip(("object_alpharot", "object_betarot", "object_gammarot"), rng.random(3)):
        uniforms[name] = float(u)
    uniforms["object_color"] = float(rng.random())
    for name, u in zip(("spotlight_pos", "spotlight_color", "background_color"), rng.random(3)):
        uniforms[name] = float(u)
    palette = palettes()[int(rng.integers(len(palettes())))]
    phrasing = int(rng.integers(len(design.grammar.templates)))
    render_seed = int(rng.integers(2**31 - 1))
    if design.materials:  # drawn last, so datasets without materials keep their streams
        values["object_material"] = int(rng.integers(len(design.materials)))
    design.resolve(values, uniforms)

    for name, rgb in design.named_colours(values):
        values[f"{name}_name"] = nearest_rgb_name(rgb, palette)
        values[f"{name}_index"] = colour_index(values[f"{name}_name"])
    values["text_phrasing"] = phrasing
    word = shape_words[values["object_shape"]]
    return Sample(
        split=split,
        index=index,
        image={f.name: values[f.name] for f in design.factors_of("image")},
        text={f.name: values[f.name] for f in design.factors_of("text")},
        palette=palette.name,
        shape_word=word,
        sentence=design.grammar.sentence(phrasing, design.fills(values, word)),
        render_seed=render_seed,
    )


def samples(
    config: DatasetConfig, split: str, indices: Iterable[int], shape_words: tuple[str, ...]
) -> Iterator[Sample]:
    for i in indices:
        yield sample(config, split, i, shape_words)
