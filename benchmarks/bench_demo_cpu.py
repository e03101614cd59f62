"""The demo's CPU speed-ups and one ruled out, each side by side with what it would replace.

* ``render`` -- two render processes of one draft (64x64) image stream each, as ``datagen
  generate --workers 2`` runs them: unpinned (the old behaviour) and each pinned to its own core
  (``datagen.stages.cpu_slices``). Images/s of both together, rounds alternating, and the sha256
  of every stream's PNGs (pinning must not change a pixel).
* ``denoise`` -- one process on one core renders 40 draft scenes with each denoiser prefilter
  (ACCURATE: the draft preset's; FAST; NONE: the demo's) and without the denoiser: CPU ms per
  image (best of 2 rounds, alternating) and mean PSNR against 128-sample renders of the scenes.
* ``cache`` -- ms per training batch of the demo's dataset (``--data``, default runs/demo/data),
  epoch by epoch, read as the demo's fit reads it, without and with ``data.cache`` (decoded
  samples kept in memory after the first epoch); the batches must be the same.
* ``layout`` -- forward + backward of a batch of 64, one thread, of the demo's image ConvNet
  (global max pool), its text ConvNet and the DMVAE's width-8 deconv decoder, in the default
  (NCHW) layout and in channels-last (``mmcl.encoders.channels_last``; the text ConvNet's
  weights, which mmcl holds in channels-last, against a copy in the default layout); best of 3
  rounds of 5 steps, the layouts alternating.
* ``compile`` -- one training step (forward + backward + AdamW) of the demo's image and text
  ConvNets together, one thread, eager against ``torch.compile`` (inductor), with the seconds the
  first two compiled steps take; eager measured before and after.

Writes docs/bench/demo_cpu.json (machine, figures, ratios).

    python benchmarks/bench_demo_cpu.py [--images 150] [--sections render,layout]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

from mmcl.paths import relative_inside

REPO = Path(__file__).resolve().parents[1]


def _render_stream(args: tuple[int, int, bool, int]) -> tuple[float, str, float]:
    """One process: a draft ShardWorker renders the records of images [start, start + n) (one
    image before them warms the scene); (seconds, sha256 of the PNGs, CPU seconds)."""
    start, n, pin, cpu = args
    from datagen.config import make_config
    from datagen.meshes import load_library
    from datagen.stages import ShardTask, ShardWorker, pin_to, silence_blender, threads_per_worker

    if pin:
        pin_to((cpu,))
    silence_blender()
    config = make_config({"seed": 0, "counts": {"train": start + n + 1}, "preset": "draft"})
    worker = ShardWorker.from_library(config, load_library(), threads=threads_per_worker(2))
    list(worker.records(ShardTask("train", 0, start + n, start + n + 1)))  # warm: scene sync, kernels
    digest = hashlib.sha256()
    wall, cpu0 = time.perf_counter(), time.process_time()
    for record in worker.records(ShardTask("train", 0, start, start + n)):
        digest.update(record["png"])
    return time.perf_counter() - wall, digest.hexdigest(), time.process_time() - cpu0


def bench_render(images: int, rounds: int = 2) -> dict:
    ctx = mp.get_context("spawn")
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        return {"skipped": "needs 2 CPUs"}
    out: dict = {"images_per_process": images, "processes": 2, "rounds": {}}
    for _ in range(rounds):
        for pin in (False, True):
            with ctx.Pool(2) as pool:
                res = pool.map(_render_stream, [(0, images, pin, cpus[0]), (images, images, pin, cpus[1])])
            key = "pinned" if pin else "unpinned"
            out["rounds"].setdefault(key, []).append(
                {
                    "images_per_s": round(2 * images / max(t for t, _, _ in res), 2),
                    "cpu_s_per_image": round(sum(c for _, _, c in res) / (2 * images), 4),
                    "sha256": [h for _, h, _ in res],
                }
            )
    best = {k: max(v, key=lambda x: x["images_per_s"]) for k, v in out["rounds"].items()}
    out["images_per_s"] = {k: v["images_per_s"] for k, v in best.items()}
    out["cpu_s_per_image"] = {k: v["cpu_s_per_image"] for k, v in best.items()}
    out["pinned_over_unpinned"] = round(best["pinned"]["images_per_s"] / best["unpinned"]["images_per_s"], 2)
    out["pixels_identical"] = all(
        r["sha256"] == out["rounds"]["unpinned"][0]["sha256"] for v in out["rounds"].values() for r in v
    )
    return out


# The denoiser's prefilter (its albedo/normal passes) and what each setting costs and keeps,
# against a 128-sample render of the same scenes: the demo's draft settings otherwise.
DENOISE_VARIANTS = {
    "accurate": {"denoise_prefilter": "ACCURATE"},  # the draft preset's (Blender's default)
    "fast": {"denoise_prefilter": "FAST"},
    "none": {"denoise_prefilter": "NONE"},  # configs/datagen/demo.yaml
    "no_denoiser": {"denoise": False},
}


def _denoise_variants(args: tuple[int, int, int]) -> dict:
    """One process pinned to one CPU: ``n`` draft scenes rendered with each variant, ``rounds``
    rounds alternating (CPU ms per image, best round), and each variant's mean PSNR against a
    128-sample render with the draft's denoiser and against the draft preset's own pixels."""
    n, rounds, cpu = args
    import dataclasses

    import numpy as np

    from datagen.config import make_config
    from datagen.design import design_of
    from datagen.meshes import load_library
    from datagen.quality import psnr
    from datagen.stages import ShardWorker, pin_to, samples, silence_blender

    pin_to((cpu,))
    silence_blender()
    config = make_config({"seed": 0, "counts": {"train": n}, "preset": "draft"})
    worker = ShardWorker.from_library(config, load_library(), threads=1)
    renderer, design = worker.renderer, design_of(config)
    scenes = [
        (design.scene(s.image), s.render_seed) for s in samples(config, "train", range(n), worker.words)
    ]

    def render_all(settings):
        renderer.apply(settings, threads=1)
        renderer.render(*scenes[0])  # warm after a settings change
        t = time.process_time()
        images = [renderer.render(p, seed) for p, seed in scenes]
        return images, 1000 * (time.process_time() - t) / n

    reference, _ = render_all(dataclasses.replace(config.render, samples=128))
    out: dict = {
        "images": n,
        "rounds": rounds,
        "reference": "128 samples, ACCURATE prefilter",
        "variants": {},
    }
    pixels: dict = {}
    for _ in range(rounds):
        for name, change in DENOISE_VARIANTS.items():
            images, ms = render_all(dataclasses.replace(config.render, **change))
            pixels[name] = images
            entry = out["variants"].setdefault(name, {"settings": change, "cpu_ms_per_image": []})
            entry["cpu_ms_per_image"].append(round(ms, 1))
    for name, entry in out["variants"].items():
        entry["best_cpu_ms_per_image"] = min(entry["cpu_ms_per_image"])
        entry["psnr_vs_128_samples_db"] = round(
            float(np.mean([psnr(a, b) for a, b in zip(pixels[name], reference)])), 2
        )
        if name != "accurate":
            entry["psnr_vs_accurate_db"] = round(
                float(np.mean([psnr(a, b) for a, b in zip(pixels[name], pixels["accurate"])])), 2
            )
    base = out["variants"]["accurate"]["best_cpu_ms_per_image"]
    out["speedup_over_accurate"] = {
        k: round(base / v["best_cpu_ms_per_image"], 2) for k, v in out["variants"].items()
    }
    return out


def bench_denoise(images: int = 40, rounds: int = 2) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_denoise_variants, ((images, rounds, sorted(os.sched_getaffinity(0))[0]),))


def bench_cache(root: Path, epochs: int = 2) -> dict:
    """ms per training batch of 64 (one thread, decoding in this process), epoch by epoch, of the
    dataset at ``root`` read as the demo's fit reads it, without and with ``data.cache``."""
    import torch

    from mmcl.data import MultimodalDataModule

    if not (root / "manifest.json").is_file():
        return {"skipped": f"no dataset at {relative_inside(str(root), REPO)} (run make demo first)"}
    torch.set_num_threads(1)
    out: dict = {"data": relative_inside(str(root), REPO), "batch": 64, "ms_per_batch": {}}
    keys = {}
    for cache in (False, True):
        dm = MultimodalDataModule(str(root), batch_size=64, num_workers=0, seed=0, cache=cache)
        loader = dm.dataloader("train", train=True)
        name = "cache" if cache else "no_cache"
        out["ms_per_batch"][name], keys[name] = [], []
        for epoch in range(epochs):
            loader.load_state_dict({"epoch": epoch, "batches_done": 0})
            t, n = time.perf_counter(), 0
            for batch in loader:
                keys[name].append(batch["key"])
                n += 1
            out["ms_per_batch"][name].append(round(1000 * (time.perf_counter() - t) / n, 1))
    out["same_batches"] = keys["cache"] == keys["no_cache"]
    out["later_epochs_speedup"] = round(
        out["ms_per_batch"]["no_cache"][-1] / out["ms_per_batch"]["cache"][-1], 1
    )
    return out


