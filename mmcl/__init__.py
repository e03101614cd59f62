"""Multimodal contrastive learning, identifiability probes, simulation and DMVAE.

Reads datasets only through their files (docs/formats.md); never imports ``datagen``.
"""

__version__ = "0.1.0"
