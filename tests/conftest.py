"""Shared fixtures: the mesh library and a tiny real dataset rendered by Blender.

The mesh library is built once into the user cache (``$MMCL3D_CACHE`` or
``~/.cache/mmcl3d``) from the Debian packages, exactly as ``datagen assets`` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datagen.config import make_config
from datagen.meshes import build_library, load_library

TINY = {
    "counts": {"train": 48, "val": 16, "test": 16},
    "shard_size": 16,
    "preset": "draft",
    "render": {"resolution": 32},
    "seed": 7,
}


@pytest.fixture(scope="session")
def mesh_library():
    lib = load_library()
    try:
        lib.check(make_config().shapes)
    except Exception:
        lib = build_library(log=lambda m: None)
    return lib


@pytest.fixture(scope="session")
def tiny_config():
    return make_config(TINY)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, mesh_library, tiny_config) -> Path:
    """A real dataset (48/16/16 samples, 32x32 draft renders, 16 per shard) rendered once per
    test session with 2 worker processes. Treat it as read-only."""
    from datagen.pipeline import generate

    root = tmp_path_factory.mktemp("tiny_dataset")
    generate(tiny_config, root, workers=2, progress=False, log=lambda m: None)
    return root