def bench_layout(rounds: int = 3, steps: int = 5) -> dict:
    import torch

    from mmcl.dmvae.networks import ImageDecoder
    from mmcl.encoders import channels_last, image_encoder, text_encoder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    image = image_encoder(16, backbone="convnet", resolution=64, base_channels=32, global_max_pool=True)
    text = text_encoder(40, 32, 16)
    decoder = ImageDecoder(32, 64, 8)
    x, ids, z = torch.rand(64, 3, 64, 64), torch.randint(1, 40, (64, 32)), torch.randn(64, 32)

    def unchanged(t):
        return t

    # Each network's forward with its first convolution's input in a given layout (what
    # channels_last() does inside the three forwards); `unchanged` is the old code path.
    def image_fwd(layout):
        net = image.backbone
        h = net.convnet(layout(x))
        return image.head(net.linear(torch.cat([h.flatten(1), h.amax(dim=(2, 3))], dim=1)))

    # The text ConvNet's input has one channel, so channels_last() leaves it as it is; mmcl holds
    # its weights in channels-last instead, which is what makes its convolutions change layout.
    # The old code path is a copy with its weights in the default layout.
    import copy

    text_default = copy.deepcopy(text).to(memory_format=torch.contiguous_format)

    def text_fwd(layout):
        model = text if layout is channels_last else text_default
        net = model.backbone
        return model.head(net.convnet(layout(net.embedding(ids).unsqueeze(1))).flatten(1))

    def decoder_fwd(layout):
        h = decoder.linear(z).view(-1, decoder.c0, decoder.s0, decoder.s0)
        return torch.sigmoid(decoder.deconv(layout(h)))

    out: dict = {
        "batch": 64,
        "threads": 1,
        "best_of_rounds": rounds,
        "steps_per_round": steps,
        "networks": {},
    }
    for name, fwd in (
        ("image_convnet", image_fwd),
        ("text_convnet", text_fwd),
        ("dmvae_decoder_w8", decoder_fwd),
    ):
        best = {"nchw": float("inf"), "channels_last": float("inf")}
        for _ in range(rounds):
            for key, layout in (("nchw", unchanged), ("channels_last", channels_last)):
                fwd(layout).square().mean().backward()  # warm
                t = time.perf_counter()
                for _ in range(steps):
                    fwd(layout).square().mean().backward()
                best[key] = min(best[key], (time.perf_counter() - t) / steps)
        diff = (fwd(unchanged) - fwd(channels_last)).abs().max().item()
        out["networks"][name] = {
            "ms_per_step": {k: round(1000 * v, 1) for k, v in best.items()},
            "channels_last_speedup": round(best["nchw"] / best["channels_last"], 2),
            "max_abs_output_difference": diff,
        }
    return out


