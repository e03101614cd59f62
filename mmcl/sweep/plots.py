"""Fig. 8.3 (score vs encoding size) and Fig. 8.4 (validation loss vs encoding size, elbow marked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_fig8_3(summary: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = list(summary["scores"])
    fig, axes = plt.subplots(1, len(reps), figsize=(5.2 * len(reps), 4.2), squeeze=False)
    for ax, rep in zip(axes[0], reps, strict=True):
        curves = summary["scores"][rep]
        for name, c in curves.items():
            mean, std = np.array(c["mean"]), np.array(c["std"])
            line = ax.plot(c["sizes"], mean, marker="o", markersize=3, label=name)[0]
            ax.fill_between(c["sizes"], mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("encoding size")
        metrics = {c["metric"] for c in curves.values()}
        ax.set_ylabel(
            " / ".join(sorted({"r2": "R² (kernel ridge)", "accuracy": "accuracy (MLP)"}[m] for m in metrics))
        )
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(rep)
        legend = ax.legend(fontsize=7, loc="best")
        for text, c in zip(legend.get_texts(), curves.values(), strict=True):
            if c["role"] == "content":
                text.set_fontweight("bold")
            elif c["role"] == "style":
                text.set_fontstyle("italic")
    fig.suptitle(title + " — content bold, style italic; mean ± 1 std over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_fig8_4(summary: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vl = summary["val_loss"]
    fig, ax = plt.subplots(figsize=(5, 3.8))
    mean, std = np.array(vl["mean"]), np.array(vl["std"])
    ax.errorbar(vl["sizes"], mean, yerr=std, marker="o", capsize=3, label="validation loss (Eq. 8.2)")
    if vl["elbow"] is not None:
        i = vl["sizes"].index(vl["elbow"])
        ax.scatter(
            [vl["elbow"]],
            [mean[i]],
            s=160,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            label=f"elbow: encoding size {vl['elbow']}",
            zorder=3,
        )
        ax.axvline(vl["elbow"], color="red", linestyle=":", linewidth=1)
    ax.set_xlabel("encoding size")
    ax.set_ylabel("validation loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
