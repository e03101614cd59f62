"""Real Cycles renders: the object moves where its latents say (SPEC 2.1, 2.3)."""

import numpy as np
import pytest

from datagen.config import make_config
from datagen.factors import scene_parameters
from datagen.render import SceneRenderer

BASE = {
    "object_shape": 0,
    "object_zpos": 0,
    "object_alpharot": 0.5,
    "object_betarot": 0.5,
    "object_gammarot": 0.5,
    "object_color": 0.0,
    "spotlight_pos": 0.5,
    "spotlight_color": 0.7,
    "background_color": 0.7,
}


@pytest.fixture(scope="module")
def renderer(mesh_library):
    r = SceneRenderer(make_config({"preset": "draft"}).render, [mesh_library.mesh("teapot")], threads=2)
    yield r
    r.close()


def object_centroid(renderer, latents):
    """Centroid (column, row) of the pixels the object changes, against the same scene without it."""
    p = scene_parameters(latents)
    with_object = renderer.render(p, 1).astype(int)
    renderer.obj.hide_render = True
    try:
        without = renderer.render(p, 1).astype(int)
    finally:
        renderer.obj.hide_render = False
    mask = np.abs(with_object - without).sum(-1) > 60
    assert mask.sum() > 20, "the object should cover some pixels"
    rows, cols = np.nonzero(mask)
    return cols.mean(), rows.mean()


def test_centroid_moves_left_to_right_with_xpos_and_top_to_bottom_with_ypos(renderer):
    c = {
        (x, y): object_centroid(renderer, dict(BASE, object_xpos=x, object_ypos=y))
        for x in range(3)
        for y in range(3)
    }
    for y in range(3):
        cols = [c[(x, y)][0] for x in range(3)]
        assert cols[0] + 5 < cols[1] < cols[2] - 5, (y, cols)
    for x in range(3):
        rows = [c[(x, y)][1] for y in range(3)]
        assert rows[0] + 3 < rows[1] < rows[2] - 3, (x, rows)


def test_render_is_deterministic_and_seed_dependent(renderer):
    p = scene_parameters(dict(BASE, object_xpos=1, object_ypos=1))
    a, b = renderer.render(p, 5), renderer.render(p, 5)
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, renderer.render(p, 6))


def test_object_colour_follows_hue(renderer):
    reds = renderer.render(scene_parameters(dict(BASE, object_xpos=1, object_ypos=1, object_color=0.0)), 1)
    blues = renderer.render(scene_parameters(dict(BASE, object_xpos=1, object_ypos=1, object_color=2 / 3)), 1)
    diff = reds.astype(int) - blues.astype(int)
    on_object = np.abs(diff).sum(-1) > 60
    assert on_object.sum() > 20
    assert diff[on_object][:, 0].mean() > 40 and diff[on_object][:, 2].mean() < -40
