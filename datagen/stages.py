"""The stages both backends run: sample -> render -> shard records, and the worker that holds a scene.

``datagen.sampling.samples`` yields latents and sentences, :func:`rendered` adds pixels,
``io.write_shard`` consumes records. :class:`ShardWorker` builds one Blender scene and renders
whole shard tasks with it; the local backend (``datagen.pipeline``) runs one per process, the
Ray backend (``datagen.distributed``) wraps one in each actor. Nothing here imports either backend.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datagen import io
from datagen.config import DatasetConfig
from datagen.design import design_of
from datagen.meshes import MeshLibrary
from datagen.sampling import Sample, samples


@dataclass(frozen=True)
class ShardTask:
    split: str
    number: int
    start: int
    stop: int

    @property
    def relpath(self) -> str:
        return f"{self.split}/{io.shard_name(self.number)}"

    @property
    def count(self) -> int:
        return self.stop - self.start


def shape_words(config: DatasetConfig, library: MeshLibrary) -> tuple[str, ...]:
    library.check(config.shapes)
    return tuple(library.entries[s]["word"] for s in config.shapes)


def sample_json(s: Sample, config: DatasetConfig) -> dict:
    r = config.render
    out = {
        "index": s.index,
        "split": s.split,
        "key": s.key,
        "seed": config.seed,
        "image": s.image,
        "text": s.text,
        "palette": s.palette,
        "shape_word": s.shape_word,
        "render_seed": s.render_seed,
        "render": {
            "engine": "CYCLES",
            "preset": config.preset,
            "resolution": r.resolution,
            "samples": r.samples,
            "denoise": r.denoise,
            "hue_mode": config.hue_mode,
        },
    }
    design = design_of(config)
    if design.toolbox:  # render-space values beside the latents (default datasets: scene_parameters)
        out["scene"] = dataclasses.asdict(design.scene(s.image))
    return out


def rendered(stream: Iterable[Sample], renderer, config: DatasetConfig, on_image=None) -> Iterator[dict]:
    """Render stage: samples in, shard records out."""
    design = design_of(config)
    for s in stream:
        image = renderer.render(design.scene(s.image), s.render_seed)
        if on_image is not None:
            on_image()
        yield {"key": s.key, "png": io.encode_png(image), "txt": s.sentence, "json": sample_json(s, config)}


class ShardWorker:
    """Holds one Blender scene and renders whole shards with it.

    ``meshes`` and ``words`` follow ``config.shapes``; :meth:`from_library` reads both from a mesh
    library (the local backend), a Ray actor receives them through the object store.
    """

    def __init__(
        self,
        config: DatasetConfig,
        meshes: list,
        words: tuple[str, ...],
        device: str = "cpu",
        threads: int = 0,
    ):
        from datagen.render import SceneRenderer  # imports bpy: only where a scene is built

        self.config = config
        self.words = words
        self.renderer = SceneRenderer(config.render, meshes, device, threads)

    @classmethod
    def from_library(
        cls, config: DatasetConfig, library: MeshLibrary, device: str = "cpu", threads: int = 0
    ) -> ShardWorker:
        words = shape_words(config, library)
        return cls(config, [library.mesh(s) for s in config.shapes], words, device, threads)

    def records(self, task: ShardTask, on_image: Callable[[], None] | None = None) -> Iterator[dict]:
        stream = samples(self.config, task.split, range(task.start, task.stop), self.words)
        return rendered(stream, self.renderer, self.config, on_image)

    def run(self, root: Path, task: ShardTask, on_image: Callable[[], None] | None = None) -> dict:
        """Render ``task`` into ``root`` (atomically); returns ``{"count", "sha256"}``."""
        path = Path(root) / task.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        return io.write_shard(path, self.records(task, on_image))

    def shard_bytes(self, task: ShardTask, on_image: Callable[[], None] | None = None) -> bytes:
        """Render ``task`` into memory (a Ray actor sends the bytes to the driver)."""
        return io.shard_bytes(self.records(task, on_image))


def silence_blender() -> None:
    """Blender prints a line per render to stdout; keep our progress readable."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def cpu_slices(workers: int) -> list[tuple[int, ...]] | None:
    """The CPUs this process may use, split into one disjoint slice per worker process.

    A Blender process keeps more cores busy than its render threads (idle threads spin while
    they work; measured in docs/bench/demo_cpu.json), so unpinned workers that share the cores
    take turns instead of rendering side by side. ``None`` where affinity is unavailable (not
    Linux), for one worker, or for more workers than CPUs. The pixels do not depend on it
    (tests/datagen/test_pipeline.py: one worker gives the same bytes as two)."""
    if not hasattr(os, "sched_getaffinity") or workers < 2:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if workers > len(cpus):
        return None
    bounds = [round(i * len(cpus) / workers) for i in range(workers + 1)]
    return [tuple(cpus[a:b]) for a, b in zip(bounds, bounds[1:])]


def pin_to(cpus: tuple[int, ...]) -> None:
    """Restrict this process (and the threads it starts from now on) to ``cpus``."""
    os.sched_setaffinity(0, cpus)


class stdout_to_devnull:
    """Blender's per-frame chatter goes to fd 1; progress goes to stderr."""

    def __enter__(self):
        sys.stdout.flush()
        self._saved = os.dup(1)
        silence_blender()

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self._saved, 1)
        os.close(self._saved)
