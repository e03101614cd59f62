"""The one table of latent factors of Multimodal3DIdent (seed 003, Table 4.1; SPEC 2.1).

Every other part of the project reads this table: the sampler draws each factor from its
domain, the text generator and the renderer look factors up by name, the shard schema and the
published CSV layout take their columns from it, and the manifest carries it to the learning
side (``mmcl``), whose probes read roles and kinds from there. Never list the factors again.

Scene transforms (SPEC 2.1, last column) also live here so the renderer and the validator
agree on them, including the upstream hue quirk: Python's ``colorsys.hsv_to_rgb`` does not wrap
negative hues, so spotlight/background latents below 0.5 give RGB values outside [0, 1].
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass
from typing import Literal

Kind = Literal["discrete", "continuous", "categorical_name"]
Role = Literal["content", "style", "image_specific", "text_specific", "constant"]
Modality = Literal["image", "text"]

IMAGE: Modality = "image"
TEXT: Modality = "text"


@dataclass(frozen=True)
class Factor:
    """One ground-truth factor.

    ``n_values`` is the number of classes of a discrete factor (``None`` when it depends on
    the dataset: the number of shapes or of palette names) and ``None`` for continuous ones,
    whose domain is always [0, 1]. ``period`` marks a continuous factor whose ends are the same
    value (the object hue: hsv_to_rgb(0, 1, 1) = hsv_to_rgb(1, 1, 1)); probes score it as an angle.
    """

    name: str
    modalities: tuple[Modality, ...]
    kind: Kind
    role: Role
    n_values: int | None
    description: str
    period: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


# Order is the column order of the published CSV files (SPEC 2.8).
FACTORS: tuple[Factor, ...] = (
    Factor(
        "object_shape",
        (IMAGE, TEXT),
        "discrete",
        "content",
        None,
        "object class, index into the dataset's shape list",
    ),
    Factor(
        "object_xpos",
        (IMAGE, TEXT),
        "discrete",
        "content",
        3,
        "0 left, 1 center, 2 right; Blender y = xpos*3-3",
    ),
    Factor(
        "object_ypos", (IMAGE, TEXT), "discrete", "content", 3, "0 top, 1 mid, 2 bottom; Blender x = ypos*3-3"
    ),
    Factor("object_zpos", (IMAGE, TEXT), "discrete", "constant", 1, "Blender z = 0"),
    Factor("object_alpharot", (IMAGE,), "continuous", "image_specific", None, "Euler X = v*pi - pi/2"),
    Factor("object_betarot", (IMAGE,), "continuous", "image_specific", None, "Euler Y = v*pi - pi/2"),
    Factor("object_gammarot", (IMAGE,), "continuous", "image_specific", None, "Euler Z = v*pi - pi/2"),
    Factor(
        "object_color",
        (IMAGE,),
        "continuous",
        "style",
        None,
        "object hue; RGB = hsv_to_rgb(h, 1, 1); causal mode: (xpos + U(0,1)) / 3",
        period=1.0,
    ),
    Factor(
        "spotlight_pos",
        (IMAGE,),
        "continuous",
        "image_specific",
        None,
        "theta = v*pi - pi/2 on a semicircle of radius 4 above the scene",
    ),
    Factor(
        "spotlight_color",
        (IMAGE,),
        "continuous",
        "image_specific",
        None,
        "RGB = hsv_to_rgb((v-0.5)/2, 0.8, 1)",
    ),
    Factor(
        "background_color",
        (IMAGE,),
        "continuous",
        "image_specific",
        None,
        "RGB = hsv_to_rgb((v-0.5)/2, 0.6, 1)",
    ),
    Factor(
        "object_color_name",
        (TEXT,),
        "categorical_name",
        "style",
        None,
        "nearest colour name of the object hue in a randomly drawn palette",
    ),
    Factor(
        "object_color_index",
        (TEXT,),
        "discrete",
        "style",
        None,
        "index of object_color_name in the sorted union of all palette names",
    ),
    Factor("text_phrasing", (TEXT,), "discrete", "text_specific", 5, "template index"),
    # Optional factors: in a dataset only when its design asks (datagen.design), so the default
    # table, its CSV columns and every default sample stay as they were.
    Factor(
        "object_material",
        (IMAGE,),
        "discrete",
        "image_specific",
        None,
        "index into the dataset's materials (rubber: upstream; metal: metallic, low roughness)",
    ),
    Factor(
        "spotlight_color_name",
        (TEXT,),
        "categorical_name",
        "style",
        None,
        "nearest colour name of the spotlight colour (RGB clipped to [0, 1]) in the sample's palette",
    ),
    Factor(
        "spotlight_color_index",
        (TEXT,),
        "discrete",
        "style",
        None,
        "index of spotlight_color_name in the sorted union of all palette names",
    ),
    Factor(
        "background_color_name",
        (TEXT,),
        "categorical_name",
        "style",
        None,
        "nearest colour name of the background colour (RGB clipped to [0, 1]) in the sample's palette",
    ),
    Factor(
        "background_color_index",
        (TEXT,),
        "discrete",
        "style",
        None,
        "index of background_color_name in the sorted union of all palette names",
    ),
)

# Optional factor -> the design choice that brings it in (a material list, or describing it).
OPTIONAL_FACTORS: dict[str, str] = {
    "object_material": "object_material",
    "spotlight_color_name": "spotlight_color",
    "spotlight_color_index": "spotlight_color",
    "background_color_name": "background_color",
    "background_color_index": "background_color",
}
# The role a factor takes when the sentence describes it: a colour named through a random
# palette is stochastically shared (style, like the object colour); a fixed word makes it content.
DESCRIBED_ROLES: dict[str, str] = {
    "spotlight_color": "style",
    "background_color": "style",
    "spotlight_pos": "content",
    "object_material": "content",
}
MATERIALS: tuple[str, ...] = ("rubber", "metal")

FACTOR_BY_NAME: dict[str, Factor] = {f.name: f for f in FACTORS}

POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "object_xpos": ("left", "center", "right"),
    "object_ypos": ("top", "mid", "bottom"),
}
# Thirds of the spotlight's semicircle: theta from -pi/2 (behind the object, seen from the
# camera) over +y (the image's right) to +pi/2 (the camera's side).
SPOTLIGHT_WORDS: tuple[str, ...] = ("back", "right", "front")

# The classes of the thesis, in index order (Table 4.1). The mesh library maps each to a mesh
# and to the word the sentences use (which differs where a mesh had to be substituted).
THESIS_SHAPES: tuple[str, ...] = ("teapot", "hare", "dragon", "cow", "armadillo", "horse", "head")

COLOUR_MODES = ("causal", "independent")
HUE_MODES = ("upstream", "wrap")


def factors_of(modality: Modality) -> tuple[Factor, ...]:
    """Factors of the default design observed in ``modality`` (the published
    ``latents_<modality>.csv`` columns); a dataset's own: ``datagen.design.design_of(config)``."""
    return tuple(f for f in FACTORS if modality in f.modalities and f.name not in OPTIONAL_FACTORS)


