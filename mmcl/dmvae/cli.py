"""``mmcl dmvae``: fit / generate / eval / ablate (seed 003 ch. 9).

mmcl dmvae fit --config configs/dmvae/default.yaml [--stages [1,2,gmm]] [--KEY VALUE ...]
mmcl dmvae generate --run RUN [--mode text2image image2text unconditional]
mmcl dmvae eval --run RUN
mmcl dmvae ablate --config configs/dmvae/default.yaml --deltas 0 10 100 400 1600 --out DIR
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "fit": ("mmcl.dmvae.fit", "train stage 1 (MoPoE-InfoNCE), stage 2 (conditional VAEs) and the GMM prior"),
    "generate": ("mmcl.dmvae.generate", "sample grids: text->image, image->text, unconditional"),
    "eval": ("mmcl.dmvae.evaluate", "coherence, probing matrix, test ELBO, Frechet distance"),
    "ablate": ("mmcl.dmvae.ablate", "delta ablation: leakage, coherence and ELBO vs delta"),
}


def usage() -> str:
    lines = ["usage: mmcl dmvae SUBCOMMAND [ARGS...]", "", "subcommands:"]
    lines += [f"  {name:9s} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"mmcl dmvae: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return int(importlib.import_module(SUBCOMMANDS[name][0]).main(rest) or 0)
