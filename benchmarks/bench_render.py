"""Render benchmark: quality/speed frontier, per-image overhead, procedures, workers, memory.

Prints one JSON document (machine, settings, figures) and writes docs/bench/render.json,
plus the frontier as docs/bench/render_frontier.{csv,png}. Sections (``--sections``):

* ``frontier``   -- the same N latents at 224x224 with samples in {4..512}, denoiser on/off and
  light-path variants; PSNR/SSIM of each against the ``reference`` preset; the fastest
  configuration with mean PSNR >= 35 dB is what ``default`` should be.
* ``procedures`` -- side by side in one run, interleaved per latent: (a) the upstream
  procedure reproduced faithfully (scene reload + mesh append + 512 samples + denoise for
  every image), (b) our ``reference``, (c) ``default``, (d) ``draft``; images/s and ratios.
* ``overhead``   -- what an image costs besides path tracing, upstream procedure vs ours.
* ``workers``    -- images/s of ``datagen generate`` with 1 and 2 worker processes.
* ``memory``     -- worker RSS over 500 consecutive renders.

Run: ``python benchmarks/bench_render.py`` (about an hour on 2 cores); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from datagen.config import PRESETS, RenderSettings, make_config
from datagen.factors import scene_parameters
from datagen.meshes import load_library
from datagen.pipeline import generate
from datagen.quality import psnr, ssim
from datagen.render import OBJECT_SCALE, SceneRenderer
from datagen.sampling import sample
from datagen.stages import ShardWorker, silence_blender, stdout_to_devnull
from mmcl.machine import machine_record

OUT = Path(__file__).resolve().parents[1] / "docs" / "bench"
PSNR_TARGET = 35.0
NOISE_FLOOR_LATENTS = 10  # reference re-rendered with another seed, to show the reference's own noise


def machine() -> dict:
    from importlib.metadata import version

    return machine_record(bpy=version("bpy"))


def bench_latents(n: int, seed: int = 2024):
    cfg = make_config({"seed": seed, "counts": {"test": max(n, 1)}})
    words = tuple(load_library().entries[s]["word"] for s in cfg.shapes)
    return [sample(cfg, "test", i, words) for i in range(n)]


class Clock:
    """Wall and process CPU time (all render threads) of a block. On a loaded machine the CPU
    time is the fairer cost: it does not count time spent waiting for a core."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def timed_render(renderer: SceneRenderer, settings: RenderSettings, s, seed=None) -> tuple[np.ndarray, Clock]:
    if renderer.settings != settings:
        renderer.apply(settings, renderer_threads())
    with Clock() as clock:
        img = renderer.render(scene_parameters(s.image), s.render_seed if seed is None else seed)
    return img, clock


def renderer_threads() -> int:
    return os.cpu_count() or 1


def frontier_configs() -> list[tuple[str, RenderSettings]]:
    ref = PRESETS["reference"]
    out = []
    for spp in (1, 2, 4, 8, 16, 32, 64, 128, 512):
        for dn in (False, True):
            if spp == 512 and dn:
                continue  # that is the reference itself
            out.append(
                (f"{spp}spp{'+denoise' if dn else ''}", dataclasses.replace(ref, samples=spp, denoise=dn))
            )
    for spp in (1, 2, 4, 8):
        base = dataclasses.replace(ref, samples=spp, denoise=True)
        out.append((f"{spp}spp+denoise BALANCED", dataclasses.replace(base, denoise_quality="BALANCED")))
        out.append((f"{spp}spp+denoise FAST", dataclasses.replace(base, denoise_quality="FAST")))
        out.append(
            (
                f"{spp}spp+denoise FAST no adaptive",
                dataclasses.replace(base, denoise_quality="FAST", use_adaptive_sampling=False),
            )
        )
        out.append((f"{spp}spp+denoise no light tree", dataclasses.replace(base, light_tree=False)))
    return out


