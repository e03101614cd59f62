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
from datagen.factors import factors_of
from datagen.text import colour_index, nearest_colour_name, palettes, sentence


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
    rng = sample_rng(config.seed, split, index)
    shape = int(rng.integers(len(config.shapes)))
    xpos = int(rng.integers(3))
    ypos = int(rng.integers(3))
    alpha, beta, gamma = (float(v) for v in rng.random(3))
    u = float(rng.random())
    hue = (xpos + u) / 3 if config.colour_mode == "causal" else u
    spot_pos, spot_col, bg_col = (float(v) for v in rng.random(3))
    palette = palettes()[int(rng.integers(len(palettes())))]
    phrasing = int(rng.integers(5))
    render_seed = int(rng.integers(2**31 - 1))

    colour_name = nearest_colour_name(hue, palette)
    values = {
        "object_shape": shape,
        "object_xpos": xpos,
        "object_ypos": ypos,
        "object_zpos": 0,
        "object_alpharot": alpha,
        "object_betarot": beta,
        "object_gammarot": gamma,
        "object_color": hue,
        "spotlight_pos": spot_pos,
        "spotlight_color": spot_col,
        "background_color": bg_col,
        "object_color_name": colour_name,
        "object_color_index": colour_index(colour_name),
        "text_phrasing": phrasing,
    }
    word = shape_words[shape]
    return Sample(
        split=split,
        index=index,
        image={f.name: values[f.name] for f in factors_of("image")},
        text={f.name: values[f.name] for f in factors_of("text")},
        palette=palette.name,
        shape_word=word,
        sentence=sentence(phrasing, word, xpos, ypos, colour_name),
        render_seed=render_seed,
    )


def samples(
    config: DatasetConfig, split: str, indices: Iterable[int], shape_words: tuple[str, ...]
) -> Iterator[Sample]:
    for i in indices:
        yield sample(config, split, i, shape_words)
