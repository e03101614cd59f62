"""Fixtures shared by mmcl's test packages.

``fake_shards`` is the dataset mmcl's tests read: the layout, factors, sentences, tokenizer and
manifest of the Blender-rendered ``tiny_dataset`` (tests/conftest.py: same config, made by
datagen's own sampling, shard writer and finalize), with each image *painted* by numpy/PIL
instead of rendered, so mmcl is tested without bpy or the mesh library. The painting keeps what
the tests rely on: the shape, position and colours of the object are in the pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

FAKE_SOURCE = "painted by tests/mmcl/conftest.py (no mesh, no Blender)"


@pytest.fixture
def one_thread():
    """torch and the BLAS/OpenMP pools at one thread for the test, restored after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


class Painter:
    """Draws a scene's parameters (datagen.factors.SceneParameters) as a flat image: background
    colour, a spotlight patch in its colour on the side its angle points to, and the object as a
    regular polygon with ``3 + shape`` corners at its position, turned by its last rotation, in
    its colour. Drawn at 4x and downsampled, with a little noise seeded by the render seed."""

    def __init__(self, resolution: int):
        self.resolution = resolution

    def render(self, p, seed: int) -> np.ndarray:
        from PIL import Image, ImageDraw

        big = 4 * self.resolution
        image = Image.new("RGB", (big, big), tuple(int(96 * c) for c in p.background_rgb))
        draw = ImageDraw.Draw(image)
        sx, sy = 0.5 + 0.3 * math.sin(p.spotlight_theta), 0.5 + 0.3 * math.cos(p.spotlight_theta)
        r = 0.3 * big
        draw.ellipse(
            (sx * big - r, sy * big - r, sx * big + r, sy * big + r),
            fill=tuple(int(64 + 64 * c) for c in p.spotlight_rgb),
        )
        # image horizontal is Blender y, vertical Blender x (datagen.factors.scene_parameters)
        cx, cy = (p.location[1] + 4.5) / 9 * big, (p.location[0] + 4.5) / 9 * big
        corners, radius, turn = 3 + p.shape, 0.16 * big, p.rotation_euler[2]
        draw.polygon(
            [
                (
                    cx + radius * math.cos(turn + 2 * math.pi * k / corners),
                    cy + radius * math.sin(turn + 2 * math.pi * k / corners),
                )
                for k in range(corners)
            ],
            fill=tuple(int(255 * c) for c in p.object_rgb),
        )
        small = np.asarray(image.resize((self.resolution,) * 2, Image.Resampling.BOX), dtype=np.int16)
        noise = np.random.default_rng(seed).integers(-3, 4, small.shape)
        return np.clip(small + noise, 0, 255).astype(np.uint8)


def paint_dataset(config, root: Path) -> Path:
    """``config``'s whole dataset into ``root`` with painted images (see the module docstring)."""
    from datagen import io
    from datagen.pipeline import base_manifest, finalize, plan_shards
    from datagen.sampling import samples
    from datagen.stages import rendered

    words = tuple(config.shapes)  # the default library's words are its class names
    shapes = [{"name": n, "word": n, "index": i, "source": FAKE_SOURCE} for i, n in enumerate(config.shapes)]
    root.mkdir(parents=True, exist_ok=True)
    io.write_manifest(root, base_manifest(config, shapes, words))
    for split in config.splits:
        (root / split).mkdir(exist_ok=True)
    painter = Painter(config.render.resolution)
    for task in plan_shards(config):
        stream = samples(config, task.split, range(task.start, task.stop), words)
        io.write_shard(root / task.relpath, rendered(stream, painter, config))
    finalize(root)
    return root


@pytest.fixture(scope="session")
def fake_shards(tmp_path_factory, tiny_config) -> Path:
    """The tiny dataset (48/16/16 samples, 32x32, 16 per shard) with painted images, made once
    per test session. Treat it as read-only."""
    return paint_dataset(tiny_config, tmp_path_factory.mktemp("fake_shards"))