def bench_compile(steps: int = 20) -> dict:
    import torch

    from mmcl.encoders import image_encoder, text_encoder

    torch.set_num_threads(1)
    x, ids = torch.rand(64, 3, 64, 64), torch.randint(1, 40, (64, 32))

    def run(compiled: bool) -> dict:
        torch.manual_seed(0)
        image = image_encoder(16, backbone="convnet", resolution=64, base_channels=32, global_max_pool=True)
        text = text_encoder(40, 32, 16)
        opt = torch.optim.AdamW([*image.parameters(), *text.parameters()], 1e-3)
        if compiled:
            image.compile()
            text.compile()

        def step():
            (image(x).square().mean() + text(ids).square().mean()).backward()
            opt.step()
            opt.zero_grad()

        t = time.perf_counter()
        step(), step()
        first = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(steps):
            step()
        return {
            "first_two_steps_s": round(first, 1),
            "ms_per_step": round(1000 * (time.perf_counter() - t) / steps, 1),
        }

    out = {
        "steps": steps,
        "threads": 1,
        "eager_before": run(False),
        "compiled": run(True),
        "eager_after": run(False),
    }
    eager = min(out["eager_before"]["ms_per_step"], out["eager_after"]["ms_per_step"])
    out["compiled_over_eager"] = round(out["compiled"]["ms_per_step"] / eager, 2)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=150, help="draft images per render process and round")
    p.add_argument("--sections", default="render,denoise,cache,layout,compile")
    p.add_argument("--out", type=Path, default=REPO / "docs/bench/demo_cpu.json")
    p.add_argument("--data", type=Path, default=REPO / "runs/demo/data", help="dataset of the cache section")
    args = p.parse_args(argv)
    from importlib.metadata import version

    from mmcl.machine import machine_record

    result: dict = {
        "machine": machine_record(torch=version("torch")),
        "command": f"python benchmarks/bench_demo_cpu.py --images {args.images} --sections {args.sections}"
        + (
            ""
            if args.out == REPO / "docs/bench/demo_cpu.json"
            else f" --out {relative_inside(str(args.out), REPO)}"
        ),
    }
    sections = args.sections.split(",")
    t0 = time.time()
    if "render" in sections:
        result["render"] = bench_render(args.images)
        print(json.dumps(result["render"]["images_per_s"]), flush=True)
    if "denoise" in sections:
        result["denoise"] = bench_denoise()
        print(json.dumps(result["denoise"]["speedup_over_accurate"]), flush=True)
    if "cache" in sections:
        result["cache"] = bench_cache(args.data)
    if "layout" in sections:
        result["layout"] = bench_layout()
    if "compile" in sections:
        result["compile"] = bench_compile()
    result["wall_s"] = round(time.time() - t0, 1)
    from mmcl.io import write_json

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
