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

from mmcl.sweep.analysis import NONLINEAR, collect, elbow, nonlinear_records, summarise, write_outputs
from mmcl.sweep.cli import main
from mmcl.sweep.config import (
    KINDS,
    M3diSweep,
    SimulationSweep,
    SweepConfig,
    SweepError,
    check_points,
    fingerprint,
    load_sweep_config,
    parse_points,
    point_file,
    points,
)
from mmcl.sweep.plots import plot_fig8_3, plot_fig8_4
from mmcl.sweep.runner import last_val_loss, m3di_run, simulation_run
from mmcl.sweep.scheduler import run_parallel, run_points, run_sweep

__all__ = [
    "KINDS",
    "M3diSweep",
    "NONLINEAR",
    "SimulationSweep",
    "SweepConfig",
    "SweepError",
    "check_points",
    "collect",
    "elbow",
    "fingerprint",
    "last_val_loss",
    "load_sweep_config",
    "m3di_run",
    "main",
    "nonlinear_records",
    "parse_points",
    "plot_fig8_3",
    "plot_fig8_4",
    "point_file",
    "points",
    "run_parallel",
    "run_points",
    "run_sweep",
    "simulation_run",
    "summarise",
    "write_outputs",
]
