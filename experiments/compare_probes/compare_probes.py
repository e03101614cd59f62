"""Side-by-side probe results of several runs (e.g. one recipe on two dataset designs).

    python experiments/compare_probes/compare_probes.py default=runs/toolbox/default/probe \
        described=runs/toolbox/described/probe --out docs/toolbox

Reads each ``RESULTS/results.csv`` written by ``mmcl probe`` and writes ``OUT/comparison.csv``
(one row per representation, factor, probe and metric; one score column per run, empty where a
run lacks the factor), ``OUT/comparison.md`` (the nonlinear score of every factor: kernel ridge
R² for continuous factors, MLP accuracy for discrete ones) and ``OUT/comparison.png`` (the same
as bars, one group per factor, per representation). Roles are each run's own (a factor's role
can differ between designs); the table shows them per run.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

NONLINEAR = {"kernel_ridge", "mlp"}


def read(path: Path) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; expected the results.csv of `mmcl probe`")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def compare(runs: dict[str, list[dict]]) -> list[dict]:
    rows: dict[tuple, dict] = {}
    for label, results in runs.items():
        for r in results:
            key = (r["representation"], r["factor"], r["probe"], r["metric"])
            row = rows.setdefault(
                key,
                {
                    "representation": key[0],
                    "factor": key[1],
                    "probe": key[2],
                    "metric": key[3],
                    "chance": r["chance"],
                },
            )
            row[f"role_{label}"] = r["role"]
            row[label] = r["score"]
    return list(rows.values())


def nonlinear(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["probe"] in NONLINEAR]


def markdown(rows: list[dict], labels: list[str]) -> str:
    lines = []
    for rep in dict.fromkeys(r["representation"] for r in rows):
        lines += [
            f"### {rep} embedding",
            "",
            "| factor | metric | " + " | ".join(f"{lab} (role)" for lab in labels) + " | chance |",
            "|---|---|" + "---|" * len(labels) + "---|",
        ]
        for r in nonlinear(rows):
            if r["representation"] != rep:
                continue
            cells = [
                f"{float(r[lab]):.3f} ({r[f'role_{lab}']})" if r.get(lab) not in (None, "") else "-"
                for lab in labels
            ]
            lines.append(
                f"| {r['factor']} | {r['metric']} | " + " | ".join(cells) + f" | {float(r['chance']):.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict], labels: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    reps = list(dict.fromkeys(r["representation"] for r in rows))
    fig, axes = plt.subplots(len(reps), 1, figsize=(11, 3.4 * len(reps)), squeeze=False)
    width = 0.8 / len(labels)
    for ax, rep in zip(axes[:, 0], reps):
        sub = [r for r in nonlinear(rows) if r["representation"] == rep]
        x = np.arange(len(sub))
        for k, lab in enumerate(labels):
            vals = [float(r[lab]) if r.get(lab) not in (None, "") else np.nan for r in sub]
            ax.bar(x + (k - (len(labels) - 1) / 2) * width, vals, width, label=lab)
        ax.set_xticks(
            x, [f"{r['factor']}\n({r['metric']})" for r in sub], rotation=35, ha="right", fontsize=7
        )
        ax.set_ylim(-0.1, 1.05)
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_title(f"{rep} embedding: nonlinear probe (kernel ridge R², MLP accuracy)", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=PATH (a probe folder or its results.csv)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    runs = {}
    for item in args.runs:
        if "=" not in item:
            print(f"{item!r}: expected LABEL=PATH", file=sys.stderr)
            return 2
        label, path = item.split("=", 1)
        runs[label] = read(Path(path))
    rows = compare(runs)
    labels = list(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    fields = ["representation", "factor", "probe", "metric", "chance"]
    fields += [c for lab in labels for c in (f"role_{lab}", lab)]
    with open(args.out / "comparison.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields, restval="")
        w.writeheader()
        w.writerows(rows)
    (args.out / "comparison.md").write_text(markdown(rows, labels))
    plot(rows, labels, args.out / "comparison.png")
    print(f"wrote {args.out}/comparison.csv, comparison.md, comparison.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
