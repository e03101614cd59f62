"""Contact sheet: N samples of a split with their sentences underneath, as one PNG."""

from __future__ import annotations

import textwrap
from pathlib import Path

from datagen import io


def read_samples(root: Path, split: str, n: int) -> list[dict]:
    manifest = io.read_manifest(root)
    if split not in manifest["counts"]:
        raise io.DatasetError(f"{root}: has no split {split!r}; it has {sorted(manifest['counts'])}")
    out: list[dict] = []
    for entry in manifest["shards"].get(split, []) or _unlisted(root, split):
        for rec in io.read_shard(Path(root) / entry["file"]):
            out.append(rec)
            if len(out) == n:
                return out
    return out


def _unlisted(root: Path, split: str) -> list[dict]:
    return [{"file": f"{split}/{p.name}"} for p in sorted((Path(root) / split).glob("shard-*.tar"))]


def contact_sheet(records: list[dict], out: Path, columns: int = 4, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        raise io.DatasetError("no samples to show")
    rows = -(-len(records) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 4.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, rec in zip(axes.flat, records):
        ax.imshow(io.decode_png(rec["png"], rec["key"]), interpolation="nearest")
        meta = rec["json"]
        caption = "\n".join(textwrap.wrap(rec["txt"], 38))
        ax.set_title(f"{meta['split']} #{meta['index']}", fontsize=8, color="0.4")
        ax.text(0.5, -0.03, caption, transform=ax.transAxes, ha="center", va="top", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
