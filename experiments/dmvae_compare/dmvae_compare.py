"""A Table 9.1-style comparison of evaluated models (`mmcl dmvae eval` metrics.json files).

    python experiments/dmvae_compare/dmvae_compare.py --out docs/baselines \
        DMVAE=docs/dmvae/metrics.json MVAE=runs/baselines/mvae/eval/metrics.json ...

A LABEL=PATH may point at a run directory instead (its eval/metrics.json; the training log
``baseline/logs/version_*/metrics.csv`` then adds the modalities' mean gradient cosine on the
shared encoders and the text objective of the last 200 steps). Writes ``OUT/comparison.csv``,
``OUT/comparison.md`` and ``OUT/comparison.png`` (coherence both directions and the nonlinear
probes of the shared latent from each modality), paths in them relative to the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

CONTENT = ("object_shape", "object_xpos", "object_ypos")


def training_log(run: Path) -> dict:
    """Mean gradient cosine and the last 200 steps' mean objectives from a baseline's CSV log."""
    logs = sorted(run.glob("baseline/logs/version_*/metrics.csv"))
    if not logs:
        return {}
    rows = [r for p in logs for r in csv.DictReader(open(p))]

    def values(key, last=None):
        pairs = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        if last is not None and pairs:
            top = max(s for s, _ in pairs)
            pairs = [(s, v) for s, v in pairs if s > top - last]
        return [v for _, v in pairs]

    out = {}
    cos = values("baseline/grad_cos")
    if cos:
        out["grad_cos_mean"] = sum(cos) / len(cos)
        late = values("baseline/grad_cos", 500)
        out["grad_cos_last500"] = sum(late) / len(late)
    for m in ("image", "text"):
        v = values(f"baseline/{m}/objective", 200)
        if v:
            out[f"train_{m}_objective_last200"] = sum(v) / len(v)
        g = values(f"baseline/{m}/grad_norm", 500)
        if g:
            out[f"{m}_grad_norm_last500"] = sum(g) / len(g)
    return out


def row(label: str, path: Path) -> dict:
    run = None
    if path.is_dir():
        run, path = path, path / "eval" / "metrics.json"
    m = json.loads(path.read_text())
    coh = m["coherence"]
    out = {"model": label, "metrics": str(path), "global_step": m.get("global_step")}
    for direction in ("text2image", "image2text", "reconstruction_image", "reconstruction_text"):
        for f in (*CONTENT, "all"):
            out[f"{direction}_{f}"] = coh.get(direction, {}).get(f)
    out["image2text_parsed"] = coh.get("image2text", {}).get("parsed")
    unc = m.get("unconditional", {})
    out["unconditional_parse_rate"] = unc.get("text_parse_rate")
    out["unconditional_joint_all"] = unc.get("joint_coherence", {}).get("all")
    for mod, e in m.get("elbo", {}).items():
        out[f"elbo_{mod}"] = e.get("elbo")
    for rep, fams in m.get("leakage", {}).items():
        if rep.endswith("_logvar"):
            continue
        for f in CONTENT:
            out[f"probe_{rep}_{f}"] = fams.get("nonlinear", {}).get(f)
    for rep, est in m.get("mi_fresh_critic", {}).items():
        out[f"mi_fresh_critic_{rep}"] = est.get("density_ratio")
    if run is not None:
        out.update(training_log(run))
    return out


def fmt(v) -> str:
    if v is None or v == "":
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


MD_COLUMNS = [
    (
        "text->image shape / x / y",
        ("text2image_object_shape", "text2image_object_xpos", "text2image_object_ypos"),
    ),
    (
        "image->text shape / x / y",
        ("image2text_object_shape", "image2text_object_xpos", "image2text_object_ypos"),
    ),
    ("parsed", ("image2text_parsed",)),
    ("reconstruction image / text (all)", ("reconstruction_image_all", "reconstruction_text_all")),
    (
        "shared latent from image: shape / x / y",
        ("probe_c_image_object_shape", "probe_c_image_object_xpos", "probe_c_image_object_ypos"),
    ),
    (
        "from text: shape / x / y",
        ("probe_c_text_object_shape", "probe_c_text_object_xpos", "probe_c_text_object_ypos"),
    ),
    ("m_image / m_text shape (MLP)", ("probe_m_image_object_shape", "probe_m_text_object_shape")),
    ("test ELBO image / text", ("elbo_image", "elbo_text")),
]


def markdown(rows: list[dict]) -> str:
    lines = ["| model | " + " | ".join(c for c, _ in MD_COLUMNS) + " |", "|---|" + "---|" * len(MD_COLUMNS)]
    for r in rows:
        cells = [" / ".join(fmt(r.get(k)) for k in keys) for _, keys in MD_COLUMNS]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [
        ("text -> image coherence", "text2image"),
        ("image -> text coherence", "image2text"),
        ("shared latent of the image (MLP)", "probe_c_image"),
        ("shared latent of the text (MLP)", "probe_c_text"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    width = 0.8 / max(1, len(rows))
    for ax, (title, prefix) in zip(axes[0], panels):
        x = np.arange(len(CONTENT))
        for k, r in enumerate(rows):
            vals = [r.get(f"{prefix}_{f}") for f in CONTENT]
            vals = [np.nan if v is None else v for v in vals]
            ax.bar(x + (k - (len(rows) - 1) / 2) * width, vals, width, label=r["model"])
        ax.set_xticks(x, ["shape", "x", "y"])
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="LABEL=PATH (metrics.json or a run directory)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    rows = []
    for item in args.models:
        if "=" not in item:
            print(f"{item!r}: expected LABEL=PATH", file=sys.stderr)
            return 2
        label, path = item.split("=", 1)
        if not Path(path).exists():
            print(f"{path}: not found (LABEL=PATH of a metrics.json or run directory)", file=sys.stderr)
            return 2
        rows.append(row(label, Path(path)))
    args.out.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(args.out / "comparison.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields, restval="")
        w.writeheader()
        w.writerows(rows)
    (args.out / "comparison.md").write_text(markdown(rows))
    plot(rows, args.out / "comparison.png")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
