"""DMVAE: disentangling multimodal VAE on contrastively learned content (seed 003 ch. 9).

* :mod:`mmcl.dmvae.losses` -- PoE, MoPoE-InfoNCE (Eq. 9.3), ELBO (Eq. 9.4), discriminator BCE
  (Eq. 9.7) and MI estimate (Eq. 9.8) as pure functions;
* :mod:`mmcl.dmvae.stage1` / :mod:`mmcl.dmvae.stage2` -- the two Lightning modules;
* :mod:`mmcl.dmvae.fit`, :mod:`mmcl.dmvae.generate`, :mod:`mmcl.dmvae.evaluate`,
  :mod:`mmcl.dmvae.ablate` -- the ``mmcl dmvae`` subcommands.
"""
