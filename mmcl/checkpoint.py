"""Opening checkpoint files without running code, with one-sentence errors.

Every reader of a ``.ckpt``/``.pt`` in ``mmcl`` (``mmcl embed``, the DMVAE stages and its
factor classifier, the simulation's resume) goes through :func:`load_checkpoint`:
``torch.load(..., weights_only=True)`` unpickles tensors, numbers, strings and plain
containers only, so a file someone shared cannot run whatever a pickle in it would. A file
holding anything else is refused with a sentence naming it; nothing from it has run by then.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, refused or of the wrong kind; the message names it."""


def load_checkpoint(
    path: str | Path,
    what: str,
    map_location: str | torch.device = "cpu",
    error: type[Exception] = CheckpointError,
) -> dict:
    """The checkpoint at ``path`` as a dict of plain data and tensors; ``what`` names it in
    errors ('stage-1 checkpoint', 'factor classifier'); ``error`` is the exception class raised."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message opens with advice to load unsafely; name only what was refused
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", text, re.IGNORECASE)
        refused = f": it asks for {found.group(1).rstrip('.,;')}" if found else ""
        raise error(
            f"{path}: {what} refused, it holds objects other than tensors and plain data, and "
            f"loading it could run code{refused}"
        ) from None
    except Exception as exc:  # zip/IO errors have many types
        raise error(f"{path}: not a readable PyTorch {what} ({str(exc).splitlines()[0]})") from None
    if not isinstance(blob, dict):
        raise error(f"{path}: not a {what} (holds a {type(blob).__name__}, expected a dict)")
    return blob


def rebuild_module(
    cls: type[torch.nn.Module],
    hparams: dict,
    state_dict: dict,
    path: str | Path,
    what: str,
    error: type[Exception] = CheckpointError,
) -> torch.nn.Module:
    """``cls(**hparams)`` with ``state_dict`` loaded, in eval mode; a mismatch (an argument the
    class no longer takes, a missing or misshapen weight) is one sentence naming ``path``."""
    try:
        module = cls(**hparams)
        module.load_state_dict(state_dict)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise error(f"{path}: cannot rebuild the {what} ({exc})") from None
    return module.eval()
