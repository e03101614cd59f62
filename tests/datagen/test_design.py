"""The factor toolbox (datagen.design): distributions, edges, described factors, roles, and the
one-sentence errors for bad designs."""

from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from datagen.cli import main
from datagen.config import ConfigError, make_config
from datagen.meshes import DEFAULT_SHAPES
from datagen.pipeline import base_manifest, sample_json
from datagen.sampling import sample
from datagen.text import tokenize

N = 4000


def draw(overrides, n=N, split="train"):
    cfg = make_config({"seed": 11, **overrides})
    return [sample(cfg, split, i, DEFAULT_SHAPES) for i in range(n)]


def column(samples, name, modality="image"):
    return np.array([getattr(s, modality)[name] for s in samples], dtype=float)


def edge(cause, effect, mechanism, strength, **kw):
    return {"cause": cause, "effect": effect, "mechanism": mechanism, "strength": strength, **kw}


# ----------------------------------------------------------------------------- marginals
def test_truncated_normal_and_levels_marginals():
    s = draw(
        {
            "factors": {
                "spotlight_pos": {"distribution": "truncnormal", "mean": 0.3, "std": 0.15},
                "object_alpharot": {"distribution": "levels", "levels": 4},
            }
        }
    )
    spot = column(s, "spotlight_pos")
    a, b = (0 - 0.3) / 0.15, (1 - 0.3) / 0.15
    assert stats.kstest(spot, stats.truncnorm(a, b, loc=0.3, scale=0.15).cdf).pvalue > 1e-3
    rot = column(s, "object_alpharot")
    assert set(np.round(rot, 12)) == {0.125, 0.375, 0.625, 0.875}
    assert stats.chisquare(np.unique(rot, return_counts=True)[1]).pvalue > 1e-3
    # untouched factors keep their exact uniform draws
    ref = draw({}, n=200)
    assert [x.image["object_betarot"] for x in s[:200]] == [x.image["object_betarot"] for x in ref]


# ----------------------------------------------------------------------------- edges
def test_causal_colour_mode_is_the_interval_edge_at_full_strength():
    causal = draw({"colour_mode": "causal"}, n=500)
    explicit = draw(
        {"colour_mode": "independent", "edges": [edge("object_xpos", "object_color", "interval", 1.0)]}, n=500
    )
    assert [s.image for s in causal] == [s.image for s in explicit]
    assert [s.sentence for s in causal] == [s.sentence for s in explicit]


def test_interval_strength_moves_from_independent_to_causal():
    x = column(draw({}, n=N), "object_xpos")
    r2 = {}
    for strength in (0.0, 0.5, 1.0):
        hue = column(
            draw(
                {
                    "colour_mode": "independent",
                    "edges": [edge("object_xpos", "object_color", "interval", strength)],
                }
            ),
            "object_color",
        )
        r2[strength] = np.corrcoef(x, hue)[0, 1] ** 2
        assert hue.min() >= 0 and hue.max() < 1
    independent = column(draw({"colour_mode": "independent"}), "object_color")
    assert np.array_equal(
        independent,
        column(
            draw(
                {
                    "colour_mode": "independent",
                    "edges": [edge("object_xpos", "object_color", "interval", 0.0)],
                }
            ),
            "object_color",
        ),
    )
    assert r2[0.0] < 0.01 < r2[0.5] < r2[1.0] and r2[1.0] > 0.85


def test_linear_gaussian_strength_is_the_latent_correlation_and_chains_propagate():
    s = draw(
        {
            "colour_mode": "independent",
            "edges": [
                edge("object_alpharot", "object_betarot", "linear_gaussian", 0.9),
                edge("object_betarot", "object_gammarot", "linear_gaussian", 0.5),
            ],
        }
    )
    a, b, c = (column(s, n) for n in ("object_alpharot", "object_betarot", "object_gammarot"))
    scores = np.vectorize(NormalDist().inv_cdf)
    standard_a = (a - 0.5) * np.sqrt(12)
    assert abs(np.corrcoef(standard_a, scores(b))[0, 1] - 0.9) < 0.02
    rho_ac = stats.spearmanr(a, c).statistic
    assert 0.3 < rho_ac < 0.55  # about 0.9 x 0.5 through the chain
    assert abs(stats.spearmanr(a, column(s, "spotlight_pos")).statistic) < 0.06


