"""``mmcl sweep``: encoding-size x seed sweeps, Fig. 8.3 and Fig. 8.4 of seed 003 (§8.4.2, §8.4.3).

    mmcl sweep --config configs/sweep/simulation_cpu.yaml [--out DIR]

Two kinds of sweep, one run per (encoding size K, seed S):

* ``simulation`` -- the numerical simulation (:mod:`mmcl.simulation`) of one Table 8.1 row with
  ``encoding_size = K``: R^2 of content / style / modality-specific latents (kernel ridge,
  averaged over the two encoders) and the validation loss (Fig. 8.4a).
* ``multimodal3dident`` -- per run, the training CLI, the embedding CLI and the probe::

      mmcl fit --config CFG --model.encoding_size K --seed_everything S --trainer.default_root_dir RUN/train
               --ckpt_path last  [fit_args]
      mmcl embed RUN/train/checkpoints/last.ckpt ROOT --split val test --out RUN/embeddings  [embed_args]
      mmcl probe RUN/embeddings   (library call; kernel ridge R^2 / MLP accuracy per factor)

  and the last ``val/loss`` of ``RUN/train/logs/version_*/metrics.csv`` (Fig. 8.4b).

Scaling past one process: the (K, seed) points are numbered in the order K, then seed
(``points`` lists them); ``--points i:j`` runs only points i..j-1 (one job of a scheduler's array,
e.g. ``--points $SLURM_ARRAY_TASK_ID:$((SLURM_ARRAY_TASK_ID+1))``), ``--jobs N`` runs every point
N at a time on this machine (each a ``--points`` subprocess with ``cpu_count / N`` threads), and
``--collect`` only reads the finished points and draws. Each finished point leaves
``points/k<K>_seed<S>.json`` (its score records and validation loss); the tables and figures are
built from those files in point order, so they are the same however the points were split (bit
for bit when the runs' thread count is fixed: ``threads`` in a simulation config; ``--jobs`` gives
each point process ``cpu_count / N`` threads otherwise). A point file made under other sweep
settings is refused, not reused.

Outputs in the sweep directory: ``scores.csv`` (long format: one row per K, seed,
representation, factor, probe), ``val_loss.csv``, ``fig8_3.png`` (score vs encoding size, mean
and +-1 std band over seeds, one line per factor; content factors bold and style factors italic
in the legend) and ``fig8_4.png`` (validation loss vs encoding size with the elbow marked), plus
``summary.json``. Finished runs are skipped, so re-issuing a killed sweep completes it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mmcl.cli import user_error
from mmcl.io import write_json

KINDS = ("simulation", "multimodal3dident")
NONLINEAR = {"continuous": "kernel_ridge", "discrete": "mlp"}


@dataclass
class SimulationSweep:
    config: str | None = None  # configs/simulation/*.yaml (None: paper defaults)
    setting: str = "multimodal"
    row: str = "p1.0"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class M3diSweep:
    train_config: str = "configs/train/m3di_paper.yaml"
    dataset_root: str = "data/m3di"
    fit_args: list[str] = field(default_factory=list)
    embed_args: list[str] = field(default_factory=list)
    probes: list[str] = field(default_factory=lambda: ["linear", "kernel_ridge", "logistic", "mlp"])
    probe_max_samples: int | None = None


@dataclass
class SweepConfig:
    kind: str
    encoding_sizes: list[int]
    seeds: list[int]
    out: str | None = None
    simulation: SimulationSweep = field(default_factory=SimulationSweep)
    multimodal3dident: M3diSweep = field(default_factory=M3diSweep)


class SweepError(ValueError):
    """Bad sweep configuration or a failed run; the message names the key or the log file."""


def _section(cls: type, values: Any, name: str) -> Any:
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise SweepError(f"sweep config key {name!r} must be a mapping")
    known = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SweepError(
            f"unknown sweep config key(s) {[f'{name}.{u}' for u in unknown]}; known: {sorted(known)}"
        )
    return cls(**values)


def load_sweep_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Read and check a sweep YAML (every key documented in configs/sweep/*.yaml)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep config file {str(path)!r} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    values.update(overrides or {})
    known = set(SweepConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise SweepError(f"{path}: unknown sweep config key(s) {unknown}; known: {sorted(known)}")
    for key in ("kind", "encoding_sizes", "seeds"):
        if key not in values:
            raise SweepError(f"{path}: sweep config needs the key {key!r}")
    if values["kind"] not in KINDS:
        raise SweepError(f"{path}: 'kind' must be one of {KINDS}, got {values['kind']!r}")
    for key in ("encoding_sizes", "seeds"):
        v = values[key]
        if (
            not isinstance(v, list)
            or not v
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in v)
        ):
            raise SweepError(f"{path}: {key!r} must be a non-empty list of integers, got {v!r}")
        if len(set(v)) != len(v):
            raise SweepError(f"{path}: {key!r} has duplicates: {v}")
    if min(values["encoding_sizes"]) < 1:
        raise SweepError(f"{path}: encoding sizes must be >= 1")
    m3di = _section(M3diSweep, values.get("multimodal3dident"), "multimodal3dident")
    from mmcl.probing.probes import ALL_PROBES

    bad = [p for p in m3di.probes if p not in ALL_PROBES]
    if bad:  # checked here, not after the first fit has run for minutes
        raise SweepError(
            f"{path}: multimodal3dident.probes has unknown probe(s) {bad}; choose from {list(ALL_PROBES)}"
        )
    return SweepConfig(
        kind=values["kind"],
        encoding_sizes=sorted(values["encoding_sizes"]),
        seeds=list(values["seeds"]),
        out=values.get("out"),
        simulation=_section(SimulationSweep, values.get("simulation"), "simulation"),
        multimodal3dident=m3di,
    )


# --- one run per (K, seed) ---------------------------------------------------------------------------


def simulation_run(
    cfg: SweepConfig, k: int, seed: int, out: Path, log=print
) -> tuple[list[dict], float, dict[str, float]]:
    """Score records, validation loss and seconds per phase of one simulation run with encoding size k."""
    from mmcl.simulation.config import load_config
    from mmcl.simulation.run import run_one

    sim = cfg.simulation
    overrides = {
        **sim.overrides,
        "encoding_size": k,
        "seeds": [seed],
        "settings": [sim.setting],
        "rows": [sim.row],
    }
    scfg = load_config(sim.config, overrides)
    if scfg.threads is not None:
        import torch

        torch.set_num_threads(scfg.threads)
    metrics = run_one(scfg, sim.setting, sim.row, seed, out / f"encoding_size={k}", log)
    table = metrics["table"]
    records = [
        {
            "encoding_size": k,
            "seed": seed,
            "representation": "x1, x2 (mean)",
            "factor": block,
            "role": role,
            "kind": "continuous",
            "probe": "kernel_ridge",
            "metric": "r2",
            "score": table[block],
            "chance": 0.0,
        }
        for block, role in (
            ("content", "content"),
            ("style", "style"),
            ("modality_specific", "modality_specific"),
        )
        if not np.isnan(table.get(block, np.nan))
    ]
    seconds = {"train": metrics.get("train_seconds", 0.0), "probe": metrics.get("eval_seconds", 0.0)}
    return records, float(metrics["val_loss"]), seconds


def _run_logged(cmd: list[str], log_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = log_path.read_text().splitlines()[-5:]
        raise SweepError(
            f"command failed with exit code {proc.returncode} (log {log_path}): {' | '.join(tail)}"
        )


def last_val_loss(train_dir: Path) -> float:
    """The last logged ``val/loss`` of the newest run version (Lightning CSV log)."""
    versions = sorted(
        (train_dir / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])
    )
    for path in reversed(versions):
        with open(path) as fh:
            values = [float(r["val/loss"]) for r in csv.DictReader(fh) if r.get("val/loss")]
        if values:
            return values[-1]
    raise SweepError(
        f"no 'val/loss' in {train_dir / 'logs'}/version_*/metrics.csv; does the training validate?"
    )


def _timed(marker: Path, action) -> None:
    """Run ``action`` and leave ``marker`` holding its wall seconds (the step is then done)."""
    t0 = time.perf_counter()
    action()
    marker.write_text(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}) + "\n")


def _marker_seconds(marker: Path) -> float:
    try:
        return float(json.loads(marker.read_text())["seconds"])
    except (ValueError, KeyError, TypeError, OSError):
        return float("nan")  # a marker written before the seconds were recorded


def m3di_run(
    cfg: SweepConfig, k: int, seed: int, out: Path, log=print
) -> tuple[list[dict], float, dict[str, float]]:
    """mmcl fit -> mmcl embed -> probe, for encoding size k and seed; also the wall seconds of each."""
    from mmcl.probing.cli import run_probes

    m = cfg.multimodal3dident
    run_dir = out / f"encoding_size={k}" / f"seed={seed}"
    train_dir, emb_dir = run_dir / "train", run_dir / "embeddings"
    run_dir.mkdir(parents=True, exist_ok=True)
    mmcl = [sys.executable, "-m", "mmcl.cli"]
    if not (run_dir / "fit.done").exists():
        log(f"[sweep] K={k} seed={seed}: mmcl fit")
        fit_cmd = mmcl + [
            "fit",
            "--config",
            m.train_config,
            "--model.encoding_size",
            str(k),
            "--seed_everything",
            str(seed),
            "--trainer.default_root_dir",
            str(train_dir),
            "--data.root",
            m.dataset_root,
            *m.fit_args,
            "--ckpt_path",
            "last",
        ]
        _timed(run_dir / "fit.done", lambda: _run_logged(fit_cmd, run_dir / "fit.log"))
        (run_dir / "embed.done").unlink(missing_ok=True)
    if not (run_dir / "embed.done").exists():
        log(f"[sweep] K={k} seed={seed}: mmcl embed")
        ckpt = train_dir / "checkpoints" / "last.ckpt"
        embed_cmd = mmcl + [
            "embed",
            str(ckpt),
            m.dataset_root,
            "--split",
            "val",
            "test",
            "--out",
            str(emb_dir),
            *m.embed_args,
        ]
        _timed(run_dir / "embed.done", lambda: _run_logged(embed_cmd, run_dir / "embed.log"))
    results_path = emb_dir / "probe" / "results.json"
    if not results_path.exists() or (results_path.stat().st_mtime < (run_dir / "embed.done").stat().st_mtime):
        log(f"[sweep] K={k} seed={seed}: probe")
        run_probes(
            emb_dir,
            emb_dir / "probe",
            probes=m.probes,
            max_samples=m.probe_max_samples,
            seed=seed,
            log=lambda msg: None,
        )
    probe = json.loads(results_path.read_text())
    results = probe["results"]
    seconds = {
        "fit": _marker_seconds(run_dir / "fit.done"),
        "embed": _marker_seconds(run_dir / "embed.done"),
        "probe": float(probe.get("seconds", float("nan"))),
    }
    records = [
        {
            "encoding_size": k,
            "seed": seed,
            "representation": r["representation"],
            "factor": r["factor"],
            "role": r["role"],
            "kind": r["kind"],
            "probe": r["probe"],
            "metric": r["metric"],
            "score": r["score"],
            "chance": r["chance"],
        }
        for r in results
    ]
    return records, last_val_loss(train_dir), seconds


# --- aggregation and figures ------------------------------------------------------------------------


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


def points(cfg: SweepConfig) -> list[tuple[int, int]]:
    """Every (encoding size, seed) of the sweep, in the order the tables list them."""
    return [(k, seed) for k in cfg.encoding_sizes for seed in cfg.seeds]


def point_file(out: Path, k: int, seed: int) -> Path:
    return out / "points" / f"k{k}_seed{seed}.json"


def parse_points(text: str, n: int) -> range:
    """``i:j`` (Python slice bounds, either may be empty) or ``i`` -> the indices of points."""
    try:
        if ":" in text:
            lo, hi = text.split(":", 1)
            chosen = range(n)[slice(int(lo) if lo else None, int(hi) if hi else None)]
        else:
            chosen = range(int(text), int(text) + 1)
    except ValueError:
        raise SweepError(f"--points must be I:J or I (integers), got {text!r}") from None
    if not chosen or chosen.start < 0 or chosen.stop > n:
        raise SweepError(f"--points {text} selects no point of the {n} of this sweep (0..{n - 1})")
    return chosen


def fingerprint(cfg: SweepConfig) -> str:
    """What a point's result depends on besides its own K and seed: every other sweep key."""
    what = {k: v for k, v in asdict(cfg).items() if k not in ("encoding_sizes", "seeds", "out")}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def check_points(cfg: SweepConfig, out: Path, chosen: Iterable[int]) -> None:
    """A finished point made under other settings is refused, never mixed into the tables."""
    fp = fingerprint(cfg)
    for i in chosen:
        k, seed = points(cfg)[i]
        path = point_file(out, k, seed)
        if path.exists() and json.loads(path.read_text()).get("fingerprint") != fp:
            raise SweepError(
                f"{path} was made with other sweep settings; use another --out or delete "
                f"{out / f'encoding_size={k}'} and the point file to redo it"
            )


