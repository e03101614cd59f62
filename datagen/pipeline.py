"""Dataset generation: plan shards, then sample -> text -> render -> write (SPEC 2.6).

The stages are plain generator functions (``datagen.sampling.samples`` yields latents and
sentences, ``rendered`` adds pixels, ``io.write_shard`` consumes records), so a test can feed
any of them directly. A *shard task* is the unit of work: a split and a contiguous range of
sample indices. Tasks run in worker processes that build the Blender scene once each
(``local`` backend), on a Ray cluster (``ray``), or as independent jobs selected with
``--shards i:j`` (e.g. a SLURM array) followed by ``datagen finalize``. Whatever runs them, a
shard's bytes depend only on the config, so the dataset is identical.

Resuming: finished shards exist under their final name; a rerun skips them and renders only
what is missing. A config that differs from the manifest's is refused unless ``overwrite``.
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import queue as queue_mod
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from datagen import __version__, io
from datagen.config import DatasetConfig, config_from_json
from datagen.design import Design, design_of
from datagen.errors import GenerateError
from datagen.factors import POSITION_WORDS
from datagen.meshes import MeshLibrary, load_library
from datagen.progress import Progress
from datagen.stages import (  # noqa: F401  (ShardTask, ShardWorker, sample_json: re-exported)
    ShardTask,
    ShardWorker,
    cpu_slices,
    pin_to,
    sample_json,
    shape_words,
    silence_blender,
    stdout_to_devnull,
    threads_per_worker,
)
from datagen.text import PALETTE_NAMES, all_colour_names, palette_digest, tokenizer_spec


def plan_shards(config: DatasetConfig) -> list[ShardTask]:
    """All shard tasks of a dataset in a fixed order (train, val, test; by number)."""
    tasks = []
    for split in config.splits:
        n = config.counts[split]
        for number, start in enumerate(range(0, n, config.shard_size)):
            tasks.append(ShardTask(split, number, start, min(n, start + config.shard_size)))
    return tasks


def parse_shard_range(text: str, n_tasks: int) -> slice:
    """``i:j`` (Python slice of the task list, either end optional) or a single ``i``."""
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            s = slice(int(a) if a else 0, int(b) if b else n_tasks)
        else:
            s = slice(int(text), int(text) + 1)
    except ValueError:
        raise GenerateError(
            f"--shards {text!r}: expected i:j with integers (0 <= i < j <= {n_tasks})"
        ) from None
    if not (0 <= s.start < s.stop <= n_tasks):
        raise GenerateError(f"--shards {text!r}: this dataset has shard tasks 0..{n_tasks - 1}")
    return s


# ----------------------------------------------------------------------------- manifest
def factor_table(design: Design, n_shapes: int) -> list[dict]:
    """The dataset's factor table as the manifest carries it, with its class counts and, for a
    non-uniform marginal, its distribution."""
    factors = []
    for f in design.factors:
        d = f.to_json()
        d["n_values"] = design.n_values(f, n_shapes)
        dist = design.distributions.get(f.name)
        if dist is not None and dist.kind != "uniform":
            d.update(dist.to_json())
        factors.append(d)
    return factors


def blender_version() -> str | None:
    """The installed bpy's version, read without importing Blender."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bpy")
    except PackageNotFoundError:
        return None


def base_manifest(config: DatasetConfig, shapes: list[dict], words: tuple[str, ...]) -> dict:
    design = design_of(config)
    grammar = design.grammar
    manifest = {
        "format": io.FORMAT,
        "generator": {
            "name": "datagen",
            "version": __version__,
            "blender": blender_version(),
            "python": platform.python_version(),
        },
        "config": config.to_json(),
        "config_sha256": config.digest(),
        "seed": config.seed,
        "factors": factor_table(design, len(words)),
        "shapes": shapes,
        "shape_words": list(words),
        "palettes": {
            "names": list(PALETTE_NAMES),
            "sha256": palette_digest(),
            "n_colour_names": len(all_colour_names()),
        },
        "tokenizer": tokenizer_spec(words, grammar),
        # The grammar, so readers can parse sentences without importing datagen.
        "text": {
            "templates": list(grammar.templates),
            "position_words": {k: list(v) for k, v in POSITION_WORDS.items()},
            "colour_names": list(all_colour_names()),
        },
        "counts": {s: config.counts[s] for s in config.splits},
        "shard_size": config.shard_size,
        "shards": {},
        "complete": False,
    }
    if design.toolbox:  # left out of default manifests, which stay as they were
        manifest["text"].update(grammar.to_json())
        manifest["design"] = design.to_json()
    return manifest


