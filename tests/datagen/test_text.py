"""Templates, colour names, parsing and the grammar-derived vocabulary (SPEC 2.2)."""

import re

import numpy as np
import pytest

from datagen.factors import object_rgb
from datagen.meshes import DEFAULT_SHAPES
from datagen.text import (
    TEMPLATES,
    all_colour_names,
    colour_index,
    max_sentence_tokens,
    nearest_colour_name,
    palettes,
    parse_sentence,
    sentence,
    tokenize,
    vocabulary,
)


def test_templates_are_upstream_verbatim():
    assert TEMPLATES[1] == 'A "{COLOR}" {SHAPE} is at the {YPOS}-{XPOS} of the image.'
    assert (
        TEMPLATES[4]
        == 'At the {YPOS}-{XPOS} of the image, there is a "{COLOR}" object in the form of a {SHAPE}.'
    )
    assert sentence(0, "teapot", 0, 2, "xkcd:bright aqua") == (
        'A teapot of "xkcd:bright aqua" color is visible, positioned at the bottom-left of the image.'
    )


def test_palette_sizes_and_colour_index():
    assert [len(p.colour_names) for p in palettes()] == [10, 148, 949]
    names = all_colour_names()
    assert list(names) == sorted(names) and len(names) == len(set(names))
    assert names[colour_index("lawngreen")] == "lawngreen"
    with pytest.raises(ValueError, match="not a colour name"):
        colour_index("nocolour")


def test_nearest_colour_name_is_the_brute_force_minimum():
    rng = np.random.default_rng(0)
    for hue in rng.random(200):
        for p in palettes():
            target = np.array(object_rgb(hue))
            d = [float(((np.array(c) - target) ** 2).sum()) for c in p.rgb]
            name = nearest_colour_name(hue, p)
            assert d[p.colour_names.index(name)] == min(d)


def test_pure_red_is_red():
    css4 = palettes()[1]
    assert nearest_colour_name(0.0, css4) == "red"
    assert nearest_colour_name(0.0, palettes()[0]) == "tab:red"


@pytest.mark.parametrize("template", range(5))
def test_parse_inverts_sentence_for_every_template(template):
    for shape in ("teapot", "elk", "sea horse"):
        for colour in ("tab:blue", "xkcd:robin's egg blue", "lawngreen"):
            text = sentence(template, shape, 2, 1, colour)
            p = parse_sentence(text)
            assert (p.template, p.shape_word, p.xpos, p.ypos, p.colour_name) == (
                template,
                shape,
                2,
                1,
                colour,
            )


def test_parse_rejects_foreign_sentences():
    with pytest.raises(ValueError, match="none of the 5 templates"):
        parse_sentence("A teapot somewhere.")


def test_vocabulary_covers_every_name_and_template():
    vocab = set(vocabulary(DEFAULT_SHAPES))
    for name in all_colour_names():
        for t in range(5):
            assert set(tokenize(sentence(t, "armadillo", 0, 0, name))) <= vocab
    longest = max(
        len(tokenize(sentence(t, s, 0, 0, n)))
        for t in range(5)
        for s in DEFAULT_SHAPES
        for n in all_colour_names()
    )
    assert longest == max_sentence_tokens(DEFAULT_SHAPES)


def test_tokenizer_is_a_plain_regex():
    assert tokenize('A "xkcd:bright aqua" Teapot.') == [
        "a",
        '"',
        "xkcd",
        ":",
        "bright",
        "aqua",
        '"',
        "teapot",
        ".",
    ]
    assert re.findall(r"[a-z0-9]+|[^\sa-z0-9]", "top-left") == tokenize("top-left")
