"""The mesh library: one normalised triangle mesh per shape class (SPEC 2.4).

The thesis' ``Shape*.blend`` files are not public. ``build_library`` assembles the seven
classes from Debian packages reachable through the package registry, without root:

* ``libcgal-demo`` (``data.tar.gz``: ``data/meshes/*.off``): hare (Stanford bunny), dragon,
  cow, armadillo, head, and the quadruped that stands in for the missing horse;
* ``blender-data`` (Blender's "extra objects" add-on): its teapot operator's Bezier patches
  give the Utah teapot.

Every mesh is centred (bounding-box centre) and scaled to a common maximum extent before the
renderer applies the upstream 1.5 scale. Users can register their own meshes (.obj, .ply, .off,
.stl, .blend such as the original ``Shape*.blend``) under any class name.

The library lives outside the repository (``$MMCL3D_CACHE`` or ``~/.cache/mmcl3d``) as one
``.npz`` per class plus ``library.json`` with the source and sha256 of each.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datagen.io import atomic_write_bytes

MAX_EXTENT = 2.0  # every mesh fits a [-1, 1] cube before the renderer's 1.5 scale
MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".blend")

# The horse of the thesis has no public mesh; an elk is the nearest quadruped in libcgal-demo
# (long legs, long neck, similar proportions) and the sentences call it what it is.
DEFAULT_SHAPES: tuple[str, ...] = ("teapot", "hare", "dragon", "cow", "armadillo", "elk", "head")
SUBSTITUTES: dict[str, str] = {"elk": "horse"}

CGAL_SOURCES: dict[str, str] = {
    "hare": "data/meshes/bunny00.off",
    "dragon": "data/meshes/ChineseDragon-10kv.off",
    "cow": "data/meshes/cow.off",
    "armadillo": "data/meshes/armadillo.off",
    "head": "data/meshes/head.off",
    "elk": "data/meshes/elk.off",
}
TEAPOT_SCRIPT = "usr/share/blender/scripts/addons/add_mesh_extra_objects/add_mesh_teapot.py"
CGAL_DATA = "usr/share/doc/libcgal-dev/data.tar.gz"


class MeshError(RuntimeError):
    """A mesh file or the mesh library is missing or unusable."""


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # (n, 3) float32, normalised
    triangles: np.ndarray  # (m, 3) int32

    def digest(self) -> str:
        h = hashlib.sha256(self.vertices.astype("<f4").tobytes())
        h.update(self.triangles.astype("<i4").tobytes())
        return h.hexdigest()


def cache_dir() -> Path:
    root = os.environ.get("MMCL3D_CACHE") or Path.home() / ".cache" / "mmcl3d"
    return Path(root)


def library_dir(root: Path | None = None) -> Path:
    return Path(root) if root is not None else cache_dir() / "meshes"


# ----------------------------------------------------------------------------- geometry
def normalise(vertices: np.ndarray, triangles: np.ndarray, source: str) -> Mesh:
    """Check, centre and scale a mesh; ``source`` names the file in any error."""
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 3:
        raise MeshError(f"{source}: expected at least 3 vertices with x, y, z; got shape {v.shape}")
    if t.ndim != 2 or t.shape[1] != 3 or len(t) < 1:
        raise MeshError(f"{source}: expected at least one triangle; got shape {t.shape}")
    if not np.isfinite(v).all():
        raise MeshError(f"{source}: vertex coordinates contain NaN or infinity")
    if t.min() < 0 or t.max() >= len(v):
        raise MeshError(f"{source}: face refers to vertex {int(t.max())} but the mesh has {len(v)} vertices")
    lo, hi = v.min(axis=0), v.max(axis=0)
    extent = float((hi - lo).max())
    if extent <= 0:
        raise MeshError(f"{source}: all vertices coincide; the mesh has no extent")
    v = (v - (lo + hi) / 2) * (MAX_EXTENT / extent)
    return Mesh(v.astype(np.float32), t.astype(np.int32))


def triangulate(faces: list[list[int]]) -> np.ndarray:
    """Fan-triangulate polygons (convex quads and n-gons from OFF/teapot patches)."""
    tris = [(f[0], f[i], f[i + 1]) for f in faces for i in range(1, len(f) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def weld(vertices: np.ndarray, triangles: np.ndarray, decimals: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Merge coincident vertices (patch seams) and drop triangles that collapse."""
    _, first, inverse = np.unique(
        np.round(vertices, decimals), axis=0, return_index=True, return_inverse=True
    )
    order = np.argsort(first)
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    v = vertices[first[order]]
    t = remap[inverse.reshape(-1)[triangles]]
    keep = (t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])
    return v, t[keep]


