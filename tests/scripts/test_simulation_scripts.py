"""experiments/simulation_steps_curve/simulation_steps_curve.py on a tiny simulation: one run resumed to each step count."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TINY = REPO / "configs/simulation/tiny.yaml"  # what tests/mmcl/simulation trains too


def run_curve(tmp: Path, *steps: int) -> subprocess.CompletedProcess:
    config = TINY
    cmd = [
        sys.executable,
        str(REPO / "experiments/simulation_steps_curve/simulation_steps_curve.py"),
        "--config",
        str(config),
    ]
    cmd += ["--root", str(tmp / "runs"), "--out", str(tmp / "out"), "--row", "p0.75-cau"]
    cmd += ["--steps", *map(str, steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_steps_curve_resumes_one_run_and_names_files_by_the_whole_row(tmp_path: Path) -> None:
    first = run_curve(tmp_path, 10)
    assert first.returncode == 0, first.stderr
    second = run_curve(tmp_path, 10, 20)
    assert second.returncode == 0, second.stderr
    # the row name holds a dot (p0.75-cau); the files are named by all of it
    csv_path = tmp_path / "out" / "steps_curve_p0.75-cau.csv"
    assert csv_path.exists() and (tmp_path / "out" / "steps_curve_p0.75-cau.png").exists()
    rows = list(csv.DictReader(csv_path.open()))
    assert [int(r["steps"]) for r in rows] == [10, 20]
    assert "resuming from step 10" in second.stdout  # resumed, not retrained from step 0
    run = tmp_path / "runs" / "multimodal" / "p0.75-cau" / "seed0"
    assert json.loads((run / "metrics_steps20.json").read_text())["steps"] == 20
    assert "10 steps done" not in second.stdout  # the kept 10-step evaluation was not redone
    # a step count below the checkpoint's cannot be reached by resuming: refused, named
    back = run_curve(tmp_path, 5)
    assert back.returncode != 0 and "already at step 20" in back.stderr
