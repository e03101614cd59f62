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

Two measurements per resolution:

* ``paired`` (the headline): every variant is built at once (model, optimiser, loader with its
  worker) and each round runs one training step of every variant, in rotating order. On a
  shared machine whatever else runs then slows all variants alike; samples/s is the batch size
  over the median step time. "ours" here runs the operations of ``mmcl fit``'s training step
  (same loader, normalisation, autocast, loss, clipping, Adam) without the Lightning loop.
* ``end_to_end``: the baseline loop and the recommended variant through the real Lightning
  ``Trainer`` (what ``mmcl fit`` runs), one after the other, to confirm the figures and the
  data-wait fraction of the full pipeline.

The data-wait fraction is the time blocked in the loader's ``next()`` over the step time; the
load average and the CPU time per sample (this process and the variant's loader worker) are
recorded alongside.

Prints one JSON document and writes docs/bench/train.json. The images are rendered once with
datagen (``default`` preset) into ``--data-dir`` and reused.

    python benchmarks/bench_train.py                      # about 30-60 min on 2 idle cores
    python benchmarks/bench_train.py --quick              # smoke run
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmcl.machine import machine_record
from mmcl.paths import relative_inside

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
    from importlib.metadata import version

    return machine_record(
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        torchvision=version("torchvision"),
        lightning=version("lightning"),
        cuda=torch.cuda.is_available(),
    )


# ----------------------------------------------------------------------------- data
def prepare_data(data_dir: Path, resolution: int, n_images: int) -> tuple[Path, Path]:
    """(shard root, published-layout root) with the same ``n_images`` renders."""
    shards = data_dir / f"r{resolution}" / "shards"
    published = data_dir / f"r{resolution}" / "published"
    manifest = shards / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("counts", {}).get("train") != n_images:
        shutil.rmtree(data_dir / f"r{resolution}")  # made for another --images
    if not manifest.is_file():
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


def cpu_seconds(loader) -> float:
    """CPU time (user + system, all threads) of this process and the loader's worker processes.

    Unlike wall time it hardly depends on what else runs on the machine, so it is recorded as
    a contention-robust second measure: CPU-seconds spent per training sample."""
    pids = [os.getpid()]
    it = getattr(loader, "_iterator", None)
    pids += [w.pid for w in getattr(it, "_workers", [])]
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def summarise(ends: list[float], waits: list[float], cpus: list[float], warmup: int, batch_size: int) -> dict:
    """Figures over steps warmup..end from per-step end times, cumulative wait and CPU seconds."""
    wall = ends[-1] - ends[warmup - 1]
    wait = waits[-1] - waits[warmup - 1]
    cpu = cpus[-1] - cpus[warmup - 1]
    steps = len(ends) - warmup
    return {
        "samples_per_sec": steps * batch_size / wall,
        "step_sec": wall / steps,
        "data_wait_frac": wait / wall,
        "cpu_ms_per_sample": 1e3 * cpu / (steps * batch_size),
        "steps": steps,
    }


def run_baseline(published: Path, manifest, batch_size: int, workers: int, warmup: int, steps: int) -> dict:
    """The upstream-style loop on its own (the end-to-end comparison): the paired section's
    baseline stepper, stepped ``warmup + steps`` times."""
    st = make_baseline_stepper(published, manifest, batch_size, workers)
    ends = []
    for _ in range(warmup + steps):
        st.step()
        ends.append(time.perf_counter())
    return summarise(
        ends, list(itertools.accumulate(st.waits)), list(itertools.accumulate(st.cpus)), warmup, batch_size
    )


def run_ours(shards: Path, batch_size: int, workers: int, warmup: int, steps: int, options: dict) -> dict:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback

    from mmcl.data import MultimodalDataModule

    class StepClock(Callback):
        def __init__(self):
            self.ends, self.waits, self.cpus = [], [], []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.ends.append(time.perf_counter())
            self.waits.append(trainer.train_dataloader.wait_seconds)
            self.cpus.append(cpu_seconds(trainer.train_dataloader))

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
    return summarise(clock.ends, clock.waits, clock.cpus, warmup, batch_size)


class Stepper:
    """One variant of the paired comparison: its own model, optimiser, loader and clocks."""

    def __init__(self, name: str, loader, model, step_fn):
        self.name, self.loader, self.model, self.step_fn = name, loader, model, step_fn
        self.it = iter(loader)
        self.times, self.waits, self.cpus = [], [], []
        self._cpu_last = cpu_seconds(loader)

    def next_batch(self):
        try:
            return next(self.it)
        except StopIteration:  # upstream's InfiniteIterator / a new epoch of ours
            self.it = iter(self.loader)
            return next(self.it)

    def step(self) -> None:
        t0 = time.perf_counter()
        batch = self.next_batch()
        t1 = time.perf_counter()
        self.step_fn(batch)
        t2 = time.perf_counter()
        cpu = cpu_seconds(self.loader)  # this process during the step + the worker since last step
        self.times.append(t2 - t0)
        self.waits.append(t1 - t0)
        self.cpus.append(cpu - self._cpu_last)
        self._cpu_last = cpu


def make_baseline_stepper(published: Path, manifest, batch_size: int, workers: int) -> Stepper:
    from mmcl.data import IMAGE_MEAN, IMAGE_STD
    from mmcl.losses import infonce_symmetric

    ds = UpstreamStyleDataset(published, manifest.tokenizer, IMAGE_MEAN, IMAGE_STD)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
        pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
    )  # fmt: skip
    model = make_model(manifest)
    params = list(model.image_encoder.parameters()) + list(model.text_encoder.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-5)

    def step(data):  # upstream main_imgtxt.train_step
        optimizer.zero_grad()
        loss = infonce_symmetric(model.image_encoder(data["image"]), model.text_encoder(data["text"]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=2.0, norm_type=2)
        optimizer.step()
        loss.item()

    return Stepper("baseline", loader, model, step)


def make_ours_stepper(name: str, shards: Path, batch_size: int, workers: int, options: dict) -> Stepper:
    """The operations of ``mmcl fit``'s training step without the Lightning loop around them:
    MultimodalDataModule loader, normalisation after transfer, autocast, fp32 loss through
    ``global_contrastive_loss``, clipping, Adam."""
    from mmcl.data import MultimodalDataModule
    from mmcl.distributed import global_contrastive_loss

    dm = MultimodalDataModule(str(shards), batch_size=batch_size, num_workers=workers, seed=0)
    model = make_model(dm.manifest, options["channels_last"], options["compile"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    bf16 = options["precision"] == "bf16-mixed"

    def step(batch):
        batch = dm.on_after_batch_transfer(batch, 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z_image, z_text = model(batch["image"], batch["text"])
        with torch.autocast("cpu", enabled=False):
            loss = global_contrastive_loss(z_image.float(), z_text.float(), tau=model.tau)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=2.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()

    return Stepper(name, dm.dataloader("train", train=True), model, step)


def run_paired(shards, published, manifest, variants, batch_size, workers, warmup, rounds) -> dict:
    """All variants alive at once; every round each does one step, in a rotating order, so
    that whatever else runs on the machine hits all of them alike. Medians over rounds."""
    steppers = []
    for name in variants:
        if name == "baseline":
            steppers.append(make_baseline_stepper(published, manifest, batch_size, workers))
        else:
            steppers.append(make_ours_stepper(name, shards, batch_size, workers, VARIANTS[name]))
    load = [os.getloadavg()[0]]
    for r in range(warmup + rounds):
        k = r % len(steppers)
        for st in steppers[k:] + steppers[:k]:
            st.step()
        load.append(os.getloadavg()[0])
        if r >= warmup:
            print(f"[bench] round {r - warmup}: " + ", ".join(f"{st.name} {st.times[-1]:.2f}s" for st in steppers),
                  file=sys.stderr)  # fmt: skip
    out = {}
    for st in steppers:
        t, w, c = st.times[warmup:], st.waits[warmup:], st.cpus[warmup:]
        out[st.name] = {
            "samples_per_sec": batch_size / statistics.median(t),
            "step_sec_median": statistics.median(t),
            "step_sec_quartiles": [float(np.percentile(t, 25)), float(np.percentile(t, 75))],
            "data_wait_frac": sum(w) / sum(t),
            "cpu_ms_per_sample": 1e3 * statistics.median(c) / batch_size,
            "steps": len(t),
        }
    base = out.get("baseline", {}).get("samples_per_sec", math.nan)
    for name in out:
        out[name]["speedup_vs_baseline"] = out[name]["samples_per_sec"] / base
    return {"variants": out, "load_avg_1min": {"min": min(load), "max": max(load)}}


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
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers, every loop")
    p.add_argument("--warmup", type=int, default=2, help="steps (rounds) not measured")
    p.add_argument("--rounds", type=int, default=12, help="paired rounds: one step of every variant each")
    p.add_argument("--lightning-steps", type=int, default=6, help="steps of each end-to-end run (0: skip)")
    p.add_argument("--lightning-rounds", type=int, default=2)
    variant_names = [v for v in VARIANTS if "compile" not in v]
    p.add_argument("--variants", nargs="+", default=variant_names, choices=list(VARIANTS))
    p.add_argument(
        "--ours",
        default="ours/bf16+channels_last",
        choices=[v for v in VARIANTS if v != "baseline"],
        help="the variant reported as 'ours' (the recommended settings)",
    )
    p.add_argument("--data-dir", type=Path, default=REPO / "runs" / "bench_train_data")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--quick", action="store_true", help="smoke run: 64x64 only, few steps")
    args = p.parse_args(argv)
    if args.quick:
        args.resolutions, args.warmup, args.rounds, args.images = [64], 1, 2, 64
        args.lightning_steps, args.lightning_rounds = 2, 1
    for needed in ("baseline", args.ours):
        if needed not in args.variants:
            args.variants.insert(0, needed)
    from mmcl.data import load_manifest

    # paths relative to the repository: the committed JSON names no folder of this machine
    settings = {k: (relative_inside(v, REPO) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results: dict = {"machine": machine(), "settings": settings, "resolutions": {}}
    for res in args.resolutions:
        shards, published = prepare_data(args.data_dir, res, args.images)
        manifest = load_manifest(shards)
        print(f"[bench] {res}px: paired rounds", file=sys.stderr)
        paired = run_paired(shards, published, manifest, args.variants, args.batch_size, args.workers,
                            args.warmup, args.rounds)  # fmt: skip
        entry = {"paired": paired, "ours": args.ours, "speedup": paired["variants"][args.ours]["speedup_vs_baseline"],
                 "ours_data_wait_frac": paired["variants"][args.ours]["data_wait_frac"]}  # fmt: skip
        if args.lightning_steps > 0:
            # End to end through Lightning (what `mmcl fit` runs) next to the baseline loop.
            runs: dict[str, list[dict]] = {"baseline": [], args.ours: []}
            for _ in range(args.lightning_rounds):
                for variant in runs:
                    load_before = os.getloadavg()[0]
                    if variant == "baseline":
                        r = run_baseline(published, manifest, args.batch_size, args.workers, args.warmup,
                                         args.lightning_steps)  # fmt: skip
                    else:
                        r = run_ours(shards, args.batch_size, args.workers, args.warmup, args.lightning_steps,
                                     VARIANTS[variant])  # fmt: skip
                    r["load_avg_1min"] = [load_before, os.getloadavg()[0]]
                    runs[variant].append(r)
                    print(f"[bench] {res}px lightning {variant}: {r['samples_per_sec']:.2f} samples/s, "
                          f"data wait {100 * r['data_wait_frac']:.1f}%", file=sys.stderr)  # fmt: skip
            entry["end_to_end"] = {
                v: {"samples_per_sec": statistics.median(r["samples_per_sec"] for r in rs),
                    "data_wait_frac": statistics.median(r["data_wait_frac"] for r in rs), "runs": rs}
                for v, rs in runs.items()
            }  # fmt: skip
            e2e = entry["end_to_end"]
            e2e["speedup"] = e2e[args.ours]["samples_per_sec"] / e2e["baseline"]["samples_per_sec"]
        entry["decode"] = decode_costs(published)
        results["resolutions"][str(res)] = entry
    text = json.dumps(results, indent=2)
    print(text)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