def manifest_header(config: DatasetConfig, library: MeshLibrary) -> dict:
    """Everything the manifest says before any shard exists."""
    words = shape_words(config, library)
    shapes = [{**e, "index": i} for i, e in enumerate(library.describe(config.shapes))]
    return base_manifest(config, shapes, words)


def _identity(manifest: dict) -> tuple:
    """What must agree between a rerun and an existing dataset."""
    return (
        manifest["config_sha256"],
        manifest["palettes"]["sha256"],
        [s.get("sha256") for s in manifest["shapes"]],
    )


def prepare_root(root: Path, header: dict, overwrite: bool) -> None:
    """Create ROOT with its manifest, or check that an existing ROOT has the same config."""
    root = Path(root)
    io.check_writable(root)
    manifest_path = root / io.MANIFEST
    if manifest_path.exists():
        existing = io.read_manifest(root)
        if _identity(existing) == _identity(header):
            return
        if not overwrite:
            diff = _config_diff(existing.get("config", {}), header["config"])
            raise GenerateError(
                f"{root}: already holds a dataset made with a different config ({diff}); "
                "choose another folder or pass --overwrite to replace it"
            )
        _remove_dataset(root, existing)
    elif any(root.iterdir()):
        splits = [p for p in root.iterdir() if p.name in ("train", "val", "test")]
        if not (overwrite and splits):
            raise GenerateError(
                f"{root}: folder is not empty and has no {io.MANIFEST}; refusing to write a dataset "
                "into it (choose an empty or new folder" + (", or pass --overwrite" if splits else "") + ")"
            )
        for p in splits:
            shutil.rmtree(p)
    io.write_manifest(root, header)


def _config_diff(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not keys:
        return "same config, different meshes or palettes"
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])


def _remove_dataset(root: Path, manifest: dict) -> None:
    for split in ("train", "val", "test"):
        if (root / split).is_dir():
            shutil.rmtree(root / split)
    (root / io.MANIFEST).unlink(missing_ok=True)


def finalize(root: Path) -> dict:
    """Check every planned shard (presence, sample count, readable) and complete the manifest."""
    root = Path(root)
    manifest = io.read_manifest(root)
    config = config_from_json(manifest["config"])
    missing, shards = [], {s: [] for s in config.splits}
    for task in plan_shards(config):
        path = root / task.relpath
        if not path.is_file():
            missing.append(task.relpath)
            continue
        n = sum(1 for _ in io.read_shard(path))
        if n != task.count:
            raise GenerateError(f"{path}: holds {n} samples, expected {task.count}; delete it and rerun")
        shards[task.split].append({"file": task.relpath, "count": n, "sha256": io.sha256_file(path)})
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise GenerateError(
            f"{root}: cannot finalize, {len(missing)} shard(s) missing: {', '.join(missing[:5])}{more}; "
            "rerun `datagen generate` with the same config to render them"
        )
    manifest["shards"] = shards
    manifest["complete"] = True
    io.write_manifest(root, manifest)
    return manifest


# Worker-process state for the local backend (one scene per process).
_WORKER: ShardWorker | None = None
_INIT_ERROR: BaseException | None = None
_QUEUE = None


