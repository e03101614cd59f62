"""Content and intervention columns of one simulation row as a function of training steps.

Trains one (setting, row, seed) of ``mmcl simulate`` to each step count in turn, resuming the same
run (a constant learning rate makes a run stopped at N steps the same as the first N steps of a
longer one), evaluates it at each, and keeps every evaluation as ``metrics_steps<N>.json`` next to
the checkpoint. Then writes ``OUT/steps_curve_<row>.csv`` and ``.png``: the Table 8.1b columns
(content, style, modality-specific, and the intervention columns c, c', s) against steps, with the
thesis's values (300 000 steps) drawn as dashed lines.

    python experiments/simulation_steps_curve/simulation_steps_curve.py --row p0.75-cau --steps 20000 60000 200000
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mmcl.checkpoint import load_checkpoint  # noqa: E402
from mmcl.simulation.config import load_config  # noqa: E402
from mmcl.simulation.run import run_dir_for, run_one  # noqa: E402
from mmcl.simulation.table import thesis_cell  # noqa: E402

COLUMNS = (
    "content",
    "style",
    "modality_specific",
    "intervened_content",
    "intervened_content_prime",
    "intervened_style",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "configs/simulation/cpu.yaml"))
    parser.add_argument("--root", type=Path, default=REPO / "runs/simulation/steps_curve")
    parser.add_argument("--out", type=Path, default=REPO / "docs/simulation")
    parser.add_argument("--setting", default="multimodal")
    parser.add_argument("--row", default="p0.75-cau")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", nargs="+", type=int, default=[20000, 60000, 200000])
    args = parser.parse_args()
    run_dir = run_dir_for(args.root, args.setting, args.row, args.seed)
    for steps in sorted(args.steps):
        kept = run_dir / f"metrics_steps{steps}.json"
        if kept.exists():
            continue
        cfg = load_config(args.config, {"steps": steps, "rows": [args.row], "seeds": [args.seed]})
        if cfg.lr_schedule != "constant":
            raise SystemExit("the steps curve resumes one run and needs lr_schedule: constant")
        ckpt = run_dir / "checkpoint.pt"
        if ckpt.exists():
            done = load_checkpoint(ckpt, "simulation checkpoint")["step"]
            if done > steps:
                raise SystemExit(
                    f"{ckpt} is already at step {done}, past the requested {steps}: a run cannot go back; "
                    f"ask only for step counts >= {done} or use another --root"
                )
        t0 = time.perf_counter()
        run_one(cfg, args.setting, args.row, args.seed, args.root, log=lambda m: print(m, flush=True))
        shutil.copyfile(run_dir / "metrics.json", kept)
        print(f"[steps curve] {steps} steps done ({time.perf_counter() - t0:.0f} s this call)", flush=True)
    rows = []
    for path in sorted(
        run_dir.glob("metrics_steps*.json"), key=lambda p: int(p.stem.removeprefix("metrics_steps"))
    ):
        metrics = json.loads(path.read_text())
        rows.append(
            {
                "steps": metrics["steps"],
                **{c: metrics["table"][c] for c in COLUMNS},
                "train_cpu_seconds_total": round(metrics["train_cpu_seconds"], 1),
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    # Row names hold dots (p0.75-cau): build the file names, Path.with_suffix would cut at ".75".
    stem = f"steps_curve_{args.row}"
    with open(args.out / f"{stem}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args, args.out / f"{stem}.png")
    for r in rows:
        print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))


def plot(rows: list[dict], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [r["steps"] for r in rows]
    for i, c in enumerate(COLUMNS):
        colour = f"C{i}"
        ax.plot(
            steps, [r[c] for r in rows], marker="o", color=colour, label=c.replace("intervened_", "interv. ")
        )
        cell = thesis_cell(args.setting, args.row, c)
        if cell is not None:
            ax.axhline(cell[0], color=colour, ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training steps (batch 512, one run resumed)")
    ax.set_ylabel("kernel-ridge R² (test)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(
        f"{args.setting} {args.row} seed {args.seed}; dashed: thesis (8.1b 300k steps, interv. A.6 3M)",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
