"""The factor table and its scene transforms (SPEC 2.1), including the upstream hue quirk."""

import colorsys
import math

import numpy as np
import pytest

from datagen.factors import FACTORS, factor, factors_of, scene_parameters

LATENTS = {
    "object_shape": 2,
    "object_xpos": 0,
    "object_ypos": 2,
    "object_zpos": 0,
    "object_alpharot": 0.0,
    "object_betarot": 0.5,
    "object_gammarot": 1.0,
    "object_color": 0.0,
    "spotlight_pos": 0.5,
    "spotlight_color": 0.5,
    "background_color": 0.5,
}


def test_published_columns_come_from_the_table():
    assert [f.name for f in factors_of("image")] == [
        "object_shape",
        "object_xpos",
        "object_ypos",
        "object_zpos",
        "object_alpharot",
        "object_betarot",
        "object_gammarot",
        "object_color",
        "spotlight_pos",
        "spotlight_color",
        "background_color",
    ]
    assert [f.name for f in factors_of("text")] == [
        "object_shape",
        "object_xpos",
        "object_ypos",
        "object_zpos",
        "object_color_name",
        "object_color_index",
        "text_phrasing",
    ]
    assert {f.role for f in FACTORS if f.name in ("object_shape", "object_xpos", "object_ypos")} == {
        "content"
    }
    with pytest.raises(KeyError, match="unknown factor 'colour'"):
        factor("colour")


def test_scene_transforms():
    p = scene_parameters(LATENTS)
    assert p.location == (3.0, -3.0, 0.0)  # ypos 2 -> Blender x = 3 (near, bottom); xpos 0 -> y = -3 (left)
    assert p.rotation_euler == pytest.approx((-math.pi / 2, 0.0, math.pi / 2))
    assert p.object_rgb == pytest.approx((1.0, 0.0, 0.0))
    assert p.spotlight_theta == pytest.approx(0.0)
    assert p.spotlight_rgb == pytest.approx((1.0, 0.2, 0.2))  # hue 0, saturation 0.8


def test_upstream_hue_quirk_leaves_rgb_range_below_one_half():
    """colorsys does not wrap negative hues; for latents < 0.5 the hue (v - 0.5) / 2 is negative
    and RGB leaves [0, 1] (green < 0 towards hue -1/6, blue > 1 below it). ``wrap`` fixes it."""
    greens, blues = [], []
    for v in np.linspace(0, 0.499, 200):
        lat = dict(LATENTS, spotlight_color=v, background_color=v)
        up, wrap = scene_parameters(lat, "upstream"), scene_parameters(lat, "wrap")
        hue = (v - 0.5) / 2
        assert up.spotlight_rgb == colorsys.hsv_to_rgb(hue, 0.8, 1.0)
        assert wrap.spotlight_rgb == pytest.approx(colorsys.hsv_to_rgb(hue + 1, 0.8, 1.0))
        assert all(0 <= c <= 1 for c in wrap.spotlight_rgb + wrap.background_rgb)
        greens.append(up.spotlight_rgb[1])
        blues.append(up.spotlight_rgb[2])
    assert min(greens) < -0.2 and max(blues) > 1.1


def test_hues_above_one_half_agree_in_both_modes():
    lat = dict(LATENTS, spotlight_color=0.8, background_color=0.9)
    assert scene_parameters(lat, "upstream") == scene_parameters(lat, "wrap")