def run_points(cfg: SweepConfig, out: Path, chosen: range, log=print) -> None:
    """Run (or find finished) the points ``chosen``; each leaves its point file."""
    check_points(cfg, out, chosen)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    run = simulation_run if cfg.kind == "simulation" else m3di_run
    all_points = points(cfg)
    t0 = time.perf_counter()
    for i in chosen:
        k, seed = all_points[i]
        path = point_file(out, k, seed)
        if path.exists():
            continue
        recs, loss, seconds = run(cfg, k, seed, out, log)
        point = {
            "encoding_size": k,
            "seed": seed,
            "fingerprint": fingerprint(cfg),
            "val_loss": loss,
            "seconds": seconds,
            "records": recs,
        }
        write_json(path, point, indent=None)
        log(
            f"[sweep] point {i} (encoding size {k} seed {seed}): val loss {loss:.4f} "
            f"({time.perf_counter() - t0:.0f}s)"
        )


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


def run_parallel(
    cfg: SweepConfig, out: Path, config_path: str, jobs: int, overrides: list[str], log=print
) -> None:
    """Every point, ``jobs`` at a time, each in its own ``mmcl sweep --points`` process."""
    todo = [i for i, (k, s) in enumerate(points(cfg)) if not point_file(out, k, s).exists()]
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    check_points(cfg, out, range(len(points(cfg))))
    out.mkdir(parents=True, exist_ok=True)
    running: dict[int, tuple[subprocess.Popen, Any]] = {}
    failed: list[str] = []
    try:
        _schedule(todo, running, failed, jobs, out, config_path, overrides, env, threads, log)
    finally:  # interrupted: no point process is left running behind
        for proc, fh in running.values():
            proc.terminate()
            proc.wait()
            fh.close()
    if failed:
        raise SweepError(f"sweep point(s) failed: {', '.join(failed)}")


