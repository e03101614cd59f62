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
from functools import cache, cached_property

import numpy as np

from datagen.factors import POSITION_WORDS, SPOTLIGHT_WORDS, object_rgb

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
    return nearest_rgb_name(object_rgb(hue), palette)


def nearest_rgb_name(rgb, palette: Palette) -> str:
    """Name nearest (Euclidean RGB) to ``rgb`` clipped to [0, 1]: Blender clamps negative colour
    components (the upstream hue quirk makes some) to 0, and names live in [0, 1]."""
    target = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    d2 = ((palette.rgb - target) ** 2).sum(axis=1)
    return palette.colour_names[int(np.argmin(d2))]


# ----------------------------------------------------------------------------- grammar
# Slots a template can hold. SHAPE, COLOR, XPOS and YPOS are in every sentence; the others
# only when the dataset's design describes their factor (datagen.design).
BASE_SLOTS: tuple[str, ...] = ("SHAPE", "COLOR", "XPOS", "YPOS")
SLOT_OF_FACTOR: dict[str, str] = {
    "spotlight_color": "SPOTLIGHT_COLOR",
    "background_color": "BACKGROUND_COLOR",
    "spotlight_pos": "SPOTLIGHT_POS",
    "object_material": "MATERIAL",
}
# The clause each described factor appends to every default template, in factor-table order.
CLAUSES: dict[str, str] = {
    "spotlight_color": ' The spotlight is "{SPOTLIGHT_COLOR}".',
    "background_color": ' The background is "{BACKGROUND_COLOR}".',
    "spotlight_pos": " The light comes from the {SPOTLIGHT_POS}.",
    "object_material": " It is made of {MATERIAL}.",
}
COLOUR_SLOTS = frozenset({"COLOR", "SPOTLIGHT_COLOR", "BACKGROUND_COLOR"})
_SLOT_PATTERN = re.compile(r"\{([^{}]*)\}")


class GrammarError(ValueError):
    """A template is invalid for the dataset's design; the message names it."""


@dataclass(frozen=True)
class Grammar:
    """Templates plus the words each slot takes; sentences are generated and parsed from it.

    The default grammar (five templates of the thesis, four slots) produces exactly the
    sentences, vocabulary and token bound of datasets made before designs existed.
    """

    templates: tuple[str, ...]
    extra_slots: tuple[str, ...] = ()  # beyond BASE_SLOTS, in factor-table order
    materials: tuple[str, ...] = ()

    @classmethod
    def extended(
        cls, base: tuple[str, ...], described: tuple[str, ...], materials: tuple[str, ...]
    ) -> Grammar:
        """Each base template followed by one clause per described factor."""
        clauses = "".join(CLAUSES[f] for f in described)
        return cls(tuple(t + clauses for t in base), tuple(SLOT_OF_FACTOR[f] for f in described), materials)

    @classmethod
    def custom(
        cls, templates: tuple[str, ...], extra_slots: tuple[str, ...], materials: tuple[str, ...]
    ) -> Grammar:
        if not templates or not all(isinstance(t, str) and t.strip() for t in templates):
            raise GrammarError("templates must be a non-empty list of non-empty strings")
        if len(set(templates)) != len(templates):
            raise GrammarError("templates: a template is listed twice")
        required = BASE_SLOTS + extra_slots
        factor_of = {v: k for k, v in SLOT_OF_FACTOR.items()}
        for i, t in enumerate(templates):
            where = f"templates[{i}]"
            if t.count("{") != len(_SLOT_PATTERN.findall(t)) or t.count("}") != t.count("{"):
                raise GrammarError(f"{where}: unbalanced braces in {t!r}; slots are written {{SLOT}}")
            slots = _SLOT_PATTERN.findall(t)
            for slot in slots:
                if slot not in BASE_SLOTS and slot not in factor_of:
                    raise GrammarError(
                        f"{where}: unknown slot {{{slot}}}; slots are {', '.join(BASE_SLOTS + tuple(factor_of))}"
                    )
                if slot not in required:
                    raise GrammarError(
                        f"{where}: slot {{{slot}}} names {factor_of[slot]}, which is not in describe"
                    )
            for slot in required:
                n = slots.count(slot)
                if n != 1:
                    what = f"described factor {factor_of[slot]}" if slot in factor_of else "every sentence"
                    raise GrammarError(
                        f"{where}: {'no' if n == 0 else str(n) + ' x'} slot {{{slot}}} for {what}; "
                        "each template holds each slot exactly once"
                    )
                if slot in COLOUR_SLOTS and f'"{{{slot}}}"' not in t:
                    raise GrammarError(
                        f'{where}: colour slot {{{slot}}} must be quoted ("{{{slot}}}") so names with spaces parse'
                    )
        return cls(templates, extra_slots, materials)

    @property
    def slots(self) -> tuple[str, ...]:
        return BASE_SLOTS + self.extra_slots

    def words(self, slot: str) -> tuple[str, ...] | None:
        """Words a slot takes (None for SHAPE, whose words are the dataset's)."""
        if slot in COLOUR_SLOTS:
            return all_colour_names()
        return {
            "XPOS": POSITION_WORDS["object_xpos"],
            "YPOS": POSITION_WORDS["object_ypos"],
            "SPOTLIGHT_POS": SPOTLIGHT_WORDS,
            "MATERIAL": self.materials,
        }.get(slot)

    def sentence(self, template: int, fills: dict[str, str]) -> str:
        return self.templates[template].format(**{k: fills[k] for k in self.slots})

    @cached_property
    def _regexes(self) -> tuple[re.Pattern, ...]:
        out = []
        for t in self.templates:
            pattern = re.escape(t)
            for slot in self.slots:
                name = slot.lower()
                if slot == "SHAPE":
                    group = rf'(?P<{name}>[^"]+?)'
                elif slot in COLOUR_SLOTS:
                    group = rf'(?P<{name}>[^"]+)'
                else:
                    group = rf"(?P<{name}>{'|'.join(re.escape(w) for w in self.words(slot))})"
                pattern = pattern.replace(re.escape("{" + slot + "}"), group)
            out.append(re.compile("^" + pattern + "$"))
        return tuple(out)

    def parse(self, text: str) -> tuple[int, dict[str, str]]:
        """(template index, slot -> word); raises ValueError for a sentence of no template."""
        for i, regex in enumerate(self._regexes):
            m = regex.match(text.strip())
            if m:
                return i, {slot: m[slot.lower()] for slot in self.slots}
        raise ValueError(f"sentence matches none of the {len(self.templates)} templates: {text!r}")

    def vocabulary(self, shape_words: Sequence[str]) -> list[str]:
        """Special tokens, then every token the grammar can produce, sorted."""
        tokens: set[str] = set()
        for t in self.templates:
            tokens.update(tokenize(_SLOT_PATTERN.sub(" ", t)))
        for slot in self.slots:
            for w in self.words(slot) or shape_words:
                tokens.update(tokenize(w))
        return list(SPECIAL_TOKENS) + sorted(tokens)

    def max_tokens(self, shape_words: Sequence[str]) -> int:
        """Longest token sequence the grammar can produce (without <bos>/<eos>)."""
        longest = {s: max(len(tokenize(w)) for w in (self.words(s) or shape_words)) for s in self.slots}
        out = 0
        for t in self.templates:
            fixed = len(tokenize(_SLOT_PATTERN.sub(" z ", t))) - len(_SLOT_PATTERN.findall(t))
            out = max(out, fixed + sum(longest[s] for s in _SLOT_PATTERN.findall(t)))
        return out

    def to_json(self) -> dict:
        """What a non-default manifest records beside the templates, so readers can parse."""
        return {
            "slots": list(self.slots),
            "slot_words": {s: list(self.words(s)) for s in self.extra_slots if s not in COLOUR_SLOTS},
        }


