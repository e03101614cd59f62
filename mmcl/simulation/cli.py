"""``mmcl simulate``: the numerical simulation of seed 003 §8.4.1 (Table 8.1, App. A.6).

    mmcl simulate --config configs/simulation/cpu.yaml --out runs/simulation/cpu \\
        [--rows '[p0.75-cau]'] [--seeds '[0]'] [--steps 2000] ...

Every simulation config key can be overridden as ``--key value`` (value parsed as YAML);
unknown keys are an error. Re-running the same command resumes a killed grid.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mmcl.cli import user_error
from mmcl.simulation.config import FIELDS, load_config, parse_override
from mmcl.simulation.run import run_grid


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(
        prog="mmcl simulate",
        description="Numerical simulation of Table 8.1 (seed 003). Any config key can be given as "
        f"--key VALUE (YAML); keys: {', '.join(FIELDS)}.",
    )
    parser.add_argument("--config", help="YAML file (configs/simulation/*.yaml); default: paper settings")
    parser.add_argument("--out", help="output directory (default runs/simulation/<config name>)")
    args, rest = parser.parse_known_args(argv)
    overrides = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--"):
            parser.error(f"unexpected argument {token!r}; overrides take the form --key VALUE")
        if "=" in token:
            key, value = token.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(rest):
                parser.error(f"override {token} needs a value")
            key, value = token, rest[i + 1]
            i += 2
        name, parsed = parse_override(key, value)
        overrides[name] = parsed
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, overrides = parse_args(argv)
        cfg = load_config(args.config, overrides)
    except ValueError as err:
        return user_error("mmcl simulate", err)
    name = Path(args.config).stem if args.config else "paper"
    out = Path(args.out) if args.out else Path("runs/simulation") / name
    command = "mmcl simulate " + shlex.join(argv)
    records = run_grid(cfg, out, command=command, log=lambda msg: print(msg, flush=True))
    print((out / "table.md").read_text())
    print(f"wrote {out / 'table.md'} and {out / 'table.csv'} ({len(records)} cells)")
    return 0
