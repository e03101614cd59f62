"""Draw docs/architecture.png, the data-flow picture the README embeds (matplotlib only).

    python docs/draw_architecture.py

Boxes are packages or modules, arrows are what flows between them (files or library calls);
every arrow is an import or a file read that exists in the code (tests/test_layout.py checks the
import graph has no cycles and that mmcl never imports datagen).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "architecture.png"

# name: (x, y, label, colour); x, y are box centres on a 19 x 9 canvas
BOXES = {
    "factors": (1.6, 7.6, "factors.py · design.py\nfactor table (Table 4.1)", "#dbe9f6"),
    "sampling": (1.6, 6.1, "sampling.py\nlatents per (seed, split, index)", "#dbe9f6"),
    "text": (1.6, 4.6, "text.py\ntemplates, palettes", "#dbe9f6"),
    "meshes": (4.8, 7.6, "meshes.py\nDebian / user meshes", "#dbe9f6"),
    "render": (4.8, 6.1, "render.py\nCycles, scene built once", "#dbe9f6"),
    "stages": (4.8, 4.6, "stages.py · ShardWorker\nsample -> render -> record", "#dbe9f6"),
    "backends": (4.8, 3.1, "pipeline.py: local, pinned\nworkers; distributed.py: Ray", "#dbe9f6"),
    "shards": (7.9, 3.1, "ROOT/{train,val,test}/\nshard-*.tar, manifest.json", "#fff2cc"),
    "data": (10.8, 4.8, "manifest.py · data.py\nDataModule (webdataset)", "#e2f0d9"),
    "plumbing": (10.8, 1.6, "shared: io optim checkpoint\nprecision cli machine", "#eeeeee"),
    "train": (14.0, 7.6, "train/ · mmcl fit\nencoders, InfoNCE, DDP", "#e2f0d9"),
    "dmvae": (14.0, 4.8, "dmvae/ · mmcl dmvae: own\nstage 1, stage 2, GMM, eval", "#e2f0d9"),
    "simulation": (14.0, 1.6, "simulation/ · mmcl simulate\nTable 8.1, synthetic data", "#e2f0d9"),
    "embed": (17.2, 7.6, "embed.py · mmcl embed", "#e2f0d9"),
    "probing": (17.2, 4.8, "probing/ · mmcl probe\nlinear, kernel ridge, MLP", "#e2f0d9"),
    "sweep": (17.2, 1.6, "sweep/ · mmcl sweep\nFig. 8.3 / 8.4", "#e2f0d9"),
}
HALF_W, HALF_H = 1.35, 0.5
ARROWS = [
    ("factors", "sampling", ""),
    ("sampling", "text", ""),
    ("sampling", "stages", ""),
    ("text", "stages", ""),
    ("meshes", "render", ""),
    ("render", "stages", ""),
    ("stages", "backends", ""),
    ("backends", "shards", "writes"),
    ("shards", "data", "reads"),
    ("data", "train", ""),
    ("train", "embed", "checkpoint"),
    ("embed", "probing", "embeddings"),
    ("data", "dmvae", ""),
    ("dmvae", "probing", "c, m"),
    ("simulation", "probing", ""),
    ("sweep", "train", ""),
    ("sweep", "simulation", "runs"),
]


def edge(x: float, y: float, dx: float, dy: float) -> tuple[float, float]:
    """Where the ray from a box centre (x, y) along (dx, dy) leaves the box."""
    t = min(HALF_W / abs(dx) if dx else float("inf"), HALF_H / abs(dy) if dy else float("inf"))
    return x + t * dx, y + t * dy


def main() -> None:
    fig, ax = plt.subplots(figsize=(19, 9))
    ax.set_xlim(0, 19)
    ax.set_ylim(0, 9)
    ax.axis("off")
    for x0, x1, label, colour in ((0.1, 6.5, "datagen (Blender as a Python module)", "#dbe9f6"),
                                  (9.3, 18.7, "mmcl (PyTorch Lightning); never imports datagen", "#e2f0d9")):  # fmt: skip
        ax.add_patch(
            FancyBboxPatch((x0, 0.5), x1 - x0, 8.0, boxstyle="round,pad=0.05", fc="none", ec=colour, lw=3)
        )
        ax.text((x0 + x1) / 2, 8.7, label, ha="center", va="center", fontsize=12, weight="bold")
    for x, y, label, colour in BOXES.values():
        ax.add_patch(
            FancyBboxPatch(
                (x - HALF_W, y - HALF_H),
                2 * HALF_W,
                2 * HALF_H,
                boxstyle="round,pad=0.05",
                fc=colour,
                ec="#555555",
            )
        )
        ax.text(x, y, label, ha="center", va="center", fontsize=9)
    for a, b, label in ARROWS:
        (xa, ya, *_), (xb, yb, *_) = BOXES[a], BOXES[b]
        start, end = edge(xa, ya, xb - xa, yb - ya), edge(xb, yb, xa - xb, ya - yb)
        ax.annotate("", xy=end, xytext=start,
                    arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.3, shrinkA=3, shrinkB=3))  # fmt: skip
        if label:
            ax.text(
                (xa + xb) / 2,
                (ya + yb) / 2 + 0.12,
                label,
                ha="center",
                fontsize=8,
                style="italic",
                color="#333333",
            )
    ax.text(9.5, 0.15, "The only contract between the two packages is the shard files and manifest.json (docs/formats.md).",
            ha="center", fontsize=9)  # fmt: skip
    fig.savefig(OUT, dpi=80, bbox_inches="tight")
    plt.close(fig)
    print(OUT)


if __name__ == "__main__":
    main()
