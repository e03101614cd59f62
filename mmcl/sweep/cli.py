"""``mmcl sweep``: a thin command over :mod:`mmcl.sweep`'s library calls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from mmcl.cli import user_error
from mmcl.sweep.analysis import collect
from mmcl.sweep.config import SweepError, load_sweep_config, parse_points, point_file, points
from mmcl.sweep.scheduler import run_parallel, run_points


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
