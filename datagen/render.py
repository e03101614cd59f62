"""The Blender scene of Multimodal3DIdent, built once per worker (SPEC 2.3).

Upstream numbers (Blender 2.90, Cycles): camera at (8, 0, 8) tracking the origin with a 35 mm
lens on a 50 mm sensor; a sun (0.5) and an area light (0, 0, 7; 39.27 W; size 1); no world
light and the "Standard" view transform; the object scaled by 1.5 with a rubber material; a
1500-unit ground plane at z = -(max object dimension) in the background colour; a 3000 W spot
(radius 0.5, cone 35 deg, blend 0.1) on a semicircle of radius 4 at height 6 + max object
dimension, tracking the object. Cycles renders direct light only (max bounces 0) with glossy
blur 2.0.

The upstream procedure reloaded the scene and re-appended the mesh for every image. Here the
scene and all meshes are built once; per image only the object's mesh, pose and colours, the
spotlight and the Cycles seed change (see docs/benchmarks.md for what that saves).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from datagen._bpy import import_bpy
from datagen.config import RenderSettings
from datagen.factors import SceneParameters
from datagen.meshes import Mesh

OBJECT_SCALE = 1.5
SUN_ENERGY = 0.5
# Blender's default "Light" object orientation, which upstream turned into the sun.
SUN_ROTATION = (0.6503279805183411, 0.055217113345861435, 1.8663908243179321)
AREA_LOCATION = (0.0, 0.0, 7.0)
AREA_ENERGY = 39.27
SPOT_ENERGY = 3000.0
SPOT_RADIUS = 0.5
SPOT_CONE_DEG = 35.0
SPOT_BLEND = 0.1
SPOT_ORBIT = 4.0
SPOT_HEIGHT = 6.0
CAMERA_LOCATION = (8.0, 0.0, 8.0)
CAMERA_LENS_MM = 35.0
CAMERA_SENSOR_MM = 50.0
GROUND_SIZE = 1500.0


class RenderError(RuntimeError):
    pass


def _rubber(bpy, name: str):
    """Diffuse-dominant, low-gloss material (the "rubber" of CLEVR-style scenes)."""
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5 creates materials without nodes
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.9
    bsdf.inputs["Specular IOR Level"].default_value = 0.1
    bsdf.inputs["Metallic"].default_value = 0.0
    return mat, bsdf


def _metal(bpy, name: str):
    """Metallic, low roughness (CLEVR's metal): with direct light only (max bounces 0 and no
    world light) it shows its colour in the highlights of the three lights."""
    mat, bsdf = _rubber(bpy, name)
    bsdf.inputs["Roughness"].default_value = 0.35
    bsdf.inputs["Metallic"].default_value = 1.0
    bsdf.inputs["Specular IOR Level"].default_value = 0.5
    return mat, bsdf


MATERIAL_BUILDERS = {"rubber": _rubber, "metal": _metal}


def _mesh_datablock(bpy, name: str, mesh: Mesh):
    data = bpy.data.meshes.new(name)
    n_v, n_t = len(mesh.vertices), len(mesh.triangles)
    data.vertices.add(n_v)
    data.vertices.foreach_set("co", mesh.vertices.reshape(-1).astype(np.float32))
    data.loops.add(3 * n_t)
    data.loops.foreach_set("vertex_index", mesh.triangles.reshape(-1).astype(np.int32))
    data.polygons.add(n_t)
    data.polygons.foreach_set("loop_start", np.arange(0, 3 * n_t, 3, dtype=np.int32))
    data.polygons.foreach_set("loop_total", np.full(n_t, 3, dtype=np.int32))
    data.update(calc_edges=True)
    data.validate(verbose=False)
    data.polygons.foreach_set("use_smooth", np.ones(len(data.polygons), dtype=bool))
    return data


def configure_device(bpy, scene, device: str) -> str:
    """Select the Cycles device; ``gpu`` takes OptiX, else CUDA, else fails clearly."""
    if device == "cpu":
        scene.cycles.device = "CPU"
        return "CPU"
    if device != "gpu":
        raise RenderError(f"device must be 'cpu' or 'gpu', got {device!r}")
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        prefs.refresh_devices()
        devices = [d for d in prefs.devices if d.type == backend]
        if devices:
            for d in prefs.devices:
                d.use = d.type == backend
            scene.cycles.device = "GPU"
            return backend
    raise RenderError(
        "--device gpu: Cycles finds no GPU (OptiX, CUDA, HIP, oneAPI or Metal) on this machine; "
        "use --device cpu or install the GPU driver"
    )


def probe_device(device: str) -> str:
    """Import Blender and check that ``device`` can render; returns the Cycles backend."""
    bpy = import_bpy()
    return configure_device(bpy, bpy.context.scene, device)


class SceneRenderer:
    """Build the scene once; ``render(params, seed)`` returns an RGB uint8 image."""

    def __init__(self, settings: RenderSettings, meshes: list[Mesh], device: str = "cpu", threads: int = 0):
        self.settings = settings
        bpy = self.bpy = import_bpy()
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = self.scene = bpy.context.scene
        self._tmpdir = tempfile.TemporaryDirectory(prefix="mmcl3d-render-", dir=_fast_tmp())
        self._out = Path(self._tmpdir.name) / "frame.png"

        self.device = configure_device(bpy, scene, device) if device else "CPU"
        scene.render.engine = "CYCLES"
        self.apply(settings, threads)

        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        world = bpy.data.worlds.new("World")
        if world.node_tree is None:
            world.use_nodes = True
        world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
        scene.world = world

        origin = bpy.data.objects.new("Origin", None)
        scene.collection.objects.link(origin)

        cam_data = bpy.data.cameras.new("Camera")
        cam_data.type = "PERSP"
        cam_data.lens = CAMERA_LENS_MM
        cam_data.sensor_width = CAMERA_SENSOR_MM
        cam = bpy.data.objects.new("Camera", cam_data)
        cam.location = CAMERA_LOCATION
        self._track(cam, origin)
        scene.collection.objects.link(cam)
        scene.camera = cam

        sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
        sun.data.energy = SUN_ENERGY
        sun.rotation_euler = SUN_ROTATION
        scene.collection.objects.link(sun)
        area = bpy.data.objects.new("Area", bpy.data.lights.new("Area", "AREA"))
        area.data.energy = AREA_ENERGY
        area.data.size = 1.0
        area.location = AREA_LOCATION
        scene.collection.objects.link(area)

        self.meshes = [_mesh_datablock(bpy, f"shape{i}", m) for i, m in enumerate(meshes)]
        # Blender's obj.dimensions (local bounding box x scale, rotation ignored) is only
        # updated by a depsgraph evaluation, so compute it from the vertices instead.
        self.max_dims = [float(np.ptp(m.vertices, axis=0).max()) * OBJECT_SCALE for m in meshes]
        self.object_material, self.object_bsdf = _rubber(bpy, "ObjectRubber")
        self.materials = {"rubber": (self.object_material, self.object_bsdf)}  # others built when asked for
        for data in self.meshes:
            data.materials.append(self.object_material)
        obj = self.obj = bpy.data.objects.new("Object", self.meshes[0])
        obj.scale = (OBJECT_SCALE,) * 3
        scene.collection.objects.link(obj)

        ground_data = bpy.data.meshes.new("Ground")
        h = GROUND_SIZE / 2
        ground_data.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
        self.ground_material, self.ground_bsdf = _rubber(bpy, "GroundRubber")
        ground_data.materials.append(self.ground_material)
        self.ground = bpy.data.objects.new("Ground", ground_data)
        scene.collection.objects.link(self.ground)

        spot_data = bpy.data.lights.new("Spot", "SPOT")
        spot_data.energy = SPOT_ENERGY
        spot_data.shadow_soft_size = SPOT_RADIUS
        spot_data.spot_size = math.radians(SPOT_CONE_DEG)
        spot_data.spot_blend = SPOT_BLEND
        self.spot = bpy.data.objects.new("Spotlight", spot_data)
        self._track(self.spot, obj)
        scene.collection.objects.link(self.spot)

    def apply(self, s: RenderSettings, threads: int = 0) -> None:
        """Set resolution and Cycles settings (also between renders, e.g. in benchmarks)."""
        self.settings = s
        scene = self.scene
        scene.render.resolution_x = scene.render.resolution_y = s.resolution
        scene.render.resolution_percentage = 100
        scene.render.film_transparent = False
        scene.render.use_persistent_data = True
        if threads:
            scene.render.threads_mode = "FIXED"
            scene.render.threads = threads
        cyc = scene.cycles
        cyc.samples = s.samples
        cyc.use_adaptive_sampling = s.use_adaptive_sampling
        cyc.adaptive_threshold = s.adaptive_threshold
        cyc.use_denoising = s.denoise
        cyc.denoiser = s.denoiser
        cyc.denoising_quality = s.denoise_quality
        cyc.denoising_prefilter = s.denoise_prefilter
        cyc.max_bounces = s.max_bounces
        cyc.blur_glossy = s.blur_glossy
        cyc.use_light_tree = s.light_tree
        cyc.filter_width = s.filter_width
        scene.render.image_settings.file_format = "PNG"
        scene.render.image_settings.color_mode = "RGB"
        scene.render.image_settings.color_depth = "8"
        scene.render.image_settings.compression = 0
        scene.render.filepath = str(self._out)

    @staticmethod
    def _track(obj, target) -> None:
        c = obj.constraints.new("TRACK_TO")
        c.target = target
        c.track_axis = "TRACK_NEGATIVE_Z"
        c.up_axis = "UP_Y"

    def set_scene(self, p: SceneParameters, seed: int) -> None:
        if not 0 <= p.shape < len(self.meshes):
            raise RenderError(f"object_shape {p.shape} out of range: the scene has {len(self.meshes)} shapes")
        obj = self.obj
        obj.data = self.meshes[p.shape]
        obj.location = p.location
        obj.rotation_euler = p.rotation_euler
        if p.material not in self.materials:
            if p.material not in MATERIAL_BUILDERS:
                raise RenderError(
                    f"material {p.material!r} unknown; materials: {', '.join(MATERIAL_BUILDERS)}"
                )
            self.materials[p.material] = MATERIAL_BUILDERS[p.material](
                self.bpy, f"Object{p.material.title()}"
            )
        material, bsdf = self.materials[p.material]
        if obj.data.materials[0] != material:
            obj.data.materials[0] = material
        bsdf.inputs["Base Color"].default_value = (*p.object_rgb, 1.0)
        self.ground_bsdf.inputs["Base Color"].default_value = (*p.background_rgb, 1.0)
        max_dim = self.max_dims[p.shape]
        self.ground.location = (0.0, 0.0, -max_dim)
        self.spot.location = (
            SPOT_ORBIT * math.sin(p.spotlight_theta),
            SPOT_ORBIT * math.cos(p.spotlight_theta),
            SPOT_HEIGHT + max_dim,
        )
        self.spot.data.color = p.spotlight_rgb
        self.scene.cycles.seed = int(seed)

    def render(self, p: SceneParameters, seed: int) -> np.ndarray:
        from PIL import Image

        self.set_scene(p, seed)
        self.bpy.ops.render.render(write_still=True)
        with Image.open(self._out) as im:
            return np.asarray(im.convert("RGB"))

    @property
    def output_path(self) -> Path:
        """The PNG file each render writes (in the renderer's own temporary folder)."""
        return self._out

    def close(self) -> None:
        self._tmpdir.cleanup()


def _fast_tmp() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
