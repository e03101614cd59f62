"""Writers for probe results: ``results.csv``, ``results.json``, ``results.md``, ``results.png``.

The figure has one panel per representation and, per factor, a bar for each probe: colour
marks the factor's role (content / style / modality-specific), hatching marks the linear
probes (LinearRegression, LogisticRegression) against the nonlinear ones (kernel ridge, MLP),
and a black tick marks the chance level (R^2 0, or the majority-class accuracy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmcl import io
from mmcl.probing.probes import ALL_PROBES, LINEAR_PROBES, ProbeResult

ROLE_COLOURS = {"content": "#1f77b4", "style": "#ff7f0e", "specific": "#2ca02c", "other": "#7f7f7f"}
PROBE_LABELS = {
    "linear": "linear R²",
    "kernel_ridge": "kernel ridge R²",
    "logistic": "logistic acc.",
    "mlp": "MLP acc.",
    "circular": "circular R²",
    "block_kernel_ridge": "block kernel ridge R²",
    "mcc": "MCC",
    "weak_mcc": "weak MCC",
}
CSV_FIELDS = [
    "representation",
    "factor",
    "kind",
    "role",
    "probe",
    "metric",
    "score",
    "chance",
    "n_fit",
    "n_test",
    "params",
]


def role_group(role: str) -> str:
    """content / style / specific (image_specific, text_specific, modality_specific) / other."""
    if role in ("content", "style"):
        return role
    if role.endswith("specific"):
        return "specific"
    return "other"


def write_csv(results: list[ProbeResult], path: Path) -> None:
    rows = []
    for r in results:
        row = r.to_dict()
        row["score"] = f"{r.score:.6f}"
        row["chance"] = f"{r.chance:.6f}"
        row["params"] = json.dumps(r.params, sort_keys=True)
        rows.append(row)
    io.write_csv(path, rows, CSV_FIELDS)


def write_json(results: list[ProbeResult], header: dict[str, Any], path: Path) -> None:
    io.write_json(path, {**header, "results": [r.to_dict() for r in results]})


def markdown(results: list[ProbeResult], header: dict[str, Any]) -> str:
    """One table per representation: a row per factor, a column per probe (score, chance)."""
    lines = [f"# Probe results: {header.get('input', '')}", ""]
    lines.append(
        f"Fit on `{header['fit_split']}`, scored on `{header['test_split']}`; features standardised with "
        f"the fitting split's statistics; seed {header['seed']}"
        + (f"; at most {header['max_samples']} samples per split" if header.get("max_samples") else "")
        + ". R² for continuous factors, accuracy for discrete ones; chance in brackets."
    )
    lines.append("")
    for rep in dict.fromkeys(r.representation for r in results):
        rows = [r for r in results if r.representation == rep]
        probes = [p for p in ALL_PROBES if any(r.probe == p for r in rows)]
        lines += [
            f"## {rep}",
            "",
            "| factor | role | kind | " + " | ".join(PROBE_LABELS[p] for p in probes) + " |",
            "|---|---|---|" + "---|" * len(probes),
        ]
        for factor in dict.fromkeys(r.factor for r in rows):
            cells = {r.probe: r for r in rows if r.factor == factor}
            first = next(iter(cells.values()))
            name = {"content": f"**{factor}**", "style": f"*{factor}*"}.get(first.role, factor)
            vals = [f"{cells[p].score:.3f} ({cells[p].chance:.2f})" if p in cells else "" for p in probes]
            lines.append(f"| {name} | {first.role} | {first.kind} | " + " | ".join(vals) + " |")
        lines.append("")
    if header.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in header["notes"]] + [""]
    return "\n".join(lines)


def plot(results: list[ProbeResult], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    reps = list(dict.fromkeys(r.representation for r in results))
    widths = [max(3.0, 0.9 * len({r.factor for r in results if r.representation == rep})) for rep in reps]
    fig, axes = plt.subplots(
        1, len(reps), figsize=(sum(widths) + 1.5, 4.2), squeeze=False, gridspec_kw={"width_ratios": widths}
    )
    for ax, rep in zip(axes[0], reps, strict=True):
        rows = [r for r in results if r.representation == rep]
        factors = list(dict.fromkeys(r.factor for r in rows))
        for i, factor in enumerate(factors):
            cells = [r for r in rows if r.factor == factor]
            bar_w = 0.8 / max(len(cells), 1)
            for j, r in enumerate(cells):
                x = i - 0.4 + bar_w * (j + 0.5)
                ax.bar(
                    x,
                    r.score,
                    bar_w,
                    color=ROLE_COLOURS[role_group(r.role)],
                    edgecolor="black",
                    linewidth=0.5,
                    hatch="//" if r.probe in LINEAR_PROBES else None,
                )
                ax.hlines(r.chance, x - bar_w / 2, x + bar_w / 2, colors="black", linewidth=2)
        ax.set_xticks(np.arange(len(factors)))
        labels = ax.set_xticklabels(factors, rotation=45, ha="right", fontsize=8)
        for label, factor in zip(labels, factors, strict=True):
            role = next(r.role for r in rows if r.factor == factor)
            if role == "content":
                label.set_fontweight("bold")
            elif role == "style":
                label.set_fontstyle("italic")
        ax.set_ylim(min(-0.05, min(r.score for r in rows) - 0.05), 1.05)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_title(rep)
        ax.set_ylabel("R² (continuous) / accuracy (discrete)")
    handles = [
        Patch(facecolor=c, edgecolor="black", label=k)
        for k, c in ROLE_COLOURS.items()
        if any(role_group(r.role) == k for r in results)
    ]
    handles += [
        Patch(facecolor="white", edgecolor="black", hatch="//", label="linear probe"),
        Patch(facecolor="white", edgecolor="black", label="nonlinear probe"),
        Patch(facecolor="black", label="chance level (tick)"),
    ]
    fig.legend(handles=handles, loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    io.save_figure(fig, path, dpi=120)
    plt.close(fig)


def write_all(results: list[ProbeResult], header: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"results.{ext}" for ext in ("csv", "json", "md", "png")}
    write_csv(results, paths["csv"])
    write_json(results, header, paths["json"])
    io.atomic_write_text(paths["md"], markdown(results, header))
    plot(results, paths["png"], title=str(header.get("input", "")))
    return paths
