"""``mmcl embed``: encode dataset splits with a trained checkpoint (docs/formats.md, Embeddings).

    mmcl embed CKPT ROOT --split val test --out DIR

writes ``DIR/embeddings_<split>.npz`` with the representations ``image`` and ``text`` (float32,
(N, encoding_size)) and one ``factor:<name>`` array per numeric ground-truth factor of the
manifest's factor table (int64 discrete, float64 continuous; the string factor
``object_color_name`` is left out, ``object_color_index`` carries it), rows in sample-index
order; and ``DIR/embeddings.json`` saying that image factors are probed from ``image`` and text
factors from ``text`` (the protocol of seed 003 §8.4.2 and the upstream evaluation).

The checkpoint's vocabulary must equal the dataset's: token ids are only meaningful with the
vocabulary the text encoder was trained on.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

import numpy as np
import torch

from mmcl.checkpoint import load_checkpoint, rebuild_module
from mmcl.cli import user_error
from mmcl.data import MultimodalDataModule, normalize_images
from mmcl.io import atomic_write_text, save_npz
from mmcl.manifest import DataError, Manifest
from mmcl.tokenizer import TokenizerError
from mmcl.train.module import ContrastiveModule

REPRESENTATIONS = ("image", "text")


class EmbedError(ValueError):
    """Unusable checkpoint or output folder; the message names the file."""


def load_module(ckpt_path: str | Path, map_location: str = "cpu") -> tuple[ContrastiveModule, dict]:
    """Rebuild :class:`ContrastiveModule` from a Lightning checkpoint; returns (module, checkpoint)."""
    path = Path(ckpt_path)
    ckpt = load_checkpoint(path, "checkpoint", map_location, error=EmbedError)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise EmbedError(f"{path}: not a Lightning checkpoint of `mmcl fit` (no state_dict/hyper_parameters)")
    accepted = inspect.signature(ContrastiveModule.__init__).parameters
    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if k in accepted}
    hparams["compile"] = False  # compiled or not, the weights are the same
    module = rebuild_module(
        ContrastiveModule, hparams, ckpt["state_dict"], path, "contrastive model", EmbedError
    )
    return module, ckpt


def factor_table(manifest: Manifest) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """(factors metadata, factors per representation): every numeric factor, by modality."""
    factors: dict[str, dict] = {}
    per_rep: dict[str, list[str]] = {}
    for rep in REPRESENTATIONS:
        names = []
        for f in manifest.factors_of(rep):
            factors[f.name] = {"kind": f.kind, "role": f.role, "n_values": f.n_values}
            if f.period is not None:
                factors[f.name]["period"] = f.period
            names.append(f.name)
        per_rep[rep] = names
    return factors, per_rep


@torch.no_grad()
def embed_split(
    module: ContrastiveModule,
    data: MultimodalDataModule,
    split: str,
    device: torch.device,
    num_workers: int = 0,
) -> dict[str, np.ndarray]:
    """Arrays of one split: representations and factors, sorted by sample index."""
    loader = data.dataloader(split, train=False, rank=0, world_size=1, num_workers=num_workers)
    zs: dict[str, list[torch.Tensor]] = {r: [] for r in REPRESENTATIONS}
    latents: dict[str, list[torch.Tensor]] = {}
    index = []
    for batch in loader:
        batch = normalize_images(
            {"image": batch["image"].to(device), **{k: v for k, v in batch.items() if k != "image"}},
            data.image_mean,
            data.image_std,
        )
        z_image, z_text = module(batch["image"], batch["text"].to(device))
        zs["image"].append(z_image.float().cpu())
        zs["text"].append(z_text.float().cpu())
        index.append(batch["index"])
        for modality in REPRESENTATIONS:
            for name, values in batch[f"latents_{modality}"].items():
                if modality == "text" and name in batch["latents_image"]:
                    if not torch.equal(values, batch["latents_image"][name]):
                        raise DataError(
                            f"{data.root / split}: shared factor {name} differs between image and text"
                        )
                    continue
                latents.setdefault(name, []).append(values)
    order = torch.cat(index).argsort()
    out = {r: torch.cat(zs[r])[order].numpy().astype(np.float32) for r in REPRESENTATIONS}
    for name, parts in latents.items():
        values = torch.cat(parts)[order]
        out[f"factor:{name}"] = values.numpy().astype(np.int64 if values.dtype == torch.int64 else np.float64)
    return out


def embed(
    ckpt_path: str | Path,
    root: str | Path,
    splits: list[str],
    out: str | Path,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str = "auto",
) -> dict:
    """Encode ``splits`` of the dataset at ``root`` with the checkpoint; returns embeddings.json."""
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    module, ckpt = load_module(ckpt_path)
    module.to(dev)
    vocabulary = ckpt["hyper_parameters"].get("vocabulary")
    try:
        data = MultimodalDataModule(
            str(root), batch_size=batch_size, num_workers=num_workers, expected_vocabulary=vocabulary
        )
    except (DataError, TokenizerError) as exc:
        raise EmbedError(f"{ckpt_path} cannot encode {root}: {exc}") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    factors, per_rep = factor_table(data.manifest)
    for split in splits:
        arrays = embed_split(module, data, split, dev, num_workers)
        save_npz(out / f"embeddings_{split}.npz", **arrays)
    hp = {k: v for k, v in ckpt["hyper_parameters"].items() if k not in ("vocabulary", "_instantiator")}
    meta = {
        "representations": {rep: {"factors": per_rep[rep]} for rep in REPRESENTATIONS},
        "factors": factors,
        "seed": ckpt.get("mmcl_seed"),
        "source": {
            "command": "mmcl embed",
            "checkpoint": str(Path(ckpt_path).resolve()),
            "global_step": ckpt.get("global_step"),
            "epoch": ckpt.get("epoch"),
            "hparams": hp,
            "dataset": str(Path(root).resolve()),
            "dataset_config_sha256": data.manifest.raw.get("config_sha256"),
            "dataset_seed": data.manifest.raw.get("seed"),
            "splits": list(splits),
        },
    }
    atomic_write_text(out / "embeddings.json", json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmcl embed", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a checkpoint written by `mmcl fit` (e.g. RUN/checkpoints/last.ckpt)")
    p.add_argument("root", help="dataset root holding manifest.json")
    p.add_argument("--split", nargs="+", default=["val", "test"], help="splits to encode (default: val test)")
    p.add_argument(
        "--out", required=True, help="output folder for embeddings_<split>.npz and embeddings.json"
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=0, help="decoding worker processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        meta = embed(
            args.checkpoint, args.root, args.split, args.out, args.batch_size, args.num_workers, args.device
        )
    except (EmbedError, DataError, TokenizerError) as exc:
        return user_error("mmcl embed", exc)
    n = {s: int(np.load(Path(args.out) / f"embeddings_{s}.npz")["image"].shape[0]) for s in args.split}
    print(f"mmcl embed: wrote {', '.join(f'{s} ({n[s]} samples)' for s in args.split)} to {args.out}")
    return 0 if meta else 1


if __name__ == "__main__":
    sys.exit(main())