# ----------------------------------------------------------------------------- text and roles
def test_described_colours_are_named_parsed_and_shared_as_style():
    cfg = make_config({"describe": ["background_color", "spotlight_color"]})
    manifest = base_manifest(cfg, [], DEFAULT_SHAPES)
    roles = {f["name"]: (f["role"], tuple(f["modalities"])) for f in manifest["factors"]}
    assert roles["spotlight_color"] == ("style", ("image",)) and roles["background_color"][0] == "style"
    assert roles["spotlight_color_name"] == ("style", ("text",)) and "background_color_index" in roles
    assert roles["object_alpharot"][0] == "image_specific" and "object_material" not in roles
    vocab = set(manifest["tokenizer"]["vocabulary"])
    longest = 0
    for i in range(300):
        s = sample(cfg, "val", i, DEFAULT_SHAPES)
        # table order, not the order listed in describe
        assert f'The spotlight is "{s.text["spotlight_color_name"]}". The background is "' in s.sentence
        tokens = tokenize(s.sentence)
        assert set(tokens) <= vocab
        longest = max(longest, len(tokens))
    assert longest <= manifest["tokenizer"]["max_tokens"]
    assert manifest["design"]["described"] == ["spotlight_color", "background_color"]


def test_continuous_positions_spotlight_words_and_material():
    cfg = make_config(
        {
            "factors": {
                "object_xpos": {"positions": "continuous"},
                "object_material": {"values": ["rubber", "metal"]},
            },
            "describe": ["spotlight_pos", "object_material"],
        }
    )
    manifest = base_manifest(cfg, [], DEFAULT_SHAPES)
    table = {f["name"]: f for f in manifest["factors"]}
    assert table["object_xpos"]["kind"] == "continuous" and table["object_ypos"]["kind"] == "discrete"
    assert table["spotlight_pos"]["role"] == "content" and list(table["spotlight_pos"]["modalities"]) == [
        "image",
        "text",
    ]
    assert table["object_material"]["n_values"] == 2 and table["object_material"]["role"] == "content"
    materials, words = set(), set()
    for i in range(400):
        s = sample(cfg, "train", i, DEFAULT_SHAPES)
        x = s.image["object_xpos"]
        assert isinstance(x, float) and s.text["object_xpos"] == x
        assert ("left", "center", "right")[min(int(x * 3), 2)] in s.sentence
        meta = sample_json(s, cfg)
        assert meta["scene"]["location"][1] == pytest.approx(x * 6 - 3)
        assert meta["scene"]["material"] == ("rubber", "metal")[s.image["object_material"]]
        assert s.sentence.endswith(f"It is made of {meta['scene']['material']}.")
        materials.add(s.image["object_material"])
        words.add(s.sentence.split("The light comes from the ")[1].split(".")[0])
    assert materials == {0, 1} and words == {"back", "right", "front"}
    default = make_config({})
    assert "scene" not in sample_json(sample(default, "train", 0, DEFAULT_SHAPES), default)


