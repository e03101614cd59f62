"""Shape drawn by each decoder ceiling against training steps and CPU seconds (issue 29).

    python experiments/dmvae_decoder_families/dmvae_decoder_families.py --out docs/dmvae/decoder_families \
        docs/dmvae/decoder_family_width12.json docs/dmvae/decoder_family_width12_optimal_fg4.json ...

Each argument is a JSON of `experiments/dmvae_decoder_ceiling/dmvae_decoder_ceiling.py` (a decoder handed the true factors,
its drawings of the test images judged by a classifier trained on real images). Writes
``OUT.csv`` (one row per variant and evaluated step, with the file it came from and the
classifier's accuracy on real test images, which differs between classifiers) and ``OUT.png``:
shape accuracy against steps and against the CPU seconds the run took, with the target (0.6)
and chance.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

TARGET = 0.6
FIELDS = ("variant", "step", "seconds", "shape", "x", "y", "parameters", "classifier_real_shape", "source")


def rows_of(path: Path) -> tuple[list[dict], float | None]:
    result = json.loads(path.read_text())
    real = result.get("classifier_real_test_accuracy", {}).get("object_shape")
    out = []
    for row in result["rows"]:
        # runs from before issue 29 name no variant: width and file, e.g. "width12 (ceiling_long)"
        variant = row.get("variant") or f"width{row['width']} ({path.stem.removeprefix('decoder_')})"
        acc = row["accuracy"]
        out.append({
            "variant": variant, "step": row["step"], "seconds": round(row["seconds"], 1),
            "shape": round(acc["object_shape"], 3), "x": round(acc["object_xpos"], 3), "y": round(acc["object_ypos"], 3),
            "parameters": row.get("parameters"), "classifier_real_shape": None if real is None else round(real, 3),
            "source": path.as_posix(),
        })  # fmt: skip
    return out, result.get("chance", {}).get("object_shape")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "ceilings",
        nargs="+",
        type=Path,
        help="JSONs of experiments/dmvae_decoder_ceiling/dmvae_decoder_ceiling.py",
    )
    p.add_argument("--out", type=Path, required=True, help="output stem: OUT.csv, OUT.png")
    args = p.parse_args()
    rows, chance = [], None
    for path in args.ceilings:
        if not path.is_file():
            raise SystemExit(
                f"{path}: no such ceiling JSON (experiments/dmvae_decoder_ceiling/dmvae_decoder_ceiling.py --out writes one)"
            )
        more, c = rows_of(path)
        rows += more
        chance = chance or c
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    series: dict[str, list[dict]] = {}
    for row in rows:
        series.setdefault(row["variant"], []).append(row)
    for variant, points in series.items():
        points.sort(key=lambda r: r["step"])
        for ax, key in zip(axes, ("step", "seconds"), strict=True):
            ax.plot([r[key] for r in points], [r["shape"] for r in points], "o-", label=variant, ms=3)
    for ax, label in zip(axes, ("training steps (batch 64)", "CPU seconds (one thread)"), strict=True):
        ax.axhline(TARGET, color="k", ls="--", lw=0.8)
        if chance:
            ax.axhline(chance, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("shape accuracy of the drawn test images")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle("decoder handed the true factors: target 0.6 (dashed), chance (dotted)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
