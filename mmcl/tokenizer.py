"""Sentence -> token ids, exactly as the dataset manifest specifies (docs/formats.md).

The learning side never imports ``datagen`` (SPEC §1): the regular expression, the lower-casing,
the special tokens and the vocabulary all come from ``manifest.json["tokenizer"]``. A sentence
becomes ``<bos> tokens... <eos>`` right-padded with ``<pad>`` (id 0) to ``max_length``
(the manifest's ``max_tokens`` plus the two markers), so every sentence the grammar can produce
fits. A token outside the vocabulary means the shards and the manifest do not belong together;
that is an error, never an ``<unk>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
REQUIRED_SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS)


class TokenizerError(ValueError):
    """The tokenizer spec or a sentence does not fit the manifest; the message names it."""


@dataclass(frozen=True)
class Tokenizer:
    """Regex tokenizer over a fixed vocabulary; token ids are vocabulary positions."""

    pattern: str
    vocabulary: tuple[str, ...]
    max_tokens: int
    lowercase: bool = True
    special_tokens: tuple[str, ...] = REQUIRED_SPECIAL_TOKENS
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)
    _regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vocab = tuple(self.vocabulary)
        object.__setattr__(self, "vocabulary", vocab)
        if len(set(vocab)) != len(vocab):
            dup = sorted({t for t in vocab if vocab.count(t) > 1})
            raise TokenizerError(f"tokenizer vocabulary has duplicate entries {dup[:5]}")
        for tok in REQUIRED_SPECIAL_TOKENS:
            if tok not in vocab:
                raise TokenizerError(f"tokenizer vocabulary lacks the special token {tok!r}")
        if vocab[0] != PAD:
            raise TokenizerError(f"tokenizer vocabulary must start with {PAD!r} (id 0), got {vocab[0]!r}")
        if self.max_tokens < 1:
            raise TokenizerError(f"tokenizer max_tokens must be >= 1, got {self.max_tokens}")
        try:
            regex = re.compile(self.pattern)
        except re.error as exc:
            raise TokenizerError(f"tokenizer pattern {self.pattern!r} is not a valid regex ({exc})") from None
        object.__setattr__(self, "_regex", regex)
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(vocab)})

    @classmethod
    def from_spec(cls, spec: dict, where: str = "manifest.json") -> Tokenizer:
        """Build from ``manifest["tokenizer"]``; ``where`` names the file in error messages."""
        if not isinstance(spec, dict):
            raise TokenizerError(f"{where}: 'tokenizer' must be a mapping, got {type(spec).__name__}")
        if spec.get("type") != "regex":
            raise TokenizerError(f"{where}: tokenizer type must be 'regex', got {spec.get('type')!r}")
        missing = [k for k in ("pattern", "vocabulary", "max_tokens") if k not in spec]
        if missing:
            raise TokenizerError(f"{where}: tokenizer spec lacks {missing}")
        try:
            return cls(
                pattern=spec["pattern"],
                vocabulary=tuple(spec["vocabulary"]),
                max_tokens=int(spec["max_tokens"]),
                lowercase=bool(spec.get("lowercase", True)),
                special_tokens=tuple(spec.get("special_tokens", REQUIRED_SPECIAL_TOKENS)),
            )
        except TokenizerError as exc:
            raise TokenizerError(f"{where}: {exc}") from None

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def max_length(self) -> int:
        """Length of every encoded sentence: ``<bos>`` + at most ``max_tokens`` + ``<eos>``."""
        return self.max_tokens + 2

    @property
    def pad_id(self) -> int:
        return 0

    def tokens(self, sentence: str) -> list[str]:
        return self._regex.findall(sentence.lower() if self.lowercase else sentence)

    def encode(self, sentence: str, where: str = "sentence") -> list[int]:
        """Token ids ``<bos> ... <eos>`` without padding; unknown tokens raise TokenizerError."""
        toks = self.tokens(sentence)
        if len(toks) > self.max_tokens:
            raise TokenizerError(
                f"{where}: {len(toks)} tokens exceed the manifest's max_tokens={self.max_tokens}: {sentence!r}"
            )
        try:
            ids = [self._ids[t] for t in toks]
        except KeyError as exc:
            raise TokenizerError(
                f"{where}: token {exc.args[0]!r} of {sentence!r} is not in the manifest's vocabulary; "
                "the shards and manifest.json do not belong to the same dataset"
            ) from None
        return [self._ids[BOS], *ids, self._ids[EOS]]

    def encode_padded(self, sentence: str, where: str = "sentence") -> tuple[torch.Tensor, int]:
        """``(ids, length)``: int64 ids padded to ``max_length`` and the unpadded length."""
        ids = self.encode(sentence, where)
        out = torch.zeros(self.max_length, dtype=torch.int64)
        out[: len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out, len(ids)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """Tokens of ``ids`` without padding and markers (for inspection and tests)."""
        skip = {self._ids[PAD], self._ids[BOS], self._ids[EOS]}
        return [self.vocabulary[int(i)] for i in ids if int(i) not in skip]

    def check_same_vocabulary(self, vocabulary: Sequence[str], where: str) -> None:
        """Raise unless ``vocabulary`` (e.g. a checkpoint's) equals ours, naming the first difference."""
        theirs = tuple(vocabulary)
        if theirs == self.vocabulary:
            return
        if len(theirs) != len(self.vocabulary):
            detail = f"{len(theirs)} tokens vs {len(self.vocabulary)}"
        else:
            i = next(i for i, (a, b) in enumerate(zip(theirs, self.vocabulary)) if a != b)
            detail = f"first difference at id {i}: {theirs[i]!r} vs {self.vocabulary[i]!r}"
        raise TokenizerError(
            f"the vocabulary of {where} does not match the dataset manifest ({detail}); "
            "token ids would mean different words"
        )
