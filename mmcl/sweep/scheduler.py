"""Which points run where: in this process, or ``--jobs N`` point processes at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from mmcl.io import write_json
from mmcl.sweep.analysis import collect
from mmcl.sweep.config import SweepConfig, SweepError, check_points, fingerprint, point_file, points
from mmcl.sweep.runner import m3di_run, simulation_run


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


def run_parallel(cfg: SweepConfig, out: Path, config_args: list[str], jobs: int, log=print) -> None:
    """Every point, ``jobs`` at a time, each in its own ``mmcl sweep CONFIG_ARGS --points`` process
    (``config_args``: --config and the config keys of the parent command)."""
    todo = [i for i, (k, s) in enumerate(points(cfg)) if not point_file(out, k, s).exists()]
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    check_points(cfg, out, range(len(points(cfg))))
    out.mkdir(parents=True, exist_ok=True)
    running: dict[int, tuple[subprocess.Popen, Any]] = {}
    failed: list[str] = []
    try:
        _schedule(todo, running, failed, jobs, out, config_args, env, threads, log)
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
    config_args: list[str],
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
            cmd = [sys.executable, "-m", "mmcl.cli", "sweep", *config_args, "--out", str(out)]
            cmd += ["--points", f"{i}:{i + 1}", "--no-collect"]
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