def _schedule(
    todo: list[int],
    running: dict[int, tuple[subprocess.Popen, Any]],
    failed: list[str],
    jobs: int,
    out: Path,
    config_path: str,
    overrides: list[str],
    env: dict[str, str],
    threads: str,
    log,
) -> None:
    """Keep ``jobs`` point processes running until ``todo`` is empty and all have ended."""
    while todo or running:
        while todo and len(running) < jobs:
            i = todo.pop(0)
            log_path = out / "points" / f"point{i}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(log_path, "a")
            cmd = [sys.executable, "-m", "mmcl.cli", "sweep", "--config", config_path, "--out", str(out)]
            cmd += [*overrides, "--points", f"{i}:{i + 1}", "--no-collect"]
            running[i] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env), fh)
            log(f"[sweep] point {i} started ({threads} thread(s)), log {log_path}")
        time.sleep(0.5)
        for i, (proc, fh) in list(running.items()):
            if proc.poll() is not None:
                fh.close()
                del running[i]
                if proc.returncode != 0:
                    failed.append(f"{i} (exit {proc.returncode}, log {out / 'points' / f'point{i}.log'})")
                else:
                    log(f"[sweep] point {i} finished")


def run_sweep(cfg: SweepConfig, out: Path, command: str = "", log=print) -> dict[str, Any]:
    """Every point in this process, then the tables and figures."""
    run_points(cfg, out, range(len(points(cfg))), log)
    return collect(cfg, out, command)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="mmcl sweep", description="encoding-size x seed sweeps (Fig. 8.3, 8.4)")
    p.add_argument("--config", required=True, help="configs/sweep/*.yaml")
    p.add_argument("--out", help="output directory (default: the config's 'out', else runs/sweep/<name>)")
    p.add_argument("--encoding-sizes", help="override, e.g. '[1, 5, 8]'")
    p.add_argument("--seeds", help="override, e.g. '[0]'")
    p.add_argument("--points", help="run only points I:J of the sweep (numbered K-major; see --list)")
    p.add_argument("--jobs", type=int, default=1, help="run N points at a time, each in its own process")
    p.add_argument(
        "--collect", action="store_true", help="only build tables and figures from finished points"
    )
    p.add_argument(
        "--no-collect", action="store_true", help="with --points: do not build the tables afterwards"
    )
    p.add_argument("--list", action="store_true", help="print the numbered points and exit")
    args = p.parse_args(argv)
    overrides = {
        k: yaml.safe_load(v)
        for k, v in (("encoding_sizes", args.encoding_sizes), ("seeds", args.seeds))
        if v is not None
    }
    log = lambda m: print(m, flush=True)  # noqa: E731
    command = "mmcl sweep " + " ".join(argv)
    try:
        cfg = load_sweep_config(args.config, overrides)
        out = Path(args.out or cfg.out or Path("runs/sweep") / Path(args.config).stem)
        if args.list:
            for i, (k, seed) in enumerate(points(cfg)):
                done = "done" if point_file(out, k, seed).exists() else "to do"
                print(f"{i}\tencoding size {k}\tseed {seed}\t{done}")
            return 0
        if args.jobs < 1:
            raise SweepError(f"--jobs must be >= 1, got {args.jobs}")
        if args.jobs > 1 and (args.points is not None or args.collect):
            raise SweepError(
                "--jobs runs every point of the sweep; it does not combine with --points or --collect"
            )
        if not args.collect:
            if args.points is not None:
                run_points(cfg, out, parse_points(args.points, len(points(cfg))), log)
                if args.no_collect or any(not point_file(out, k, s).exists() for k, s in points(cfg)):
                    log(
                        f"[sweep] points {args.points} done; `mmcl sweep --config {args.config} --collect` draws"
                    )
                    return 0
            elif args.jobs > 1:
                passed = [
                    a
                    for pair in (("--encoding-sizes", args.encoding_sizes), ("--seeds", args.seeds))
                    if pair[1] is not None
                    for a in pair
                ]
                run_parallel(cfg, out, args.config, args.jobs, passed, log)
            else:
                run_points(cfg, out, range(len(points(cfg))), log)
        summary = collect(cfg, out, command)
    except (SweepError, ValueError) as err:
        return user_error("mmcl sweep", err)
    vl = summary["val_loss"]
    print(
        f"validation loss elbow at encoding size {vl['elbow']}; wrote {out}/fig8_3.png, fig8_4.png, scores.csv, "
        "val_loss.csv, summary.json"
    )
    return 0
