"""The mesh library: Debian-built defaults, normalisation, user meshes in every format."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datagen.meshes import DEFAULT_SHAPES, MAX_EXTENT, MeshError, load_library, normalise, read_off, register

REPO = Path(__file__).resolve().parents[2]
CUBE_OBJ = (
    "\n".join(
        [f"v {x} {y} {z}" for x in (0, 4) for y in (0, 2) for z in (0, 1)]
        + ["f 1 2 4 3", "f 5 7 8 6", "f 1 5 6 2", "f 3 4 8 7", "f 1 3 7 5", "f 2 6 8 4"]
    )
    + "\n"
)


def test_default_library_has_seven_normalised_classes(mesh_library):
    assert set(DEFAULT_SHAPES) <= set(mesh_library.entries)
    for name in DEFAULT_SHAPES:
        m = mesh_library.mesh(name)
        lo, hi = m.vertices.min(0), m.vertices.max(0)
        assert np.ptp(m.vertices, axis=0).max() == pytest.approx(MAX_EXTENT, rel=1e-5)
        assert np.allclose((lo + hi) / 2, 0, atol=1e-5)
        assert len(m.triangles) > 500, name
    assert mesh_library.entries["elk"]["substitute_for"] == "horse"
    assert mesh_library.entries["teapot"]["source"].startswith("debian blender-data")
    assert "bunny00.off" in mesh_library.entries["hare"]["source"]


def test_off_parser_and_normalise():
    v, t = read_off("OFF\n# comment\n4 1 0\n0 0 0\n2 0 0\n2 2 0\n0 2 0\n4 0 1 2 3\n", "sq.off")
    assert t.tolist() == [[0, 1, 2], [0, 2, 3]]
    m = normalise(v, t, "sq.off")
    assert m.vertices.min() == -1 and m.vertices.max() == 1
    with pytest.raises(MeshError, match="sq.off: face refers to vertex 7"):
        normalise(v, np.array([[0, 1, 7]]), "sq.off")


@pytest.mark.parametrize("fmt", ["obj", "stl", "ply"])
def test_register_user_meshes_through_blender_importers(tmp_path, fmt):
    obj = tmp_path / "box.obj"
    obj.write_text(CUBE_OBJ)
    path = obj
    if fmt != "obj":  # write the other formats with Blender's own exporters
        path = tmp_path / f"box.{fmt}"
        code = (
            f"import bpy; bpy.ops.wm.read_factory_settings(use_empty=True); "
            f"bpy.ops.wm.obj_import(filepath={str(obj)!r}); "
            f"bpy.ops.wm.{fmt}_export(filepath={str(path)!r})"
        )
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    entry = register("box", path, tmp_path / "lib", word="long box")
    m = load_library(tmp_path / "lib").mesh("box")
    assert entry["word"] == "long box" and len(m.triangles) == 12
    # Blender's importers turn Y-up files into its Z-up frame; sizes are kept, the long axis stays x.
    extent = np.ptp(m.vertices, axis=0)
    assert extent[0] == pytest.approx(2.0) and sorted(extent) == pytest.approx([0.5, 1.0, 2.0], abs=1e-5)


def test_register_a_blend_file_like_the_original_shapes(tmp_path):
    blend = tmp_path / "Shape5.blend"
    code = (
        "import bpy; bpy.ops.wm.read_factory_settings(use_empty=True); "
        "bpy.ops.mesh.primitive_monkey_add(); bpy.context.object.name = 'Horse'; "
        "bpy.ops.mesh.primitive_cube_add(location=(9, 9, 9)); "
        f"bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    register("horse", blend, tmp_path / "lib", object_name="Horse")
    m = load_library(tmp_path / "lib").mesh("horse")
    assert len(m.triangles) == 968  # Suzanne, without the cube
    with pytest.raises(MeshError, match="no a mesh object named 'Zebra'|no .*'Zebra'"):
        register("zebra", blend, tmp_path / "lib", object_name="Zebra")


def test_bad_names_and_missing_files(tmp_path):
    with pytest.raises(MeshError, match="mesh file not found"):
        register("x", tmp_path / "nope.obj", tmp_path / "lib")
    (tmp_path / "a.fbx").write_text("")
    with pytest.raises(MeshError, match="unsupported mesh format '.fbx'"):
        register("x", tmp_path / "a.fbx", tmp_path / "lib")
    (tmp_path / "t.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(MeshError, match="shape name 'Bad Name'"):
        register("Bad Name", tmp_path / "t.off", tmp_path / "lib")


def test_library_detects_tampered_files(tmp_path):
    (tmp_path / "t.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    register("tri", tmp_path / "t.off", tmp_path / "lib")
    np.savez(
        tmp_path / "lib" / "tri.npz", vertices=np.zeros((3, 3), np.float32), triangles=np.array([[0, 1, 2]])
    )
    with pytest.raises(MeshError, match="do not match library.json"):
        load_library(tmp_path / "lib").mesh("tri")
