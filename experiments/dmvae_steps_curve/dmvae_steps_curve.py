"""Text->image shape coherence of DMVAE runs against their stage-2 training steps (issue 13).

    python experiments/dmvae_steps_curve/dmvae_steps_curve.py --out docs/dmvae/steps_curve \
        --ceiling docs/dmvae/decoder_ceiling_long.json --ceiling docs/dmvae/decoder_ceiling_width32.json \
        "stage 1 20k:2000=docs/dmvae/metrics_stage1_20k_both400_gmm_coherence.json" \
        "stage 1 20k:8000=docs/dmvae/metrics.json" ...

Each ``SERIES:STEPS=PATH`` is one `mmcl dmvae eval` metrics.json of a run trained for STEPS
stage-2 steps. For every point the shape coherence of text -> image with m_img ~ N(0, I)
(``text2image``), with m_img from the fitted density (``text2image_gmm``, where evaluated) and of
the reconstructions (``reconstruction_image``, the decoder's ceiling in the model), plus, with
``--ceiling``, the decoder trained alone on the true factors (`experiments/dmvae_decoder_ceiling/dmvae_decoder_ceiling.py`;
``--ceiling`` repeats, one series per decoder width and depth; of a run with stage 2's cosine
schedule only its last row, the end of a run of that many steps).
Writes ``OUT.csv`` and ``OUT.png`` with the issue's target (0.6) and chance.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

ROWS = {
    "text2image": "text -> image, m_img ~ N(0, I)",
    "text2image_gmm": "text -> image, m_img ~ GMM of q(m_img | x)",
    "reconstruction_image": "reconstruction (ceiling in the model)",
}
TARGET = 0.6


def parse_point(spec: str) -> tuple[str, int, Path]:
    try:
        head, path = spec.split("=", 1)
        series, steps = head.rsplit(":", 1)
        return series, int(steps), Path(path)
    except ValueError:
        raise SystemExit(
            f"{spec!r}: expected SERIES:STEPS=PATH (e.g. 'stage 1 20k:8000=docs/dmvae/metrics.json')"
        ) from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("points", nargs="+", help="SERIES:STEPS=PATH of a metrics.json")
    p.add_argument("--ceiling", type=Path, action="append", default=[], help="a ceiling JSON (repeats)")
    p.add_argument("--out", type=Path, required=True, help="output stem: OUT.csv, OUT.png")
    args = p.parse_args()
    rows, chance = [], None
    for series, steps, path in map(parse_point, args.points):
        metrics = json.loads(path.read_text())
        # `mmcl dmvae eval` records chance (majority class on its split) with each leakage probe
        chance = chance or metrics.get("leakage", {}).get("m_image", {}).get("chance", {}).get("object_shape")
        for key in ROWS:
            if key in metrics["coherence"]:
                cell = metrics["coherence"][key]
                rows.append({"series": series, "steps": steps, "row": key, "shape": cell["object_shape"],
                             "x": cell["object_xpos"], "y": cell["object_ypos"], "source": path.as_posix()})  # fmt: skip
    for path in args.ceiling:
        ceiling = json.loads(path.read_text())
        chance = chance or ceiling["chance"]["object_shape"]
        settings = ceiling.get("settings", {})
        cosine = settings.get("schedule") == "cosine"
        for r in ceiling["rows"]:
            if cosine and r["step"] != settings["steps"]:
                continue  # mid-schedule: not what a run of that many steps ends with
            variant = f", {r['res_blocks']} residual layers" if r.get("res_blocks") else ""
            variant += ", stage 2's cosine schedule, end of each run" if cosine else ""
            rows.append({"series": f"decoder alone on the true factors (width {r['width']}{variant})", "steps": r["step"],
                         "row": "decoder_ceiling", "shape": r["accuracy"]["object_shape"],
                         "x": r["accuracy"]["object_xpos"], "y": r["accuracy"]["object_ypos"],
                         "source": path.as_posix()})  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    styles = {
        "text2image": "o-",
        "text2image_gmm": "s-",
        "reconstruction_image": "^--",
        "decoder_ceiling": ":",
    }
    colours = {}
    for (series, key), pts in _group(rows).items():
        pts.sort()
        colour = colours.setdefault(series, f"C{len(colours)}")
        label = f"{series}: {ROWS[key]}" if key in ROWS else series
        ax.plot([s for s, _ in pts], [v for _, v in pts], styles[key], color=colour, label=label, alpha=0.85)
    ax.axhline(TARGET, color="tab:red", lw=1, label=f"target {TARGET}")
    if chance:
        ax.axhline(chance, color="grey", lw=1, ls="--", label=f"chance {chance:.2f}")
    ax.set_xlabel("stage-2 (or decoder) training steps, batch 64")
    ax.set_ylabel("shape recognised by the factor classifier")
    ax.set_ylim(0, 1)
    ax.set_title("Text -> image shape coherence against training steps (64x64, CPU)")
    ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=130)
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')} ({len(rows)} points)")


def _group(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault((r["series"], r["row"]), []).append((r["steps"], r["shape"]))
    return out


if __name__ == "__main__":
    main()
