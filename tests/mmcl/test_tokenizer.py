"""mmcl.tokenizer: the manifest's regex tokenizer, on a hand-made spec and on a real dataset."""

from __future__ import annotations

import json
import re
import tarfile

import pytest
import torch

from mmcl.tokenizer import Tokenizer, TokenizerError

PATTERN = r"[a-z0-9]+|[^\sa-z0-9]"
VOCAB = [
    "<pad>",
    "<bos>",
    "<eos>",
    '"',
    "-",
    ".",
    "a",
    "at",
    "blue",
    "cow",
    "is",
    "left",
    "of",
    "the",
    "top",
    "xkcd",
    ":",
]


def spec(**over):
    d = {
        "type": "regex",
        "pattern": PATTERN,
        "lowercase": True,
        "special_tokens": ["<pad>", "<bos>", "<eos>"],
        "vocabulary": VOCAB,
        "max_tokens": 12,
    }
    d.update(over)
    return d


def test_encode_adds_markers_and_pads_with_zero():
    words = ["a", '"', "xkcd", ":", "blue", '"', "cow", "is", "at", "the", "top", "-", "left", "."]
    assert len(words) == 14
    tok = Tokenizer.from_spec(spec(max_tokens=14))
    ids = tok.encode('A "xkcd:blue" cow is at the top-left.')
    assert ids == [1, *[VOCAB.index(w) for w in words], 2]
    padded, length = tok.encode_padded('A "xkcd:blue" cow is at the top-left.')
    assert length == 16 and padded.shape == (tok.max_length,) == (16,) and padded.dtype == torch.int64
    short, n = tok.encode_padded("The cow.")
    assert n == 5 and short[:5].tolist() == [1, VOCAB.index("the"), VOCAB.index("cow"), VOCAB.index("."), 2]
    assert short[5:].eq(0).all()
    assert tok.decode(short) == ["the", "cow", "."]


def test_unknown_token_and_too_long_are_errors_naming_the_place():
    tok = Tokenizer.from_spec(spec())
    with pytest.raises(
        TokenizerError, match=r"shard-000003.tar:000017.txt: token 'horse' .* not in the manifest"
    ):
        tok.encode("The horse.", where="shard-000003.tar:000017.txt")
    with pytest.raises(TokenizerError, match="exceed the manifest's max_tokens=12"):
        tok.encode("a " * 13)


@pytest.mark.parametrize(
    "over, message",
    [
        ({"type": "bpe"}, "type must be 'regex'"),
        ({"vocabulary": ["<bos>", "<pad>", "<eos>", "a"]}, "must start with '<pad>'"),
        ({"vocabulary": ["<pad>", "<bos>", "a"]}, "lacks the special token '<eos>'"),
        ({"vocabulary": ["<pad>", "<bos>", "<eos>", "a", "a"]}, "duplicate"),
        ({"pattern": "[a-"}, "not a valid regex"),
    ],
)
def test_bad_specs_name_the_file(over, message):
    with pytest.raises(TokenizerError, match=message) as err:
        Tokenizer.from_spec(spec(**over), where="ROOT/manifest.json")
    assert str(err.value).startswith("ROOT/manifest.json")


def test_vocabulary_comparison_names_first_difference():
    tok = Tokenizer.from_spec(spec())
    tok.check_same_vocabulary(list(VOCAB), "ckpt")
    other = list(VOCAB)
    other[8] = "bluish"
    with pytest.raises(
        TokenizerError, match=r"vocabulary of ckpt does not match .* id 8: 'bluish' vs 'blue'"
    ):
        tok.check_same_vocabulary(other, "ckpt")
    with pytest.raises(TokenizerError, match="16 tokens vs 17"):
        tok.check_same_vocabulary(VOCAB[:-1], "ckpt")


def test_every_sentence_of_a_real_dataset_round_trips(fake_shards):
    manifest = json.loads((fake_shards / "manifest.json").read_text())
    tok = Tokenizer.from_spec(manifest["tokenizer"])
    n = 0
    for shards in manifest["shards"].values():
        for shard in shards:
            with tarfile.open(fake_shards / shard["file"]) as tar:
                for member in tar.getmembers():
                    if member.name.endswith(".txt"):
                        sentence = tar.extractfile(member).read().decode()
                        padded, length = tok.encode_padded(sentence)
                        assert tok.decode(padded) == re.findall(
                            manifest["tokenizer"]["pattern"], sentence.lower()
                        )
                        assert 2 < length <= tok.max_length
                        n += 1
    assert n == sum(manifest["counts"].values())
