"""``mmcl sweep``: a thin command over :mod:`mmcl.sweep`'s library calls."""

from __future__ import annotations

import sys
from pathlib import Path

from mmcl.cli import config_parser, parse_config_args, renamed_flags, user_error
from mmcl.sweep.analysis import collect
from mmcl.sweep.config import (
    SweepConfig,
    SweepError,
    parse_points,
    point_file,
    points,
    sweep_config_from_dict,
)
from mmcl.sweep.scheduler import run_parallel, run_points

PROG = "mmcl sweep"
RENAMED = {"--encoding-sizes": "--encoding_sizes"}  # the spelling of the argparse parser this one replaced
SCHEDULING = ("points", "jobs", "collect", "no_collect", "list")  # flags that are not sweep config keys


def build_parser():
    p = config_parser(
        PROG,
        "encoding-size x seed sweeps (Fig. 8.3, 8.4): --config configs/sweep/*.yaml, "
        "then any sweep config key as --key VALUE (e.g. --encoding_sizes '[1, 5, 8]', --out DIR)",
    )
    p.add_argument(
        "--points",
        type=str | None,
        default=None,
        help="run only points I:J of the sweep (numbered K-major; see --list)",
    )
    p.add_argument("--jobs", type=int, default=1, help="run N points at a time, each in its own process")
    p.add_argument(
        "--collect", action="store_true", help="only build tables and figures from finished points"
    )
    p.add_argument(
        "--no-collect", action="store_true", help="with --points: do not build the tables afterwards"
    )
    p.add_argument("--list", action="store_true", help="print the numbered points and exit")
    p.add_class_arguments(SweepConfig)
    return p


def config_values(argv: list[str]):
    """(the checked sweep config, the parsed flags) of ``argv`` (``--config`` and any overrides)."""
    args = parse_config_args(build_parser(), renamed_flags(argv, RENAMED, PROG), "sweep")
    if not args.config:
        raise SweepError("--config is required (configs/sweep/*.yaml)")
    values = {k: v for k, v in args.as_dict().items() if k not in ("config", *SCHEDULING)}
    return sweep_config_from_dict(values, str(args.config[-1].relative)), args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log = lambda m: print(m, flush=True)  # noqa: E731
    command = "mmcl sweep " + " ".join(argv)  # as typed
    argv = renamed_flags(argv, RENAMED, PROG)
    try:
        cfg, args = config_values(argv)
        config = str(args.config[-1].relative)
        out = Path(cfg.out or Path("runs/sweep") / Path(config).stem)
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
                    log(f"[sweep] points {args.points} done; `mmcl sweep --config {config} --collect` draws")
                    return 0
            elif args.jobs > 1:  # each point process gets this command's config keys
                run_parallel(cfg, out, config_args(argv), args.jobs, log)
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


def config_args(argv: list[str]) -> list[str]:
    """``argv`` without the scheduling flags: what sets the sweep's config (--config, its keys)."""
    out, skip = [], False
    for arg in argv:
        flag = arg.partition("=")[0]
        if skip:
            skip = False
        elif flag.lstrip("-").replace("-", "_") in SCHEDULING:
            skip = "=" not in arg and flag in ("--points", "--jobs")
        else:
            out.append(arg)
    return out
