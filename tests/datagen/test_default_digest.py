"""Datasets made with default factor settings stay byte-identical to those made before the
factor toolbox (issue 17): the sampler's latents, sentences and render-space values, each
sample's json, the config digest and the manifest header hash to what the code produced then.

``golden/default_digest.json`` was written by the code of commit 1a4283b (before the toolbox) with
exactly the procedure of ``digests`` below; the demo's config digest there equals the one in the
manifest of the committed ``make demo`` run.
"""

import hashlib
import json
from pathlib import Path

import pytest

from datagen.config import SPLITS, make_config
from datagen.design import design_of
from datagen.factors import scene_parameters
from datagen.meshes import DEFAULT_SHAPES
from datagen.pipeline import base_manifest, sample_json
from datagen.sampling import sample

# SceneParameters' fields at the golden commit (the material came later, "rubber" by default).
SCENE_FIELDS = (
    "shape",
    "location",
    "rotation_euler",
    "object_rgb",
    "spotlight_theta",
    "spotlight_rgb",
    "background_rgb",
)
GOLDEN = json.loads((Path(__file__).parent / "golden" / "default_digest.json").read_text())


def digests(overrides: dict) -> dict:
    cfg = make_config(overrides)
    h = hashlib.sha256()
    for split in SPLITS:
        for i in range(300):
            s = sample(cfg, split, i, DEFAULT_SHAPES)
            scene = scene_parameters(s.image, cfg.hue_mode)
            assert scene.material == "rubber" and design_of(cfg).scene(s.image) == scene
            rec = {
                "json": sample_json(s, cfg),
                "txt": s.sentence,
                "scene": {k: getattr(scene, k) for k in SCENE_FIELDS},
            }
            h.update(json.dumps(rec, sort_keys=True).encode())
    manifest = base_manifest(cfg, [], DEFAULT_SHAPES)
    manifest.pop("generator")
    return {
        "config": overrides,
        "config_sha256": cfg.digest(),
        "samples_sha256": h.hexdigest(),
        "manifest_sha256": hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest(),
    }


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_default_datasets_are_byte_identical_to_before_the_toolbox(name):
    assert digests(GOLDEN[name]["config"]) == GOLDEN[name]