def _init_worker(config_json: dict, mesh_root: str, device: str, threads: int, queue, slices) -> None:
    global _WORKER, _QUEUE, _INIT_ERROR
    _QUEUE = queue
    silence_blender()
    try:
        if slices is not None:  # before Blender starts its threads; one render thread per CPU of the slice
            cpus = slices.get(timeout=60)
            pin_to(cpus)
            threads = len(cpus)
        _WORKER = ShardWorker.from_library(
            config_from_json(config_json), load_library(Path(mesh_root)), device, threads
        )
    except BaseException as exc:  # reported by the first task, with its message intact
        _INIT_ERROR = exc


def _run_in_worker(root: str, task: ShardTask) -> tuple[ShardTask, dict]:
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    assert _WORKER is not None
    return task, _WORKER.run(Path(root), task, on_image=lambda: _QUEUE.put(1))


def generate(
    config: DatasetConfig,
    root: Path,
    *,
    workers: int = 1,
    shards: str | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    mesh_root: Path | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
    log=None,
) -> dict:
    """Render the dataset (or the ``shards`` range of it) into ``root``; returns the manifest.

    The manifest is finalised when every shard of the dataset exists afterwards.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    config.validate()
    if workers < 1:
        raise GenerateError(f"--workers must be >= 1, got {workers}")
    root = Path(root)
    library = load_library(mesh_root)
    header = manifest_header(config, library)
    if backend == "local" or not ray_address:
        # Fail before anything is written when Blender or the requested GPU is missing.
        from datagen.render import probe_device

        probe_device(device)
    all_tasks = plan_shards(config)
    selected = all_tasks[parse_shard_range(shards, len(all_tasks))] if shards else all_tasks
    prepare_root(root, header, overwrite)
    for split in config.splits:
        (root / split).mkdir(exist_ok=True)
    for task in selected:  # leftovers of killed writers of *our* shards only
        for stale in (root / task.split).glob(f".{io.shard_name(task.number)}.tmp-*"):
            stale.unlink(missing_ok=True)
    todo = [t for t in selected if not (root / t.relpath).is_file()]
    n_images = sum(t.count for t in todo)
    done = len(selected) - len(todo)
    log(
        f"[generate] {root}: {len(selected)} shard(s) selected, {done} already done, "
        f"{len(todo)} to render ({n_images} images) with {workers} worker(s) on {backend}"
    )
    bar = Progress(n_images, "generate", "images", enabled=progress)
    if todo:
        if backend == "local":
            _run_local(config, root, todo, workers, device, library.root, bar)
        elif backend == "ray":
            from datagen.distributed import run_ray

            run_ray(config, root, todo, workers, device, library.root, ray_address, bar)
        else:
            raise GenerateError(f"--backend must be 'local' or 'ray', got {backend!r}")
    if all((root / t.relpath).is_file() for t in all_tasks):
        manifest = finalize(root)
        log(
            f"[generate] complete: {sum(manifest['counts'].values())} samples in "
            f"{sum(len(v) for v in manifest['shards'].values())} shards; manifest {root / io.MANIFEST}"
        )
        return manifest
    log(f"[generate] selected shards done; run `datagen finalize {root}` once every job has finished")
    return io.read_manifest(root)


def _run_local(config, root, todo, workers, device, mesh_root, bar) -> None:
    if workers == 1:
        worker = ShardWorker.from_library(config, load_library(mesh_root), device, threads_per_worker(1))
        with stdout_to_devnull():
            for task in todo:
                worker.run(root, task, on_image=lambda: bar.update(1))
        return
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    slices = None
    if device == "cpu" and (parts := cpu_slices(workers)) is not None:
        slices = ctx.Queue()  # each worker takes its own CPUs once, at start
        for part in parts:
            slices.put(part)
    init = (config.to_json(), str(mesh_root), device, threads_per_worker(workers), queue, slices)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
        pending = [pool.submit(_run_in_worker, str(root), t) for t in todo]
        while not all(p.done() for p in pending):
            try:
                bar.update(queue.get(timeout=0.5))
            except queue_mod.Empty:
                pass
            for p in pending:
                if p.done() and p.exception() is not None:
                    for q in pending:
                        q.cancel()
                    raise p.exception()
        while not queue.empty():
            bar.update(queue.get())