def test_custom_templates_generate_and_parse():
    cfg = make_config(
        {
            "describe": ["background_color"],
            "templates": [
                'A "{COLOR}" {SHAPE} at the {YPOS}-{XPOS}, on "{BACKGROUND_COLOR}".',
                'On "{BACKGROUND_COLOR}": a {SHAPE} ({YPOS}-{XPOS}) in "{COLOR}".',
            ],
        }
    )
    from datagen.design import design_of

    grammar = design_of(cfg).grammar
    for i in range(100):
        s = sample(cfg, "test", i, DEFAULT_SHAPES)
        template, said = grammar.parse(s.sentence)
        assert template == s.text["text_phrasing"] < 2
        assert said["BACKGROUND_COLOR"] == s.text["background_color_name"]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "design, words",
    [
        ({"factors": {"object_hue": {"distribution": "uniform"}}}, ["factors.object_hue", "unknown factor"]),
        (
            {"factors": {"spotlight_pos": {"distribution": "truncnormal", "std": 0}}},
            ["factors.spotlight_pos.std", "(0, 1]"],
        ),
        (
            {"factors": {"spotlight_pos": {"distribution": "truncnormal", "mean": 1.5}}},
            ["factors.spotlight_pos.mean"],
        ),
        (
            {"factors": {"object_betarot": {"distribution": "levels", "levels": 1}}},
            ["factors.object_betarot.levels"],
        ),
        ({"factors": {"object_shape": {"distribution": "truncnormal"}}}, ["factors.object_shape"]),
        (
            {"factors": {"object_xpos": {"distribution": "truncnormal"}}},
            ["factors.object_xpos.distribution", "positions: continuous"],
        ),
        ({"factors": {"object_material": {"values": ["wood"]}}}, ["factors.object_material.values"]),
        ({"describe": ["object_shape"]}, ["describe", "object_shape"]),
        ({"describe": ["object_material"]}, ["describe", "factors.object_material"]),
        (
            {
                "edges": [
                    edge("object_color", "object_betarot", "interval", 0.5),
                    edge("object_betarot", "object_color", "linear_gaussian", 0.5),
                ]
            },
            ["edges: cycle", "object_color ->", "object_betarot ->"],
        ),
        (
            {"edges": [edge("object_xpos", "object_color", "interval", 1.0)]},
            ["given twice", "colour_mode: independent"],
        ),
        (
            {"edges": [edge("object_color", "object_shape", "interval", 1.0)]},
            ["edges[0].effect", "object_shape"],
        ),
        ({"edges": [edge("object_xpos", "spotlight_pos", "interval", 1.5)]}, ["edges[0].strength", "[0, 1]"]),
        ({"edges": [edge("object_xpos", "spotlight_pos", "copula", 0.5)]}, ["edges[0].mechanism"]),
        (
            {"edges": [edge("text_phrasing", "spotlight_pos", "interval", 0.5)]},
            ["edges[0].cause", "text_phrasing"],
        ),
        (
            {"describe": ["spotlight_color"], "templates": ['A "{COLOR}" {SHAPE} at the {YPOS}-{XPOS}.']},
            ["templates[0]", "no slot {SPOTLIGHT_COLOR}", "described factor spotlight_color"],
        ),
        (
            {"templates": ['A "{COLOR}" {SHAPE} at the {YPOS}-{XPOS} in "{BACKGROUND_COLOR}".']},
            ["templates[0]", "not in describe"],
        ),
        ({"templates": ["A {COLOR} {SHAPE} at the {YPOS}-{XPOS}."]}, ["templates[0]", "quoted"]),
    ],
)
def test_bad_designs_are_one_sentence_naming_the_key(design, words):
    with pytest.raises(ConfigError) as err:
        make_config(design)
    msg = str(err.value)
    assert all(w in msg for w in words), msg
    assert "\n" not in msg


def test_bad_design_file_on_the_command_line_writes_nothing(tmp_path, capsys):
    config = tmp_path / "cyclic.yaml"
    config.write_text(
        "preset: draft\ncolour_mode: independent\nedges:\n"
        "  - {cause: spotlight_pos, effect: object_color, mechanism: interval, strength: 1.0}\n"
        "  - {cause: object_color, effect: spotlight_pos, mechanism: linear_gaussian, strength: 0.5}\n"
    )
    rc = main(["generate", str(tmp_path / "ds"), "--config", str(config), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and str(config) in err and "cycle" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "ds").exists()
