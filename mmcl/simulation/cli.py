"""``mmcl simulate``: the numerical simulation of seed 003 §8.4.1 (Table 8.1, App. A.6).

    mmcl simulate --config configs/simulation/cpu.yaml --out runs/simulation/cpu \\
        [--rows '[p0.75-cau]'] [--seeds '[0]'] [--steps 2000] ...

The parser is jsonargparse's, as for ``mmcl fit`` and ``mmcl dmvae fit``: ``--config FILE``, then
every :class:`~mmcl.simulation.config.SimulationConfig` key as ``--key VALUE`` (later wins; the
old ``--key-with-dashes`` spellings still work, with a deprecation line). An unknown key or a
value of the wrong type is one sentence and exit status 2. Re-running the same command resumes a
killed grid.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from mmcl.cli import config_parser, parse_config_args, renamed_flags, user_error
from mmcl.simulation.config import FIELDS, SimulationConfig, from_dict
from mmcl.simulation.run import run_grid

PROG = "mmcl simulate"
# the spellings of the hand-written parser this one replaced
DASHED = {"--" + name.replace("_", "-"): "--" + name for name in FIELDS if "_" in name}


def build_parser():
    p = config_parser(
        PROG,
        "Numerical simulation of Table 8.1 (seed 003). --config FILE (configs/simulation/*.yaml; "
        "default: the paper's settings), then any config key as --key VALUE.",
    )
    p.add_argument(
        "--out",
        type=str | None,
        default=None,
        help="output directory (default runs/simulation/<config name>)",
    )
    p.add_class_arguments(SimulationConfig)
    return p


def parse_args(argv: list[str]) -> tuple[SimulationConfig, str | None, str]:
    """(config, --out, config name) of ``argv``; a ``ValueError`` with one sentence naming the key
    (and the config file where the key came from one)."""
    ns = parse_config_args(build_parser(), renamed_flags(argv, DASHED, PROG), "simulation")
    files = ns.get("config") or []
    source = str(files[-1].relative) if files else "defaults"
    cfg = from_dict({name: ns[name] for name in FIELDS}, source)
    return cfg, ns.out, Path(source).stem if files else "paper"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg, out, name = parse_args(argv)
    except ValueError as exc:
        return user_error(PROG, exc)
    out = Path(out) if out else Path("runs/simulation") / name
    command = "mmcl simulate " + shlex.join(argv)
    records = run_grid(cfg, out, command=command, log=lambda msg: print(msg, flush=True))
    print((out / "table.md").read_text())
    print(f"wrote {out / 'table.md'} and {out / 'table.csv'} ({len(records)} cells)")
    return 0
