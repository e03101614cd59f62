"""Table 8.1 (and Fig. A.6) of seed 003 next to our measured numbers.

``THESIS`` holds the published means and standard deviations over 3 seeds: Table 8.1a
(multi-view: content, style), Table 8.1b (multimodal: content, style, modality-specific) and
the test-time-intervention table of Fig. A.6 (multimodal, 3 000 000 iterations: c, c', s, m_i).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable

import numpy as np

from mmcl.simulation.config import ROWS

Cell = tuple[float, float]  # (mean, std)

THESIS: dict[str, dict[str, dict[str, Cell]]] = {
    "multiview": {
        "p1.0": {"content": (1.00, 0.00), "style": (0.00, 0.00)},
        "p0.75": {"content": (0.99, 0.01), "style": (0.00, 0.00)},
        "p0.75-stat": {"content": (0.99, 0.00), "style": (0.52, 0.09)},
        "p0.75-cau": {"content": (1.00, 0.00), "style": (0.79, 0.04)},
        "p0.75-stat-cau": {"content": (0.99, 0.01), "style": (0.81, 0.04)},
    },
    "multimodal": {
        "p1.0": {"content": (0.99, 0.00), "style": (0.00, 0.00), "modality_specific": (0.00, 0.00)},
        "p0.75": {"content": (1.00, 0.00), "style": (0.00, 0.00), "modality_specific": (0.00, 0.00)},
        "p0.75-stat": {"content": (0.95, 0.01), "style": (0.56, 0.23), "modality_specific": (0.00, 0.00)},
        "p0.75-cau": {"content": (0.98, 0.00), "style": (0.87, 0.04), "modality_specific": (0.00, 0.00)},
        "p0.75-stat-cau": {"content": (0.95, 0.03), "style": (0.89, 0.07), "modality_specific": (0.00, 0.00)},
    },
}
THESIS_INTERVENTIONS: dict[str, dict[str, Cell]] = {
    "p1.0": {
        "intervened_content": (0.00, 0.00),
        "intervened_content_prime": (1.00, 0.00),
        "intervened_style": (0.00, 0.00),
        "intervened_modality_specific": (0.00, 0.00),
    },
    "p0.75": {
        "intervened_content": (0.00, 0.00),
        "intervened_content_prime": (1.00, 0.00),
        "intervened_style": (0.00, 0.00),
        "intervened_modality_specific": (0.00, 0.00),
    },
    "p0.75-stat": {
        "intervened_content": (0.00, 0.00),
        "intervened_content_prime": (1.00, 0.00),
        "intervened_style": (0.50, 0.19),
        "intervened_modality_specific": (0.00, 0.00),
    },
    "p0.75-cau": {
        "intervened_content": (0.01, 0.00),
        "intervened_content_prime": (0.98, 0.00),
        "intervened_style": (0.03, 0.01),
        "intervened_modality_specific": (0.00, 0.00),
    },
    "p0.75-stat-cau": {
        "intervened_content": (0.28, 0.14),
        "intervened_content_prime": (0.91, 0.03),
        "intervened_style": (0.39, 0.20),
        "intervened_modality_specific": (0.00, 0.00),
    },
}
COLUMNS = {
    "content": "content c",
    "style": "style s",
    "modality_specific": "modality m_i",
    "intervened_content": "c (interv.)",
    "intervened_content_prime": "c' (interv.)",
    "intervened_style": "s (interv.)",
    "intervened_modality_specific": "m_i (interv.)",
    "content_mcc": "c MCC",
    "content_weak_mcc": "c weak MCC",
}


def mean_std(values: Iterable[float]) -> Cell:
    """Mean and population standard deviation (NaN-free values only)."""
    arr = np.array([v for v in values if not math.isnan(v)], dtype=float)
    if len(arr) == 0:
        return (math.nan, math.nan)
    return float(arr.mean()), float(arr.std())


def thesis_cell(setting: str, row: str, column: str) -> Cell | None:
    if column.startswith("intervened"):
        return THESIS_INTERVENTIONS.get(row, {}).get(column) if setting == "multimodal" else None
    return THESIS.get(setting, {}).get(row, {}).get(column)


def columns_for(setting: str, entries: list[dict[str, float]]) -> list[str]:
    cols = ["content", "style"] + (["modality_specific"] if setting == "multimodal" else [])
    if any("intervened_content" in e for e in entries):
        cols += ["intervened_content", "intervened_content_prime", "intervened_style"]
        if setting == "multimodal":
            cols.append("intervened_modality_specific")
    if any("content_mcc" in e for e in entries):
        cols += ["content_mcc", "content_weak_mcc"]
    return cols


def aggregate(entries: dict[tuple[str, str, int], dict[str, float]]) -> list[dict]:
    """One record per (setting, row, column): ours (mean, std, n seeds) and the thesis's."""
    records = []
    settings = list(dict.fromkeys(k[0] for k in entries))
    for setting in settings:
        for row in ROWS:
            runs = [e for (s, r, _), e in entries.items() if s == setting and r == row]
            if not runs:
                continue
            for col in columns_for(setting, runs):
                mean, std = mean_std(e.get(col, math.nan) for e in runs)
                ref = thesis_cell(setting, row, col)
                records.append(
                    {
                        "setting": setting,
                        "row": row,
                        "p_change": ROWS[row][0],
                        "stat": ROWS[row][1],
                        "cau": ROWS[row][2],
                        "column": col,
                        "mean": mean,
                        "std": std,
                        "n_seeds": len(runs),
                        "thesis_mean": ref[0] if ref else math.nan,
                        "thesis_std": ref[1] if ref else math.nan,
                    }
                )
    return records


def _fmt(mean: float, std: float) -> str:
    return "–" if math.isnan(mean) else f"{mean:.2f} (±{std:.2f})"


def markdown(records: list[dict]) -> str:
    """Side-by-side Markdown tables, one per setting: ours | thesis for every column."""
    out = []
    for setting in dict.fromkeys(r["setting"] for r in records):
        recs = [r for r in records if r["setting"] == setting]
        cols = list(dict.fromkeys(r["column"] for r in recs))
        title = "Table 8.1a, multi-view" if setting == "multiview" else "Table 8.1b, multimodal"
        out.append(f"### {title} (kernel ridge R^2 on held-out data; ours | thesis)\n")
        out.append("| p(chg.) | Stat. | Cau. | seeds | " + " | ".join(COLUMNS[c] for c in cols) + " |")
        out.append("|---|---|---|---|" + "---|" * len(cols))
        for row in dict.fromkeys(r["row"] for r in recs):
            cells = {r["column"]: r for r in recs if r["row"] == row}
            first = next(iter(cells.values()))
            line = [
                f"{first['p_change']}",
                "✓" if first["stat"] else "✗",
                "✓" if first["cau"] else "✗",
                str(first["n_seeds"]),
            ]
            for c in cols:
                r = cells[c]
                line.append(f"**{_fmt(r['mean'], r['std'])}** \\| {_fmt(r['thesis_mean'], r['thesis_std'])}")
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    return "\n".join(out)


def csv_text(records: list[dict]) -> str:
    buf = io.StringIO()
    fields = [
        "setting",
        "row",
        "p_change",
        "stat",
        "cau",
        "column",
        "mean",
        "std",
        "n_seeds",
        "thesis_mean",
        "thesis_std",
    ]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in fields})
    return buf.getvalue()
