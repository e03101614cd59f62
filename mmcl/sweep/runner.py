"""One run per (encoding size K, seed): the simulation, or mmcl fit -> mmcl embed -> probe."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mmcl.sweep.config import SweepConfig, SweepError


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
