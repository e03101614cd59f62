"""Import Blender's Python module with one clear sentence when it is missing (kubric style)."""

from __future__ import annotations

import sys


class BlenderUnavailable(ImportError):
    pass


def _drop_blender_script_paths() -> None:
    """A process spawned by one that had imported bpy inherits Blender's script folders on
    sys.path; one of them holds the pure-Python half of ``bpy``, which would shadow the real
    module. Drop them so the import below finds the installed package."""
    if "bpy" in sys.modules:
        return
    sys.path[:] = [p for p in sys.path if not _is_blender_script_path(p)]


def _is_blender_script_path(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    return "scripts" in parts and ("bpy" in parts or "blender" in parts)


def import_bpy():
    _drop_blender_script_paths()
    try:
        import bpy  # noqa: PLC0415 - imported lazily: only rendering needs it
    except ImportError as exc:
        py = ".".join(map(str, sys.version_info[:2]))
        raise BlenderUnavailable(
            f"cannot import bpy (Blender as a Python module): {exc}. Rendering needs "
            f"`pip install bpy==5.0.1 'numpy<2'` on Python 3.11 (this is Python {py}), and the "
            "system libraries listed under Troubleshooting in README.md "
            "(libegl1 libxi6 libxkbcommon0 libsm6 libxrender1 libxxf86vm1 libxfixes3 libgl1)"
        ) from exc
    return bpy