# ----------------------------------------------------------------------------- readers
def read_off(data: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse an OFF file (``OFF`` header, counts, vertices, polygon faces)."""
    tokens = re.sub(r"#[^\n]*", " ", data).split()
    try:
        if not tokens or not tokens[0].endswith("OFF"):
            raise ValueError("the first word is not OFF")
        pos = 1
        n_v, n_f = int(tokens[pos]), int(tokens[pos + 1])
        pos += 3
        verts = np.array(tokens[pos : pos + 3 * n_v], dtype=np.float64).reshape(n_v, 3)
        pos += 3 * n_v
        faces = []
        for _ in range(n_f):
            k = int(tokens[pos])
            faces.append([int(x) for x in tokens[pos + 1 : pos + 1 + k]])
            if len(faces[-1]) != k:
                raise ValueError("file ends inside a face")
            pos += 1 + k
    except (ValueError, IndexError) as exc:
        raise MeshError(f"{source}: not a valid OFF mesh ({exc})") from None
    return verts, triangulate(faces)


def _read_with_bpy(path: Path, object_name: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Import .obj/.ply/.stl/.blend with Blender's own importers and read back world-space
    triangles."""
    from datagen._bpy import import_bpy

    bpy = import_bpy()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    suffix = path.suffix.lower()
    try:
        if suffix == ".obj":
            bpy.ops.wm.obj_import(filepath=str(path))
        elif suffix == ".ply":
            bpy.ops.wm.ply_import(filepath=str(path))
        elif suffix == ".stl":
            bpy.ops.wm.stl_import(filepath=str(path))
        elif suffix == ".blend":
            with bpy.data.libraries.load(str(path), link=False) as (src, dst):
                dst.objects = list(src.objects)
            for obj in dst.objects:
                if obj is not None:
                    bpy.context.scene.collection.objects.link(obj)
        else:
            raise MeshError(f"{path}: unsupported mesh format {suffix!r}; use one of {MESH_SUFFIXES}")
    except RuntimeError as exc:
        raise MeshError(f"{path}: Blender could not import it ({str(exc).strip()})") from None
    objs = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    if object_name is not None:
        objs = [o for o in objs if o.name == object_name]
    if not objs:
        what = f"a mesh object named {object_name!r}" if object_name else "any mesh object"
        raise MeshError(f"{path}: contains no {what}")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    all_v, all_t, offset = [], [], 0
    for obj in objs:
        ev = obj.evaluated_get(depsgraph)
        mesh = ev.to_mesh()
        mesh.calc_loop_triangles()
        v = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", v)
        v = v.reshape(-1, 3)
        m = np.array(obj.matrix_world)
        v = v @ m[:3, :3].T + m[:3, 3]
        t = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", t)
        all_v.append(v)
        all_t.append(t.reshape(-1, 3) + offset)
        offset += len(v)
        ev.to_mesh_clear()
    return np.concatenate(all_v), np.concatenate(all_t)


def read_mesh_file(path: Path, object_name: str | None = None) -> Mesh:
    path = Path(path)
    if not path.is_file():
        raise MeshError(f"{path}: mesh file not found")
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshError(f"{path}: unsupported mesh format {suffix!r}; use one of {MESH_SUFFIXES}")
    if suffix == ".off":
        v, t = read_off(path.read_text(errors="replace"), str(path))
    else:
        v, t = _read_with_bpy(path, object_name)
    return normalise(v, t, str(path))


# ----------------------------------------------------------------------------- library
@dataclass(frozen=True)
class MeshLibrary:
    root: Path
    entries: dict[str, dict]

    def mesh(self, name: str) -> Mesh:
        entry = self.entries.get(name)
        if entry is None:
            raise MeshError(
                f"shape {name!r} is not in the mesh library at {self.root}; known: "
                f"{', '.join(sorted(self.entries)) or 'none'}. Register it with "
                f"`datagen assets register {name} FILE` or build the defaults with `datagen assets`"
            )
        path = self.root / entry["file"]
        try:
            with np.load(path) as z:
                mesh = Mesh(z["vertices"], z["triangles"])
        except (OSError, KeyError, ValueError) as exc:
            raise MeshError(
                f"{path}: unreadable library mesh ({exc}); rebuild with `datagen assets --force`"
            ) from None
        if mesh.digest() != entry["sha256"]:
            raise MeshError(
                f"{path}: contents do not match library.json; rebuild with `datagen assets --force`"
            )
        return mesh

    def check(self, shapes: list[str] | tuple[str, ...]) -> None:
        missing = [s for s in shapes if s not in self.entries]
        if missing:
            raise MeshError(
                f"the mesh library at {self.root} lacks {', '.join(missing)}. "
                "Run `datagen assets` to build the default classes from Debian packages, or "
                "`datagen assets register NAME FILE` for your own meshes"
            )

    def describe(self, shapes: list[str] | tuple[str, ...]) -> list[dict]:
        self.check(shapes)
        return [{"name": s, **self.entries[s]} for s in shapes]


def load_library(root: Path | None = None) -> MeshLibrary:
    root = library_dir(root)
    index = root / "library.json"
    if not index.is_file():
        return MeshLibrary(root, {})
    try:
        entries = json.loads(index.read_text())["meshes"]
    except (ValueError, KeyError) as exc:
        raise MeshError(
            f"{index}: corrupt library index ({exc}); rebuild with `datagen assets --force`"
        ) from None
    return MeshLibrary(root, entries)


def add_to_library(
    name: str, mesh: Mesh, source: str, root: Path | None = None, word: str | None = None
) -> dict:
    """Store ``mesh`` as class ``name``; ``word`` is what sentences call it (default: name)."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise MeshError(
            f"shape name {name!r}: use lowercase letters, digits, '-' or '_', starting with a letter"
        )
    word = word or name.replace("_", " ")
    if not re.fullmatch(r"[a-z][a-z0-9 -]*", word) or '"' in word:
        raise MeshError(f"shape word {word!r}: use lowercase letters, digits, spaces or '-'")
    root = library_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.savez(buf, vertices=mesh.vertices, triangles=mesh.triangles)
    atomic_write_bytes(root / f"{name}.npz", buf.getvalue())
    lib = load_library(root)
    entry = {
        "file": f"{name}.npz",
        "word": word,
        "source": source,
        "substitute_for": SUBSTITUTES.get(name),
        "sha256": mesh.digest(),
        "n_vertices": int(len(mesh.vertices)),
        "n_triangles": int(len(mesh.triangles)),
    }
    entries = dict(lib.entries, **{name: entry})
    atomic_write_bytes(
        root / "library.json", json.dumps({"meshes": entries}, indent=2, sort_keys=True).encode()
    )
    return entry


def register(
    name: str, path: Path, root: Path | None = None, word: str | None = None, object_name: str | None = None
) -> dict:
    mesh = read_mesh_file(Path(path), object_name)
    return add_to_library(name, mesh, f"user file {Path(path).resolve()}", root, word)


# ----------------------------------------------------------------------------- Debian sources
def _deb_path(package: str, workdir: Path, deb_dir: Path | None) -> Path:
    for d in [deb_dir, os.environ.get("MMCL3D_DEB_DIR")]:
        if d:
            found = sorted(Path(d).glob(f"{package}_*.deb"))
            if found:
                return found[-1]
    if shutil.which("apt-get") is None:
        raise MeshError(
            f"cannot fetch the Debian package {package}: apt-get is not available. Download "
            f"{package}_*.deb by hand and pass its folder with --deb-dir"
        )
    cmd = ["apt-get", "download", package]
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if res.returncode != 0:
        # No package lists on a fresh machine: fetch them into a private folder (no root).
        lists = workdir / "apt-lists"
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        opt = [f"-oDir::State::Lists={lists}"]
        subprocess.run(["apt-get", *opt, "update"], cwd=workdir, capture_output=True, text=True)
        res = subprocess.run(
            ["apt-get", *opt, "download", package], cwd=workdir, capture_output=True, text=True
        )
    found = sorted(workdir.glob(f"{package}_*.deb"))
    if res.returncode != 0 or not found:
        raise MeshError(
            f"`apt-get download {package}` failed: {res.stderr.strip()[-300:]}. Download "
            f"{package}_*.deb by hand and pass its folder with --deb-dir"
        )
    return found[-1]


def _extract_deb(deb: Path, dest: Path) -> None:
    if shutil.which("dpkg") is None:
        raise MeshError(f"cannot unpack {deb}: dpkg is not available")
    res = subprocess.run(["dpkg", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if res.returncode != 0:
        raise MeshError(f"`dpkg -x {deb}` failed: {res.stderr.strip()[-300:]}")


def teapot_mesh(script: Path, resolution: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Run the teapot add-on's own Bezier patch code (it needs ``bpy``/``mathutils``)."""
    from datagen._bpy import import_bpy

    import_bpy()
    spec = importlib.util.spec_from_file_location("_mmcl3d_teapot", script)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    verts, faces = module.make_teapot("1", resolution)
    v = np.asarray([tuple(x) for x in verts], dtype=np.float64)
    return weld(v, triangulate([list(f) for f in faces]))


def build_library(
    root: Path | None = None, force: bool = False, deb_dir: Path | None = None, log=print
) -> MeshLibrary:
    """Build the default classes (DEFAULT_SHAPES) into the library; keeps existing entries."""
    lib = load_library(root)
    todo = [s for s in DEFAULT_SHAPES if force or s not in lib.entries]
    if not todo:
        log(f"mesh library complete at {lib.root}")
        return lib
    with tempfile.TemporaryDirectory(prefix="mmcl3d-debs-") as tmp:
        work = Path(tmp)
        if any(s in CGAL_SOURCES for s in todo):
            deb = _deb_path("libcgal-demo", work, deb_dir)
            log(f"unpacking {deb.name}")
            _extract_deb(deb, work / "cgal")
            data = work / "cgal" / CGAL_DATA
            if not data.is_file():
                raise MeshError(f"{deb}: has no {CGAL_DATA}")
            with tarfile.open(data) as tar:
                for name in todo:
                    if name not in CGAL_SOURCES:
                        continue
                    member = CGAL_SOURCES[name]
                    try:
                        text = tar.extractfile(member).read().decode(errors="replace")
                    except KeyError:
                        raise MeshError(f"{deb}: {CGAL_DATA} has no {member}") from None
                    v, t = read_off(text, f"{deb.name}:{member}")
                    entry = add_to_library(name, normalise(v, t, member), f"debian {deb.name}:{member}", root)
                    log(f"  {name:10s} {entry['n_vertices']:6d} vertices  <- {member}")
        if "teapot" in todo:
            deb = _deb_path("blender-data", work, deb_dir)
            log(f"unpacking {deb.name}")
            _extract_deb(deb, work / "blender")
            script = work / "blender" / TEAPOT_SCRIPT
            if not script.is_file():
                raise MeshError(f"{deb}: has no {TEAPOT_SCRIPT}")
            v, t = teapot_mesh(script)
            entry = add_to_library(
                "teapot", normalise(v, t, TEAPOT_SCRIPT), f"debian {deb.name}:{TEAPOT_SCRIPT}", root
            )
            log(
                f"  {'teapot':10s} {entry['n_vertices']:6d} vertices  <- Bezier patches of {Path(TEAPOT_SCRIPT).name}"
            )
    return load_library(root)
