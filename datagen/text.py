"""Sentences of Multimodal3DIdent (seed 003 §4.4; SPEC 2.2) and their tokenisation.

A sentence is one of five templates filled with the shape word, the position words and a
colour name. The colour name is the nearest (Euclidean RGB) name to the object hue in a palette
drawn uniformly from matplotlib's Tableau, CSS4 and XKCD tables; that is what makes colour a
*style* factor (shared but not invariant).

The tokenizer is a fixed regular expression; the vocabulary is derived from the grammar
(templates, shape words, position words, every palette name), so no split can contain an
unknown token. Both are written to the dataset manifest, which is all the learning side reads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from datagen.factors import POSITION_WORDS, object_rgb

PALETTE_NAMES: tuple[str, ...] = ("tableau", "css4", "xkcd")

TEMPLATES: tuple[str, ...] = (
    'A {SHAPE} of "{COLOR}" color is visible, positioned at the {YPOS}-{XPOS} of the image.',
    'A "{COLOR}" {SHAPE} is at the {YPOS}-{XPOS} of the image.',
    'The {YPOS}-{XPOS} of the image shows a "{COLOR}" colored {SHAPE}.',
    'At the {YPOS}-{XPOS} of the picture is a {SHAPE} in "{COLOR}" color.',
    'At the {YPOS}-{XPOS} of the image, there is a "{COLOR}" object in the form of a {SHAPE}.',
)

TOKEN_PATTERN = r"[a-z0-9]+|[^\sa-z0-9]"
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>")


@dataclass(frozen=True)
class Palette:
    name: str
    colour_names: tuple[str, ...]
    rgb: np.ndarray  # (n, 3) float64, matplotlib.colors.to_rgb of each name


@cache
def palettes() -> tuple[Palette, ...]:
    """The three palettes in a fixed order, names in matplotlib's dict order."""
    import matplotlib.colors as mcolors

    tables = (mcolors.TABLEAU_COLORS, mcolors.CSS4_COLORS, mcolors.XKCD_COLORS)
    out = []
    for name, table in zip(PALETTE_NAMES, tables):
        names = tuple(table)
        rgb = np.array([mcolors.to_rgb(table[n]) for n in names], dtype=np.float64)
        out.append(Palette(name, names, rgb))
    return tuple(out)


@cache
def all_colour_names() -> tuple[str, ...]:
    """Sorted union of every palette's names; ``object_color_index`` indexes this tuple."""
    return tuple(sorted({n for p in palettes() for n in p.colour_names}))


@cache
def _colour_index() -> dict[str, int]:
    return {n: i for i, n in enumerate(all_colour_names())}


def colour_index(name: str) -> int:
    try:
        return _colour_index()[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a colour name of any palette") from None


def palette_digest() -> str:
    """sha256 of the palette tables, recorded in the manifest so a changed matplotlib shows."""
    blob = json.dumps([[p.name, list(p.colour_names), p.rgb.round(8).tolist()] for p in palettes()])
    return hashlib.sha256(blob.encode()).hexdigest()


def palette_by_name(name: str) -> Palette:
    for p in palettes():
        if p.name == name:
            return p
    raise ValueError(f"unknown palette {name!r}; expected one of {PALETTE_NAMES}")


def nearest_colour_name(hue: float, palette: Palette) -> str:
    """Name whose RGB is nearest to hsv_to_rgb(hue, 1, 1); ties go to the first in the table."""
    target = np.asarray(object_rgb(hue))
    d2 = ((palette.rgb - target) ** 2).sum(axis=1)
    return palette.colour_names[int(np.argmin(d2))]


def sentence(template: int, shape_word: str, xpos: int, ypos: int, colour_name: str) -> str:
    return TEMPLATES[template].format(
        SHAPE=shape_word,
        COLOR=colour_name,
        XPOS=POSITION_WORDS["object_xpos"][xpos],
        YPOS=POSITION_WORDS["object_ypos"][ypos],
    )


@dataclass(frozen=True)
class ParsedSentence:
    template: int
    shape_word: str
    xpos: int
    ypos: int
    colour_name: str


@cache
def _template_regexes() -> tuple[re.Pattern, ...]:
    out = []
    for t in TEMPLATES:
        pattern = re.escape(t)
        for key, group in (
            ("SHAPE", r"(?P<shape>[^\"]+?)"),
            ("COLOR", r"(?P<color>[^\"]+)"),
            ("XPOS", r"(?P<xpos>left|center|right)"),
            ("YPOS", r"(?P<ypos>top|mid|bottom)"),
        ):
            pattern = pattern.replace(re.escape("{" + key + "}"), group)
        out.append(re.compile("^" + pattern + "$"))
    return tuple(out)


def parse_sentence(text: str) -> ParsedSentence:
    """Invert :func:`sentence` exactly; raises ValueError for a sentence of no template."""
    for i, regex in enumerate(_template_regexes()):
        m = regex.match(text.strip())
        if m:
            return ParsedSentence(
                template=i,
                shape_word=m["shape"],
                xpos=POSITION_WORDS["object_xpos"].index(m["xpos"]),
                ypos=POSITION_WORDS["object_ypos"].index(m["ypos"]),
                colour_name=m["color"],
            )
    raise ValueError(f"sentence matches none of the {len(TEMPLATES)} templates: {text!r}")


def tokenize(text: str) -> list[str]:
    return re.findall(TOKEN_PATTERN, text.lower())


def vocabulary(shape_words: Sequence[str]) -> list[str]:
    """Special tokens, then every token the grammar can produce, sorted."""
    tokens: set[str] = set()
    for t in TEMPLATES:
        stripped = t
        for key in ("SHAPE", "COLOR", "XPOS", "YPOS"):
            stripped = stripped.replace("{" + key + "}", " ")
        tokens.update(tokenize(stripped))
    for words in (*POSITION_WORDS.values(), shape_words, all_colour_names()):
        for w in words:
            tokens.update(tokenize(w))
    return list(SPECIAL_TOKENS) + sorted(tokens)


def max_sentence_tokens(shape_words: Sequence[str]) -> int:
    """Longest token sequence the grammar can produce (without <bos>/<eos>)."""
    longest_colour = max(len(tokenize(n)) for n in all_colour_names())
    longest_shape = max(len(tokenize(w)) for w in shape_words)
    longest = 0
    for t in TEMPLATES:
        filled = t.format(SHAPE="s", COLOR="c", XPOS="x", YPOS="y")
        longest = max(longest, len(tokenize(filled)) - 2 + longest_colour + longest_shape)
    return longest


def tokenizer_spec(shape_words: Sequence[str]) -> dict:
    """What the manifest records so any reader can tokenise exactly as we do."""
    return {
        "type": "regex",
        "pattern": TOKEN_PATTERN,
        "lowercase": True,
        "special_tokens": list(SPECIAL_TOKENS),
        "vocabulary": vocabulary(shape_words),
        "max_tokens": max_sentence_tokens(shape_words),
    }
