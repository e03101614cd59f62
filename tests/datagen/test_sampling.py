"""Statistics of sampled latents (SPEC 2.1): uniform marginals, causal hue, nearest names."""

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from datagen.config import make_config
from datagen.meshes import DEFAULT_SHAPES
from datagen.sampling import sample
from datagen.text import nearest_colour_name, palette_by_name

N = 20_000


def draw(colour_mode):
    cfg = make_config({"colour_mode": colour_mode, "seed": 3})
    return [sample(cfg, "train", i, DEFAULT_SHAPES) for i in range(N)]


@pytest.fixture(scope="module")
def causal():
    return draw("causal")


def chi2_uniform(values, k):
    counts = np.bincount(values, minlength=k)
    return stats.chisquare(counts).pvalue


def test_discrete_marginals_are_uniform(causal):
    for name, k in (("object_shape", 7), ("object_xpos", 3), ("object_ypos", 3)):
        assert chi2_uniform([s.image[name] for s in causal], k) > 1e-3, name
    assert chi2_uniform([s.text["text_phrasing"] for s in causal], 5) > 1e-3
    palettes = Counter(s.palette for s in causal)
    assert stats.chisquare(list(palettes.values())).pvalue > 1e-3 and len(palettes) == 3
    assert all(s.image["object_zpos"] == 0 for s in causal)


def test_continuous_marginals_are_uniform(causal):
    for name in (
        "object_alpharot",
        "object_betarot",
        "object_gammarot",
        "object_color",
        "spotlight_pos",
        "spotlight_color",
        "background_color",
    ):
        values = [s.image[name] for s in causal]
        assert stats.kstest(values, "uniform").pvalue > 1e-3, name


def test_causal_hue_lies_in_the_third_of_its_x_position(causal):
    for s in causal:
        x = s.image["object_xpos"]
        assert x / 3 <= s.image["object_color"] < (x + 1) / 3
    # within its third, the hue is uniform
    u = [3 * s.image["object_color"] - s.image["object_xpos"] for s in causal]
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_independent_hue_ignores_position():
    samples = draw("independent")[:5000]
    hue = np.array([s.image["object_color"] for s in samples])
    x = np.array([s.image["object_xpos"] for s in samples])
    assert all(stats.kstest(hue[x == k], "uniform").pvalue > 1e-3 for k in range(3))


def test_names_are_always_nearest_and_text_agrees(causal):
    for s in causal[:5000]:
        assert s.text["object_color_name"] == nearest_colour_name(
            s.image["object_color"], palette_by_name(s.palette)
        )
        for k in ("object_shape", "object_xpos", "object_ypos", "object_zpos"):
            assert s.image[k] == s.text[k]
    reachable = {s.text["object_color_name"] for s in causal}
    assert 60 <= len(reachable) <= 160  # "only about 100 names are reachable" (SPEC 2.2)


def test_sample_depends_only_on_seed_split_index():
    cfg = make_config({"seed": 11})
    a = sample(cfg, "val", 123, DEFAULT_SHAPES)
    assert a == sample(cfg, "val", 123, DEFAULT_SHAPES)
    assert a != sample(cfg, "test", 123, DEFAULT_SHAPES)
    assert a != sample(make_config({"seed": 12}), "val", 123, DEFAULT_SHAPES)
