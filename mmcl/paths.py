"""Paths written into output files: relative to the folder of the file that names them.

Reports, metrics and sample indexes get committed and shared; a path of the machine they were
made on (``/home/someone/...``) means nothing elsewhere, while ``../stage2/checkpoints/last.ckpt``
next to the file still finds the thing when the whole run folder is moved or copied.
"""

from __future__ import annotations

import os
from pathlib import Path


def relative_inside(path: str | Path, root: str | Path) -> str:
    """``path`` (resolved) relative to ``root`` when it lies inside it, else as an absolute path:
    what scripts write for their own inputs and outputs in the repository."""
    path, root = Path(path).resolve(), Path(root).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def relative_to_folder(path: str | Path, folder: str | Path) -> str:
    """``path`` relative to ``folder`` (both resolved), with '/' separators."""
    rel = os.path.relpath(Path(path).resolve(), Path(folder).resolve())
    return Path(rel).as_posix()