DEFAULT_GRAMMAR = Grammar(TEMPLATES)


def sentence(template: int, shape_word: str, xpos: int, ypos: int, colour_name: str) -> str:
    """A sentence of the default grammar."""
    return DEFAULT_GRAMMAR.sentence(
        template,
        {
            "SHAPE": shape_word,
            "COLOR": colour_name,
            "XPOS": POSITION_WORDS["object_xpos"][xpos],
            "YPOS": POSITION_WORDS["object_ypos"][ypos],
        },
    )


@dataclass(frozen=True)
class ParsedSentence:
    template: int
    shape_word: str
    xpos: int
    ypos: int
    colour_name: str


def parse_sentence(text: str) -> ParsedSentence:
    """Invert :func:`sentence` exactly; raises ValueError for a sentence of no template."""
    template, words = DEFAULT_GRAMMAR.parse(text)
    return ParsedSentence(
        template=template,
        shape_word=words["SHAPE"],
        xpos=POSITION_WORDS["object_xpos"].index(words["XPOS"]),
        ypos=POSITION_WORDS["object_ypos"].index(words["YPOS"]),
        colour_name=words["COLOR"],
    )


def tokenize(text: str) -> list[str]:
    return re.findall(TOKEN_PATTERN, text.lower())


def vocabulary(shape_words: Sequence[str], grammar: Grammar = DEFAULT_GRAMMAR) -> list[str]:
    return grammar.vocabulary(shape_words)


def max_sentence_tokens(shape_words: Sequence[str], grammar: Grammar = DEFAULT_GRAMMAR) -> int:
    return grammar.max_tokens(shape_words)


def tokenizer_spec(shape_words: Sequence[str], grammar: Grammar = DEFAULT_GRAMMAR) -> dict:
    """What the manifest records so any reader can tokenise exactly as we do."""
    return {
        "type": "regex",
        "pattern": TOKEN_PATTERN,
        "lowercase": True,
        "special_tokens": list(SPECIAL_TOKENS),
        "vocabulary": grammar.vocabulary(shape_words),
        "max_tokens": grammar.max_tokens(shape_words),
    }
