"""From the point files to scores.csv, val_loss.csv, summary.json and the figures; the elbow."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mmcl.sweep.config import SweepConfig, SweepError, check_points, point_file, points
from mmcl.sweep.plots import plot_fig8_3, plot_fig8_4

NONLINEAR = {"continuous": "kernel_ridge", "discrete": "mlp"}


def elbow(sizes: list[int], losses: list[float]) -> int:
    """Elbow of a loss curve: the point farthest from the chord joining its ends, both axes
    scaled to [0, 1] (the "kneedle" criterion)."""
    x = np.asarray(sizes, dtype=float)
    y = np.asarray(losses, dtype=float)
    if len(x) < 3:
        return int(x[int(np.argmin(y))])
    xs = (x - x.min()) / (x.max() - x.min())
    span = y.max() - y.min()
    ys = (y - y.min()) / span if span > 0 else np.zeros_like(y)
    chord = ys[0] + (ys[-1] - ys[0]) * xs
    return int(x[int(np.argmax(np.abs(chord - ys)))])


def nonlinear_records(records: list[dict]) -> list[dict]:
    """Fig. 8.3 uses the nonlinear probes: kernel ridge R^2 / MLP accuracy."""
    return [
        r
        for r in records
        if r["probe"] == NONLINEAR.get("continuous" if r["kind"] == "continuous" else "discrete")
    ]


def summarise(records: list[dict], losses: dict[tuple[int, int], float]) -> dict[str, Any]:
    curves: dict[str, dict[str, dict[str, Any]]] = {}
    for r in nonlinear_records(records):
        c = curves.setdefault(r["representation"], {}).setdefault(
            r["factor"], {"role": r["role"], "metric": r["metric"], "chance": [], "by_size": {}}
        )
        c["by_size"].setdefault(r["encoding_size"], []).append(r["score"])
        c["chance"].append(r["chance"])
    for rep in curves.values():
        for c in rep.values():
            sizes = sorted(c["by_size"])
            c["sizes"] = sizes
            c["mean"] = [float(np.mean(c["by_size"][k])) for k in sizes]
            c["std"] = [float(np.std(c["by_size"][k])) for k in sizes]
            c["chance"] = float(np.mean(c["chance"]))
            del c["by_size"]
    sizes = sorted({k for k, _ in losses})
    loss_mean = [float(np.mean([v for (k, _), v in losses.items() if k == s])) for s in sizes]
    loss_std = [float(np.std([v for (k, _), v in losses.items() if k == s])) for s in sizes]
    return {
        "scores": curves,
        "val_loss": {
            "sizes": sizes,
            "mean": loss_mean,
            "std": loss_std,
            "elbow": elbow(sizes, loss_mean) if sizes else None,
        },
    }


def write_outputs(
    cfg: SweepConfig,
    records: list[dict],
    losses: dict[tuple[int, int], float],
    out: Path,
    command: str,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """scores.csv, val_loss.csv, the figures and summary.json (with the wall seconds per phase
    summed over the points and the probe's share of them)."""
    fields = [
        "encoding_size",
        "seed",
        "representation",
        "factor",
        "role",
        "kind",
        "probe",
        "metric",
        "score",
        "chance",
    ]
    with open(out / "scores.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    with open(out / "val_loss.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["encoding_size", "seed", "val_loss"])
        writer.writerows([k, s, f"{v:.6f}"] for (k, s), v in sorted(losses.items()))
    summary = summarise(records, losses)
    what = (
        f"simulation {cfg.simulation.setting}/{cfg.simulation.row}"
        if cfg.kind == "simulation"
        else "Multimodal3DIdent"
    )
    plot_fig8_3(summary, out / "fig8_3.png", f"Fig. 8.3 ({what})")
    plot_fig8_4(summary, out / "fig8_4.png", f"Fig. 8.4 ({what})")
    seconds = seconds or {}
    timing: dict[str, Any] = {"seconds": {k: round(v, 1) if v == v else None for k, v in seconds.items()}}
    total = sum(v for v in seconds.values() if v == v)
    if total > 0 and "probe" in seconds:
        timing["probe_share"] = round(seconds["probe"] / total, 4)
    summary = {"command": command, "config": asdict(cfg), "timing": timing, **summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def collect(cfg: SweepConfig, out: Path, command: str = "") -> dict[str, Any]:
    """Tables and figures from the point files of every point (an error names missing ones)."""
    missing = [
        f"{i} (K={k}, seed {s})" for i, (k, s) in enumerate(points(cfg)) if not point_file(out, k, s).exists()
    ]
    if missing:
        raise SweepError(
            f"{out}: {len(missing)} point(s) not finished: {', '.join(missing[:6])}"
            f"{' ...' if len(missing) > 6 else ''}; run them (--points I:J) before --collect"
        )
    check_points(cfg, out, range(len(points(cfg))))
    records: list[dict] = []
    losses: dict[tuple[int, int], float] = {}
    seconds: dict[str, float] = {}
    for k, seed in points(cfg):
        data = json.loads(point_file(out, k, seed).read_text())
        records += data["records"]
        losses[(k, seed)] = float(data["val_loss"])
        for phase, v in data.get("seconds", {}).items():
            seconds[phase] = seconds.get(phase, 0.0) + v
    return write_outputs(cfg, records, losses, out, command, seconds)