def factor(name: str) -> Factor:
    try:
        return FACTOR_BY_NAME[name]
    except KeyError:
        known = ", ".join(FACTOR_BY_NAME)
        raise KeyError(f"unknown factor {name!r}; known factors: {known}") from None


def _hsv(h: float, s: float, v: float, hue_mode: str) -> tuple[float, float, float]:
    if hue_mode == "wrap":
        h = h % 1.0
    return colorsys.hsv_to_rgb(h, s, v)


@dataclass(frozen=True)
class SceneParameters:
    """What the renderer needs for one image, derived from the image latents only."""

    shape: int
    location: tuple[float, float, float]
    rotation_euler: tuple[float, float, float]
    object_rgb: tuple[float, float, float]
    spotlight_theta: float
    spotlight_rgb: tuple[float, float, float]
    background_rgb: tuple[float, float, float]
    material: str = "rubber"


def object_rgb(hue: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(hue, 1.0, 1.0)


def spotlight_rgb(v: float, hue_mode: str = "upstream") -> tuple[float, float, float]:
    return _hsv((v - 0.5) / 2, 0.8, 1.0, hue_mode)


def background_rgb(v: float, hue_mode: str = "upstream") -> tuple[float, float, float]:
    return _hsv((v - 0.5) / 2, 0.6, 1.0, hue_mode)


def scene_parameters(latents: dict, hue_mode: str = "upstream") -> SceneParameters:
    """Map image latents to Blender quantities (SPEC 2.1, last column)."""
    if hue_mode not in HUE_MODES:
        raise ValueError(f"hue_mode must be one of {HUE_MODES}, got {hue_mode!r}")
    half_pi = math.pi / 2
    return SceneParameters(
        shape=int(latents["object_shape"]),
        # Image horizontal is Blender y, image vertical is Blender x (camera at (8, 0, 8)).
        location=(
            float(latents["object_ypos"]) * 3 - 3,
            float(latents["object_xpos"]) * 3 - 3,
            float(latents["object_zpos"]),
        ),
        rotation_euler=tuple(
            float(latents[n]) * math.pi - half_pi
            for n in ("object_alpharot", "object_betarot", "object_gammarot")
        ),
        object_rgb=object_rgb(float(latents["object_color"])),
        spotlight_theta=float(latents["spotlight_pos"]) * math.pi - half_pi,
        spotlight_rgb=spotlight_rgb(float(latents["spotlight_color"]), hue_mode),
        background_rgb=background_rgb(float(latents["background_color"]), hue_mode),
    )
