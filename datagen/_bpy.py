"""Import Blender's Python module with one clear sentence when it is missing (kubric style)."""

from __future__ import annotations

import sys


class BlenderUnavailable(ImportError):
    pass


def import_bpy():
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
