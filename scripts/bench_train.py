"""Training-throughput benchmark: the upstream-style loop vs ``mmcl fit``'s pipeline.

Same machine, same model (ResNet-18 + text ConvNet, symmetric InfoNCE, Adam, clipping 2),
same batch and the same images, in one run, at 64x64 and 224x224:

* ``baseline`` -- what the upstream code does: PNG files in a folder (the published layout,
  written from our shards by ``datagen.convert.shards_to_published``), PIL decode,
  ``ToTensor`` + ``Normalize`` in a torch ``DataLoader`` (shuffle, drop_last, pin_memory as
  upstream; persistent workers so that epoch restarts on a small benchmark set do not count
  against it), fp32, contiguous memory, a plain Python loop.
* ``ours/...`` -- the real ``mmcl fit`` path: Lightning ``Trainer`` + ``ContrastiveModule``
  + ``MultimodalDataModule`` streaming webdataset shards (libpng decode via torchvision in
  the workers, uint8 batches, normalisation after transfer), with the model options
  ``channels_last``, ``precision=bf16-mixed`` and ``compile`` switched on one at a time.

Each variant trains ``--warmup`` + ``--steps`` steps; samples/s and the data-wait fraction
(time blocked in the loader's ``next()`` over wall time) are taken over the last ``--steps``.
Variants are interleaved over ``--rounds`` rounds and the median is reported, because the
machine may be shared; the load average around every measurement is recorded.

Prints one JSON document and writes docs/bench/train.json. The images are rendered once with
datagen (``default`` preset) into ``--data-dir`` and reused.

    python scripts/bench_train.py                      # about 30-60 min on 2 idle cores
    python scripts/bench_train.py --quick              # smoke run
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "bench" / "train.json"

VARIANTS: dict[str, dict] = {
    "baseline": {},
    "ours/fp32": {"channels_last": False, "precision": "32-true", "compile": False},
    "ours/channels_last": {"channels_last": True, "precision": "32-true", "compile": False},
    "ours/bf16": {"channels_last": False, "precision": "bf16-mixed", "compile": False},
    "ours/bf16+channels_last": {"channels_last": True, "precision": "bf16-mixed", "compile": False},
    "ours/bf16+channels_last+compile": {"channels_last": True, "precision": "bf16-mixed", "compile": True},
}


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    from importlib.metadata import version

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "lightning": version("lightning"),
        "cuda": torch.cuda.is_available(),
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------- data
def prepare_data(data_dir: Path, resolution: int, n_images: int) -> tuple[Path, Path]:
    """(shard root, published-layout root) with the same ``n_images`` renders."""
    shards = data_dir / f"r{resolution}" / "shards"
    published = data_dir / f"r{resolution}" / "published"
    if not (shards / "manifest.json").is_file():
        from datagen.config import make_config
        from datagen.pipeline import generate

        cfg = make_config(
            {
                "counts": {"train": n_images},
                "shard_size": 32,
                "seed": 11,
                "render": {"resolution": resolution},
            }
        )
        print(
            f"[bench] rendering {n_images} images at {resolution}x{resolution} into {shards}", file=sys.stderr
        )
        generate(cfg, shards, workers=min(2, os.cpu_count() or 1), progress=False, log=lambda m: None)
    if not (published / "train" / "text" / "text_raw.txt").is_file():
        from datagen.convert import shards_to_published

        shards_to_published(shards, published, progress=False, log=lambda m: None)
    return shards, published


class UpstreamStyleDataset(torch.utils.data.Dataset):
    """The upstream ``Multimodal3DIdent`` access pattern: one PNG file per sample opened with
    PIL, ``ToTensor`` + ``Normalize``; sentences read and tokenised once up front."""

    def __init__(self, root: Path, tokenizer, mean, std):
        from torchvision import transforms

        self.images = root / "train" / "images"
        sentences = (root / "train" / "text" / "text_raw.txt").read_text().splitlines()
        self.width = int(np.ceil(np.log10(len(sentences))))
        self.text = [tokenizer.encode_padded(s)[0] for s in sentences]
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, i: int) -> dict:
        with open(self.images / f"{str(i).zfill(self.width)}.png", "rb") as fh:
            image = Image.open(fh).convert("RGB")
        return {"image": self.transform(image), "text": self.text[i]}


def make_model(manifest, channels_last: bool = False, compile: bool = False):
    from mmcl.train.module import ContrastiveModule

    torch.manual_seed(0)
    return ContrastiveModule(
        encoding_size=4,
        vocabulary=list(manifest.tokenizer.vocabulary),
        max_text_length=manifest.tokenizer.max_length,
        lr=1e-5,
        channels_last=channels_last,
        compile=compile,
    )


def summarise(ends: list[float], waits: list[float], warmup: int, batch_size: int) -> dict:
    """Figures over steps warmup..end from per-step end times and cumulative wait seconds."""
    wall = ends[-1] - ends[warmup - 1]
    wait = waits[-1] - waits[warmup - 1]
    steps = len(ends) - warmup
    return {
        "samples_per_sec": steps * batch_size / wall,
        "step_sec": wall / steps,
        "data_wait_frac": wait / wall,
        "steps": steps,
    }


def run_baseline(published: Path, manifest, batch_size: int, workers: int, warmup: int, steps: int) -> dict:
    from mmcl.data import IMAGE_MEAN, IMAGE_STD
    from mmcl.losses import infonce_symmetric

    ds = UpstreamStyleDataset(published, manifest.tokenizer, IMAGE_MEAN, IMAGE_STD)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )
    model = make_model(manifest)
    params = list(model.image_encoder.parameters()) + list(model.text_encoder.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-5)
    ends, waits, wait = [], [], 0.0
    it = iter(loader)
    while len(ends) < warmup + steps:
        t = time.perf_counter()
        try:
            data = next(it)
        except StopIteration:  # upstream's InfiniteIterator
            it = iter(loader)
            data = next(it)
        wait += time.perf_counter() - t
        optimizer.zero_grad()
        loss = infonce_symmetric(model.image_encoder(data["image"]), model.text_encoder(data["text"]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=2.0, norm_type=2)
        optimizer.step()
        loss.item()
        ends.append(time.perf_counter())
        waits.append(wait)
    return summarise(ends, waits, warmup, batch_size)


def run_ours(shards: Path, batch_size: int, workers: int, warmup: int, steps: int, options: dict) -> dict:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback

    from mmcl.data import MultimodalDataModule

    class StepClock(Callback):
        def __init__(self):
            self.ends, self.waits = [], []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.ends.append(time.perf_counter())
            self.waits.append(trainer.train_dataloader.wait_seconds)

    dm = MultimodalDataModule(str(shards), batch_size=batch_size, num_workers=workers, seed=0)
    model = make_model(dm.manifest, options["channels_last"], options["compile"])
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=options["precision"],
        max_steps=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=2.0,
        callbacks=[clock],
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)
    return summarise(clock.ends, clock.waits, warmup, batch_size)


def decode_costs(published: Path, n: int = 64) -> dict:
    """ms per image: PIL (upstream) vs the torchvision/libpng decoder mmcl.data uses."""
    from mmcl.data import decode_png_rgb

    files = sorted((published / "train" / "images").glob("*.png"))[:n]
    blobs = [f.read_bytes() for f in files]
    t = time.perf_counter()
    for b in blobs:
        np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
    pil = (time.perf_counter() - t) / len(blobs) * 1e3
    t = time.perf_counter()
    for b in blobs:
        decode_png_rgb(b)
    tv = (time.perf_counter() - t) / len(blobs) * 1e3
    return {"pil_ms": pil, "torchvision_ms": tv, "mean_png_kib": sum(map(len, blobs)) / len(blobs) / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 224])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--images", type=int, default=128, help="rendered images per resolution")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers, both loops")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--variants", nargs="+", default=[v for v in VARIANTS if "compile" not in v], choices=list(VARIANTS)
    )
    p.add_argument(
        "--ours",
        default="ours/bf16+channels_last",
        choices=[v for v in VARIANTS if v != "baseline"],
        help="the variant reported as 'ours' (the recommended settings)",
    )
    p.add_argument("--data-dir", type=Path, default=REPO / "runs" / "bench_train_data")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--quick", action="store_true", help="smoke run: 64x64 only, 2+2 steps, one round")
    args = p.parse_args(argv)
    if args.quick:
        args.resolutions, args.warmup, args.steps, args.rounds, args.images = [64], 2, 2, 1, 64
    if args.ours not in args.variants:
        args.variants.append(args.ours)
    from mmcl.data import load_manifest

    results: dict = {
        "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "resolutions": {},
    }
    for res in args.resolutions:
        shards, published = prepare_data(args.data_dir, res, args.images)
        manifest = load_manifest(shards)
        runs: dict[str, list[dict]] = {v: [] for v in args.variants}
        for rnd in range(args.rounds):
            for variant in args.variants:
                load_before = os.getloadavg()[0]
                if variant == "baseline":
                    r = run_baseline(
                        published, manifest, args.batch_size, args.workers, args.warmup, args.steps
                    )
                else:
                    r = run_ours(
                        shards, args.batch_size, args.workers, args.warmup, args.steps, VARIANTS[variant]
                    )
                r["load_avg_1min"] = [load_before, os.getloadavg()[0]]
                runs[variant].append(r)
                print(
                    f"[bench] {res}px round {rnd} {variant}: {r['samples_per_sec']:.2f} samples/s, "
                    f"data wait {100 * r['data_wait_frac']:.1f}%, load {r['load_avg_1min']}",
                    file=sys.stderr,
                )
        table = {}
        for variant, rs in runs.items():
            table[variant] = {
                "samples_per_sec": statistics.median(r["samples_per_sec"] for r in rs),
                "data_wait_frac": statistics.median(r["data_wait_frac"] for r in rs),
                "step_sec": statistics.median(r["step_sec"] for r in rs),
                "rounds": rs,
            }
        base = table["baseline"]["samples_per_sec"] if "baseline" in table else math.nan
        for variant in table:
            table[variant]["speedup_vs_baseline"] = table[variant]["samples_per_sec"] / base
        results["resolutions"][str(res)] = {
            "variants": table,
            "ours": args.ours,
            "speedup": table[args.ours]["speedup_vs_baseline"],
            "ours_data_wait_frac": table[args.ours]["data_wait_frac"],
            "decode": decode_costs(published),
            "mean_png_bytes_per_image": sum(
                f.stat().st_size for f in (published / "train/images").glob("*.png")
            )
            / args.images,
        }
    text = json.dumps(results, indent=2)
    print(text)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
