"""Atomic file writers for everything mmcl writes (reports, JSON, CSV, figures, arrays, checkpoints).

Each writer writes a hidden temporary beside the target (``.NAME.tmp-PID``, same suffix so that
matplotlib and numpy keep the format), flushes it to disk and renames it over the target
(``os.replace``, atomic within one filesystem): a killed run leaves the old file or the new one,
never half of one. Parent folders are created.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any


def temporary(path: Path) -> Path:
    """The hidden temporary a writer uses for ``path`` (keeps its suffix)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def _commit(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_with(path: str | Path, write) -> None:
    """Call ``write(tmp)`` and move the result over ``path``; on failure leave ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        write(tmp)
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy arrays and scalars, tensors
        return o.tolist()
    return str(o)  # Path and anything else: its text


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """``obj`` as JSON, ending in a newline; numpy values become lists/numbers, paths strings."""
    atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def write_csv(path: str | Path, rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    """Rows of dicts as CSV (``\\n`` line ends); columns ``fields`` or every key in first-seen order."""
    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in fields})
    atomic_write_text(path, buf.getvalue())


def save_figure(fig, path: str | Path, **savefig: Any) -> None:
    """``fig.savefig(path, **savefig)``, atomically (the caller closes the figure)."""
    _write_with(path, lambda tmp: fig.savefig(tmp, **savefig))


def save_npz(path: str | Path, **arrays: Any) -> None:
    """``np.savez(path, **arrays)``, atomically (``path`` should end in ``.npz``)."""
    import numpy as np

    _write_with(path, lambda tmp: np.savez(tmp, **arrays))


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically."""
    import torch

    _write_with(path, lambda tmp: torch.save(obj, tmp))
