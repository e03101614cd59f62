"""Exact parsing of generated sentences with the dataset's own grammar (SPEC 2.2, docs/formats.md).

``manifest.json["text"]`` holds the five templates, the position words and every colour name;
``manifest.json["shapes"]`` the shape words in index order; ``manifest.json["tokenizer"]`` the
tokenizer. ``mmcl`` never imports ``datagen`` (SPEC §1), so the grammar is rebuilt here from
those entries: each template becomes a regular expression over the space-joined *tokens*, with
the slots ``{SHAPE}``, ``{COLOR}``, ``{YPOS}``, ``{XPOS}`` as alternations of the tokenised
words. A generated token sequence is coherent only if it is a sentence the generator could have
written; anything else parses to ``None`` (counted as incoherent for every factor).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mmcl.manifest import DataError, Manifest
from mmcl.tokenizer import BOS, EOS, PAD

SLOTS = {"SHAPE": "shape", "COLOR": "colour", "YPOS": "ypos", "XPOS": "xpos"}
# Slots a factor design adds (manifest text.slots; datagen/design.py): the colour ones take the
# colour names, the others manifest text.slot_words. Parsed so the sentence is recognised; what
# they say is kept in ParsedSentence.said.
COLOUR_SLOTS = ("SPOTLIGHT_COLOR", "BACKGROUND_COLOR")


@dataclass(frozen=True)
class ParsedSentence:
    """The factors a sentence states (indices as in the shards' ``text`` latents)."""

    template: int
    object_shape: int
    object_xpos: int
    object_ypos: int
    colour_name: str
    said: tuple[tuple[str, str], ...] = ()  # (slot, words) of a design's extra slots


class Grammar:
    """Templates x words of one dataset, as token-level regular expressions."""

    def __init__(self, manifest: Manifest):
        raw = manifest.raw
        try:
            text = raw["text"]
            templates = list(text["templates"])
            xwords = list(text["position_words"]["object_xpos"])
            ywords = list(text["position_words"]["object_ypos"])
            colours = list(text["colour_names"])
            shapes = [s["word"] for s in raw["shapes"]]
            extra = {
                slot: colours if slot in COLOUR_SLOTS else list(text["slot_words"][slot])
                for slot in text.get("slots", SLOTS)
                if slot not in SLOTS
            }
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"{manifest.path}: the text grammar is incomplete (missing {exc}); sentences can only be "
                "parsed with a manifest written by datagen >= the version that records text.templates"
            ) from None
        self.tokenizer = manifest.tokenizer
        self.templates = templates
        join = self._join
        self.words = {
            "shape": {join(w): i for i, w in enumerate(shapes)},
            "xpos": {join(w): i for i, w in enumerate(xwords)},
            "ypos": {join(w): i for i, w in enumerate(ywords)},
            "colour": {join(w): w for w in colours},
            **{slot.lower(): {join(w): w for w in words} for slot, words in extra.items()},
        }
        self.groups = {**SLOTS, **{slot: slot.lower() for slot in extra}}
        self.patterns = [self._compile(t) for t in templates]
        self._special = {PAD, BOS, EOS}

    def _join(self, words: str) -> str:
        return " ".join(self.tokenizer.tokens(words))

    def _compile(self, template: str) -> re.Pattern:
        parts = []
        for piece in re.split(r"(\{[A-Z_]+\})", template):
            if not piece:
                continue
            if piece.startswith("{") and piece.endswith("}"):
                slot = self.groups.get(piece[1:-1])
                if slot is None:
                    raise DataError(f"template {template!r} has an unknown slot {piece}")
                options = sorted(self.words[slot], key=len, reverse=True)
                parts.append(f"(?P<{slot}>{'|'.join(re.escape(o) for o in options)})")
            else:
                toks = self.tokenizer.tokens(piece)
                if toks:
                    parts.append(" ".join(re.escape(t) for t in toks))
        return re.compile(" ".join(parts))

    def parse_tokens(self, tokens: Sequence[str]) -> ParsedSentence | None:
        """Parse a token sequence (without ``<bos>``/``<eos>``/padding); None if it is not a sentence."""
        line = " ".join(tokens)
        for i, pattern in enumerate(self.patterns):
            match = pattern.fullmatch(line)
            if match is not None:
                return ParsedSentence(
                    i,
                    self.words["shape"][match["shape"]],
                    self.words["xpos"][match["xpos"]],
                    self.words["ypos"][match["ypos"]],
                    self.words["colour"][match["colour"]],
                    tuple(
                        (slot, self.words[group][match[group]])
                        for slot, group in self.groups.items()
                        if slot not in SLOTS
                    ),
                )
        return None

    def parse(self, sentence: str) -> ParsedSentence | None:
        return self.parse_tokens(self.tokenizer.tokens(sentence))

    def tokens_of_ids(self, ids: Sequence[int] | torch.Tensor) -> list[str] | None:
        """Tokens between a leading ``<bos>`` and the first ``<eos>``, which must be followed only
        by padding; None when the sequence is not so framed (the generator never writes that)."""
        vocab = self.tokenizer.vocabulary
        toks = [vocab[int(i)] for i in ids]
        if not toks or toks[0] != BOS or EOS not in toks:
            return None
        end = toks.index(EOS)
        if any(t != PAD for t in toks[end + 1 :]):
            return None
        body = toks[1:end]
        if any(t in self._special for t in body):
            return None
        return body

    def parse_ids(self, ids: Sequence[int] | torch.Tensor) -> ParsedSentence | None:
        tokens = self.tokens_of_ids(ids)
        return None if tokens is None else self.parse_tokens(tokens)

    def detokenize(self, ids: Sequence[int] | torch.Tensor) -> str:
        """A readable rendering of generated ids (for sample grids): tokens joined by spaces,
        with no space before punctuation and around '-', markers dropped after ``<eos>``."""
        vocab = self.tokenizer.vocabulary
        toks = []
        for i in ids:
            t = vocab[int(i)]
            if t == EOS:
                break
            if t in (BOS, PAD):
                continue
            toks.append(t)
        out = ""
        for t in toks:
            if not out or t in ".,:-" or out.endswith("-") or out.endswith(":"):
                out += t
            else:
                out += " " + t
        return out
