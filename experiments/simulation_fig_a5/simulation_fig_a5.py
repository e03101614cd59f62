"""Fig. A.5 of seed 003 (numerical simulation with discrete latents) on a CPU.

For each discrete group (content, style, modality-specific) and number of classes k, trains the
Table 8.1b p1.0 row (``configs/simulation/cpu.yaml`` by default) with that group drawn from a
uniform categorical, encoding size 5, and probes every group: kernel-ridge R^2 for the continuous
groups, kernel-ridge accuracy (one-hot targets, arg max; chance 1/k) for the discrete one.
Runs go to ``ROOT/<group>_k<k>/multimodal/p1.0/seed<s>/`` through ``mmcl simulate``'s resumable
``run_grid`` (a killed call resumes; finished runs are read back), then everything found under
ROOT is collected into ``OUT/fig_a5.csv``, ``OUT/fig_a5.json`` and ``OUT/fig_a5.png``.

    python experiments/simulation_fig_a5/simulation_fig_a5.py --groups style --classes 3 5 10 --seeds 0   # one core
    python experiments/simulation_fig_a5/simulation_fig_a5.py --collect-only                              # table + plot
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mmcl.simulation.config import load_config  # noqa: E402
from mmcl.simulation.run import run_grid  # noqa: E402

GROUPS = ("content", "style", "modality_specific")
COLUMNS = ("content", "style", "modality_specific")
# The thesis's reading of Fig. A.5 (App. A.6), checked against ours in docs/simulation.
THESIS = {
    "style": "content R^2 >= 0.99; style at chance (1/k)",
    "modality_specific": "content R^2 >= 0.99; modality-specific at chance (1/k)",
    "content": "content encoded well; style encoded to a significant extent when k is small, less as k grows",
}


def run(args: argparse.Namespace) -> None:
    for group in args.groups:
        for k in args.classes:
            overrides = {
                "settings": ["multimodal"],
                "rows": ["p1.0"],
                "seeds": args.seeds,
                "discrete_block": group,
                "discrete_classes": k,
                "interventions": False,
            }
            cfg = load_config(args.config, overrides)
            t0 = time.perf_counter()
            run_grid(
                cfg,
                args.root / f"{group}_k{k}",
                command="experiments/simulation_fig_a5/simulation_fig_a5.py",
                log=print,
            )
            print(f"[fig A.5] {group} k={k} seeds {args.seeds}: {time.perf_counter() - t0:.0f} s", flush=True)


def collect(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.glob("*_k*/multimodal/p1.0/seed*/metrics.json")):
        metrics = json.loads(path.read_text())
        cfg = metrics["identity"]
        table = metrics["table"]
        rows.append(
            {
                "discrete_group": cfg["discrete_block"],
                "k": cfg["discrete_classes"],
                "seed": cfg["seed"],
                "steps": metrics["steps"],
                **{c: table[c] for c in COLUMNS},
                "chance": 1.0 / cfg["discrete_classes"],
                "train_cpu_seconds": round(metrics["train_cpu_seconds"], 1),
                "run": str(path.parent.relative_to(root)),
            }
        )
    rows.sort(key=lambda r: (GROUPS.index(r["discrete_group"]), r["k"], r["seed"]))
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["discrete_group"], r["k"]) for r in rows}, key=lambda t: (GROUPS.index(t[0]), t[1]))
    for group, k in keys:
        sel = [r for r in rows if (r["discrete_group"], r["k"]) == (group, k)]
        entry = {"discrete_group": group, "k": k, "seeds": [r["seed"] for r in sel], "chance": 1.0 / k}
        for c in COLUMNS:
            vals = np.array([r[c] for r in sel])
            entry[c] = {"mean": float(vals.mean()), "std": float(vals.std()), "metric": metric(group, c)}
        out.append(entry)
    return out


def metric(group: str, column: str) -> str:
    return "accuracy" if group == column else "r2"


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, group, letter in zip(axes, ("style", "modality_specific", "content"), "abc", strict=True):
        sel = [e for e in summary if e["discrete_group"] == group]
        ax.set_title(f"({letter}) discrete {group.replace('_', '-')}")
        if not sel:
            ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
            continue
        ks = [e["k"] for e in sel]
        for c, colour in zip(COLUMNS, ("tab:blue", "tab:orange", "tab:green"), strict=True):
            mean = np.array([e[c]["mean"] for e in sel])
            std = np.array([e[c]["std"] for e in sel])
            label = f"{c.replace('_', '-')} ({'accuracy' if c == group else 'R²'})"
            ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, color=colour, label=label)
        ax.plot(ks, [1 / k for k in ks], "k--", lw=1, label="chance 1/k")
        ax.set_xlabel("classes k")
        ax.set_xticks(ks)
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=7, loc="center right")
    axes[0].set_ylabel("kernel-ridge R² / accuracy (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "configs/simulation/cpu.yaml"))
    parser.add_argument("--root", type=Path, default=REPO / "runs/simulation/discrete")
    parser.add_argument("--out", type=Path, default=REPO / "docs/simulation")
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS))
    parser.add_argument("--classes", nargs="+", type=int, default=[3, 5, 10])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--collect-only", action="store_true", help="only tabulate and plot finished runs")
    args = parser.parse_args()
    if not args.collect_only:
        run(args)
    rows = collect(args.root)
    if not rows:
        raise SystemExit(f"no finished runs under {args.root}")
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "fig_a5.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    (args.out / "fig_a5.json").write_text(json.dumps({"thesis": THESIS, "summary": summary}, indent=2) + "\n")
    plot(summary, args.out / "fig_a5.png")
    for e in summary:
        cells = ", ".join(f"{c} {e[c]['mean']:.2f}±{e[c]['std']:.2f}" for c in COLUMNS)
        print(
            f"discrete {e['discrete_group']} k={e['k']} (seeds {e['seeds']}): {cells}; chance {e['chance']:.2f}"
        )


if __name__ == "__main__":
    main()
