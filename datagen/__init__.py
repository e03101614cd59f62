"""Multimodal3DIdent generator: latents -> text -> Blender renders -> webdataset shards.

Never imports ``mmcl``; the shard format (docs/formats.md) is the only contract.
"""

__version__ = "0.1.0"