def run_frontier(n: int, renderer: SceneRenderer) -> dict:
    configs = frontier_configs()
    ref_settings = PRESETS["reference"]
    rows = {name: {"seconds": [], "cpu": [], "psnr": [], "ssim": []} for name, _ in configs}
    ref_times, ref_cpu, floor_psnr, floor_ssim = [], [], [], []
    # per-latent progress survives a kill: a rerun with the same configs picks up where it stopped
    partial = OUT / "render_frontier.partial.json"
    names = [name for name, _ in configs]
    done = 0
    if partial.is_file():
        state = json.loads(partial.read_text())
        # latent i depends only on (seed, i), so a run may be resumed with another n (a larger
        # one to extend it, or the number done so far to finish it early)
        if state["configs"] == names and state["done"] <= n:
            rows, done = state["rows"], state["done"]
            ref_times, ref_cpu = state["ref_times"], state["ref_cpu"]
            floor_psnr, floor_ssim = state["floor_psnr"], state["floor_ssim"]
            print(f"[frontier] resuming after latent {done}/{n}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    for i, s in enumerate(bench_latents(n)):
        if i < done:
            continue
        ref, t = timed_render(renderer, ref_settings, s)
        ref_times.append(t.wall)
        ref_cpu.append(t.cpu)
        if i < NOISE_FLOOR_LATENTS:
            other, _ = timed_render(renderer, ref_settings, s, seed=s.render_seed + 1)
            floor_psnr.append(psnr(other, ref))
            floor_ssim.append(ssim(other, ref))
        for name, settings in configs:
            img, t = timed_render(renderer, settings, s)
            rows[name]["seconds"].append(t.wall)
            rows[name]["cpu"].append(t.cpu)
            rows[name]["psnr"].append(psnr(img, ref))
            rows[name]["ssim"].append(ssim(img, ref))
        OUT.mkdir(parents=True, exist_ok=True)
        state = {"configs": names, "n": n, "done": i + 1, "rows": rows, "ref_times": ref_times}
        state.update(ref_cpu=ref_cpu, floor_psnr=floor_psnr, floor_ssim=floor_ssim)
        tmp = partial.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(partial)
        per = (time.perf_counter() - started) / (i + 1 - done)
        eta = per * (n - i - 1) / 60
        print(
            f"[frontier] latent {i + 1}/{n} ({per:.1f} s/latent, ETA {eta:.1f} min)",
            file=sys.stderr,
            flush=True,
        )
    table = []
    for name, settings in configs:
        r = rows[name]
        table.append(
            {
                "config": name,
                "samples": settings.samples,
                "denoise": settings.denoise,
                "denoise_quality": settings.denoise_quality if settings.denoise else "",
                "light_tree": settings.light_tree,
                "adaptive": settings.use_adaptive_sampling,
                "seconds_per_image": float(np.mean(r["seconds"])),
                "cpu_seconds_per_image": float(np.mean(r["cpu"])),
                "psnr_mean": float(np.mean(r["psnr"])),
                "psnr_min": float(np.min(r["psnr"])),
                "ssim_mean": float(np.mean(r["ssim"])),
                "ssim_min": float(np.min(r["ssim"])),
            }
        )
    ok = [row for row in table if row["psnr_mean"] >= PSNR_TARGET]
    best = min(ok, key=lambda row: row["cpu_seconds_per_image"]) if ok else None
    result = {
        "n_latents": n,
        "resolution": ref_settings.resolution,
        "table": table,
        "reference_seconds_per_image": float(np.mean(ref_times)),
        "reference_cpu_seconds_per_image": float(np.mean(ref_cpu)),
        "reference_noise_floor": {
            "psnr_mean": float(np.mean(floor_psnr)),
            "ssim_mean": float(np.mean(floor_ssim)),
            "what": "reference vs reference rendered with another seed",
        },
        "fastest_config_with_psnr_ge_35": best,
    }
    partial.unlink(missing_ok=True)
    return result


def write_frontier(result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    table = result["table"]
    with open(OUT / "render_frontier.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for dn, marker, colour in ((False, "o", "tab:gray"), (True, "s", "tab:blue")):
        rows = [
            r
            for r in table
            if r["denoise"] == dn
            and r["denoise_quality"] in ("", "HIGH")
            and r["light_tree"]
            and r["adaptive"]
        ]
        ax.plot(
            [r["cpu_seconds_per_image"] for r in rows],
            [r["psnr_mean"] for r in rows],
            marker=marker,
            color=colour,
            label="denoiser on" if dn else "denoiser off",
        )
        for r in rows:
            ax.annotate(
                str(r["samples"]),
                (r["cpu_seconds_per_image"], r["psnr_mean"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    variants = [
        r
        for r in table
        if r["denoise_quality"] not in ("", "HIGH") or not r["light_tree"] or not r["adaptive"]
    ]
    ax.scatter(
        [r["cpu_seconds_per_image"] for r in variants],
        [r["psnr_mean"] for r in variants],
        marker="x",
        color="tab:orange",
        label="denoiser/light-path variants (1-8 spp)",
    )
    ax.axhline(PSNR_TARGET, ls="--", color="tab:red", lw=1, label=f"{PSNR_TARGET:.0f} dB target")
    floor = result["reference_noise_floor"]["psnr_mean"]
    ax.axhline(floor, ls=":", color="black", lw=1, label=f"reference vs reseeded reference ({floor:.1f} dB)")
    best = result["fastest_config_with_psnr_ge_35"]
    if best:
        ax.scatter(
            [best["cpu_seconds_per_image"]],
            [best["psnr_mean"]],
            s=160,
            facecolors="none",
            edgecolors="tab:red",
            label=f"fastest >= 35 dB: {best['config']}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("CPU seconds per 224x224 image (all render threads)")
    ax.set_ylabel("mean PSNR vs reference preset [dB]")
    ax.set_title(f"Cycles quality/speed frontier, {result['n_latents']} latents (numbers: samples per pixel)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "render_frontier.png", dpi=110)
    plt.close(fig)


class UpstreamProcedure:
    """The upstream generator's per-image procedure, reproduced: reload the scene file, append
    the object's mesh from its own .blend file, set the factors, render, save."""

    def __init__(self, settings: RenderSettings, meshes, workdir: Path):
        self.base = workdir / "scene.blend"
        self.shape_files = []
        r = SceneRenderer(settings, meshes, threads=renderer_threads())
        self.bpy = bpy = r.bpy
        bpy.data.objects.remove(r.obj)
        bpy.ops.wm.save_as_mainfile(filepath=str(self.base))
        for i, data in enumerate(r.meshes):
            path = workdir / f"Shape{i}.blend"
            obj = bpy.data.objects.new(f"Shape{i}", data)
            bpy.data.libraries.write(str(path), {obj}, fake_user=True)
            self.shape_files.append(path)
        self.out = r.output_path
        self._r = r

    def close(self) -> None:
        self._r.close()

    def render(self, p, seed: int) -> np.ndarray:
        from PIL import Image

        bpy = self.bpy
        bpy.ops.wm.open_mainfile(filepath=str(self.base))
        self.append(p.shape)
        return np.asarray(Image.open(self.render_loaded(p, seed)).convert("RGB"))

    def append(self, shape: int):
        bpy = self.bpy
        with bpy.data.libraries.load(str(self.shape_files[shape]), link=False) as (src, dst):
            dst.objects = [f"Shape{shape}"]
        obj = dst.objects[0]
        bpy.context.scene.collection.objects.link(obj)
        return obj

    def render_loaded(self, p, seed: int, write: bool = True) -> Path:
        import math

        bpy = self.bpy
        scene = bpy.context.scene
        obj = next(o for o in scene.objects if o.name.startswith("Shape"))
        obj.scale = (OBJECT_SCALE,) * 3
        obj.location = p.location
        obj.rotation_euler = p.rotation_euler
        obj.active_material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (
            *p.object_rgb,
            1,
        )
        ground, spot = scene.objects["Ground"], scene.objects["Spotlight"]
        ground.active_material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (
            *p.background_rgb,
            1,
        )
        max_dim = max(self._r.max_dims)
        ground.location = (0, 0, -max_dim)
        spot.location = (4 * math.sin(p.spotlight_theta), 4 * math.cos(p.spotlight_theta), 6 + max_dim)
        spot.constraints[0].target = obj
        spot.data.color = p.spotlight_rgb
        scene.cycles.seed = seed
        scene.render.filepath = str(self.out)
        bpy.ops.render.render(write_still=write)
        return self.out


def _upstream_server(conn, meshes) -> None:
    """Child process: Blender driven exactly like the upstream generator, one image per request."""
    silence_blender()
    with tempfile.TemporaryDirectory() as tmp:
        up = UpstreamProcedure(PRESETS["reference"], meshes, Path(tmp))
        while True:
            job = conn.recv()
            if job is None:
                return
            p, seed = job
            with Clock() as clock:
                img = up.render(p, seed)
            conn.send((img, clock.wall, clock.cpu))


def run_procedures(n: int, meshes) -> dict:
    """(a) upstream procedure in its own Blender process, (b)-(d) our presets on one scene built
    once; interleaved per latent so that load on the machine affects all alike."""
    import multiprocessing as mp

    names = {
        "a_upstream_procedure": None,
        "b_reference": PRESETS["reference"],
        "c_default": PRESETS["default"],
        "d_draft": PRESETS["draft"],
    }
    wall = {k: [] for k in names}
    cpu = {k: [] for k in names}
    quality = {k: {"psnr": [], "ssim": []} for k in ("a_upstream_procedure", "c_default")}
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_upstream_server, args=(child, meshes), daemon=True)
    server.start()
    ours = SceneRenderer(PRESETS["reference"], meshes, threads=renderer_threads())
    warm = bench_latents(1)[0]
    for settings in (PRESETS["reference"], PRESETS["default"], PRESETS["draft"]):
        timed_render(ours, dataclasses.replace(settings, samples=1), warm)  # first-render setup, once
    try:
        for i, s in enumerate(bench_latents(n)):
            parent.send((scene_parameters(s.image), s.render_seed))
            a, a_wall, a_cpu = parent.recv()
            wall["a_upstream_procedure"].append(a_wall)
            cpu["a_upstream_procedure"].append(a_cpu)
            imgs = {}
            for key in ("b_reference", "c_default", "d_draft"):
                imgs[key], clock = timed_render(ours, names[key], s)
                wall[key].append(clock.wall)
                cpu[key].append(clock.cpu)
            for k, img in (("a_upstream_procedure", a), ("c_default", imgs["c_default"])):
                quality[k]["psnr"].append(psnr(img, imgs["b_reference"]))
                quality[k]["ssim"].append(ssim(img, imgs["b_reference"]))
            print(f"[procedures] latent {i + 1}/{n}", file=sys.stderr, flush=True)
    finally:
        parent.send(None)
        server.join(timeout=60)
        ours.close()
    ips = {k: 1.0 / float(np.mean(v)) for k, v in wall.items()}
    ips_cpu = {k: 1.0 / float(np.mean(v)) for k, v in cpu.items()}
    return {
        "n_latents": n,
        "images_per_second": ips,
        "seconds_per_image": {k: float(np.mean(v)) for k, v in wall.items()},
        "cpu_seconds_per_image": {k: float(np.mean(v)) for k, v in cpu.items()},
        "speedup_vs_upstream": {k: ips[k] / ips["a_upstream_procedure"] for k in ips},
        "speedup_vs_upstream_cpu_time": {k: ips_cpu[k] / ips_cpu["a_upstream_procedure"] for k in ips_cpu},
        "psnr_vs_reference": {k: float(np.mean(v["psnr"])) for k, v in quality.items()},
        "ssim_vs_reference": {k: float(np.mean(v["ssim"])) for k, v in quality.items()},
        "settings": {
            k: dataclasses.asdict(v) if v else "reference settings + scene reload + mesh append per image"
            for k, v in names.items()
        },
        "note": "(a) and (b) have identical settings and seeds; their PSNR shows the reproduction is faithful",
    }


def run_overhead(n: int, meshes) -> dict:
    """Per-image costs besides path tracing and denoising (medians over ``n`` latents).

    Scene work is timed on an 8x8 image at 1 sample, where path tracing is negligible; image
    I/O on a 224x224 render. CPU seconds of this process (all threads) are reported."""
    from PIL import Image

    from datagen import io

    tiny = dataclasses.replace(PRESETS["reference"], resolution=8, samples=1, denoise=False)
    latents = bench_latents(n)
    before: dict[str, list[float]] = {"scene_reload": [], "mesh_append": [], "sync_bvh_render": []}
    after: dict[str, list[float]] = {"set_factors_and_swap_mesh": [], "sync_bvh_render": []}
    starts = []
    for _ in range(3):
        with Clock() as c:
            subprocess.run([sys.executable, "-c", "import bpy"], check=True, capture_output=True)
        starts.append(c.wall)
    with tempfile.TemporaryDirectory() as tmp:
        up = UpstreamProcedure(tiny, meshes, Path(tmp))
        bpy = up.bpy
        for s in latents:
            p = scene_parameters(s.image)
            with Clock() as c1:
                bpy.ops.wm.open_mainfile(filepath=str(up.base))
            with Clock() as c2:
                up.append(p.shape)
            with Clock() as c3:
                up.render_loaded(p, s.render_seed, write=False)
            before["scene_reload"].append(c1.cpu)
            before["mesh_append"].append(c2.cpu)
            before["sync_bvh_render"].append(c3.cpu)
        up.close()
    r = SceneRenderer(tiny, meshes, threads=renderer_threads())
    r.bpy.ops.render.render()
    for s in latents:
        with Clock() as c1:
            r.set_scene(scene_parameters(s.image), s.render_seed)
        with Clock() as c2:
            r.bpy.ops.render.render()
        after["set_factors_and_swap_mesh"].append(c1.cpu)
        after["sync_bvh_render"].append(c2.cpu)
    r.apply(dataclasses.replace(tiny, resolution=224))
    r.bpy.ops.render.render()
    result = r.bpy.data.images["Render Result"]
    settings = r.scene.render.image_settings
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        for label, target, compression in (("before", before, 15), ("after", after, 0)):
            settings.compression = compression  # upstream: Blender's default 15 %; ours: none, in RAM
            path = str(Path(tmp) / f"{label}.png")
            target["png_write_224"], target["png_read_224"] = [], []
            for _ in latents:
                with Clock() as c1:
                    result.save_render(filepath=path)
                with Clock() as c2:
                    img = np.asarray(Image.open(path).convert("RGB"))
                target["png_write_224"].append(c1.cpu)
                target["png_read_224"].append(c2.cpu)
    after["png_encode_for_shard_224"] = []
    for _ in latents:
        with Clock() as c:
            io.encode_png(img)
        after["png_encode_for_shard_224"].append(c.cpu)
    r.close()
    med = {
        k: {name: float(np.median(v)) for name, v in d.items()}
        for k, d in (("before", before), ("after", after))
    }
    return {
        "unit": "CPU seconds per image (median)",
        "before_upstream_procedure": med["before"],
        "after_ours": med["after"],
        "total_before": sum(med["before"].values()),
        "total_after": sum(med["after"].values()),
        "process_start_import_bpy_seconds": float(np.median(starts)),
        "process_start_note": "paid once per Blender launch in both; upstream's batch scripts launched Blender "
        "per batch, we launch one process per worker",
    }


def run_workers(n_images: int) -> dict:
    out = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            per = max(1, n_images // 4)
            cfg = make_config(
                {"preset": "default", "counts": {"train": n_images}, "shard_size": per, "seed": 5}
            )
            t0 = time.perf_counter()
            generate(cfg, Path(tmp) / "ds", workers=workers, progress=False, log=lambda m: None)
            dt = time.perf_counter() - t0
        out[f"{workers}_workers"] = {
            "images": n_images,
            "seconds": dt,
            "images_per_second": n_images / dt,
            "threads_per_worker": max(1, (os.cpu_count() or 1) // workers),
        }
    out["speedup_2_vs_1"] = out["2_workers"]["images_per_second"] / out["1_workers"]["images_per_second"]
    return out


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_memory(n: int) -> dict:
    cfg = make_config({"preset": "draft", "counts": {"train": n}})
    worker = ShardWorker.from_library(cfg, load_library(), threads=renderer_threads())
    words = worker.words
    trace = []
    for i in range(n):
        s = sample(cfg, "train", i, words)
        worker.renderer.render(scene_parameters(s.image), s.render_seed)
        if (i + 1) % 50 == 0 or i == 0:
            trace.append({"renders": i + 1, "rss_mib": rss_mib()})
    growth = trace[-1]["rss_mib"] - trace[1]["rss_mib"] if len(trace) > 2 else float("nan")
    return {"preset": "draft", "renders": n, "trace": trace, "rss_growth_mib_after_first_50": growth}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default="frontier,procedures,overhead,workers,memory")
    p.add_argument("--frontier-latents", type=int, default=50)
    p.add_argument("--procedure-latents", type=int, default=6)
    p.add_argument("--overhead-latents", type=int, default=10)
    p.add_argument("--worker-images", type=int, default=24)
    p.add_argument("--memory-renders", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--out", default=str(OUT / "render.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.frontier_latents, args.procedure_latents, args.overhead_latents = 2, 1, 2
        args.worker_images, args.memory_renders = 4, 60
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.is_file() else {}
    result["machine"] = machine()
    result["presets"] = {k: dataclasses.asdict(v) for k, v in PRESETS.items()}
    library = load_library()
    meshes = [library.mesh(s) for s in make_config().shapes]
    with stdout_to_devnull():
        if "frontier" in sections:
            r = SceneRenderer(PRESETS["reference"], meshes, threads=renderer_threads())
            result["frontier"] = run_frontier(args.frontier_latents, r)
            r.close()
            write_frontier(result["frontier"])
        if "procedures" in sections:
            result["procedures"] = run_procedures(args.procedure_latents, meshes)
        if "overhead" in sections:
            result["overhead"] = run_overhead(args.overhead_latents, meshes)
        if "workers" in sections:
            result["workers"] = run_workers(args.worker_images)
        if "memory" in sections:
            result["memory"] = run_memory(args.memory_renders)
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
