"""``mmcl`` command line: a thin dispatcher to each stage's own ``main(argv)``.

Subcommands import their module only when called, so ``mmcl probe`` never pays for Lightning
and ``mmcl simulate`` never needs the shards.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("mmcl.train.cli", "train image/text encoders with symmetric InfoNCE (LightningCLI)"),
    "embed": ("mmcl.embed", "encode splits with a checkpoint, write embeddings + latents"),
    "probe": ("mmcl.probing.cli", "linear / nonlinear probes of every factor (SPEC 4)"),
    "sweep": ("mmcl.sweep", "encoding-size x seed sweeps, Fig. 8.3 / 8.4 plots"),
    "simulate": ("mmcl.simulation.cli", "numerical simulation of Table 8.1"),
    "dmvae": ("mmcl.dmvae.cli", "DMVAE: fit / generate / eval (seed 003 ch. 9)"),
}


def usage() -> str:
    lines = ["usage: mmcl COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:10s} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`mmcl COMMAND --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"mmcl: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
