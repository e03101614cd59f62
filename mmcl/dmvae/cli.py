"""``mmcl dmvae``: fit / generate / eval / ablate (seed 003 ch. 9).

mmcl dmvae fit --config configs/dmvae/default.yaml [--stages [1,2,gmm]] [--KEY VALUE ...]
mmcl dmvae generate --run RUN [--mode text2image image2text unconditional]
mmcl dmvae eval --run RUN
mmcl dmvae ablate --config configs/dmvae/default.yaml --deltas 0 10 100 400 1600 --out DIR
"""

from __future__ import annotations

from mmcl.cli import dispatch

SUBCOMMANDS = {
    "fit": ("mmcl.dmvae.fit", "train stage 1 (MoPoE-InfoNCE), stage 2 (conditional VAEs) and the GMM prior"),
    "generate": ("mmcl.dmvae.generate", "sample grids: text->image, image->text, unconditional"),
    "eval": ("mmcl.dmvae.evaluate", "coherence, probing matrix, test ELBO, Frechet distance"),
    "ablate": ("mmcl.dmvae.ablate", "delta ablation: leakage, coherence and ELBO vs delta"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("mmcl dmvae", SUBCOMMANDS, argv)
