"""Run shard tasks on a Ray cluster (``datagen generate --backend ray``; SPEC 2.6).

Each Ray actor builds the Blender scene once from meshes shipped through the object store
(no shared mesh cache needed), renders whole shards and returns their bytes; the driver
writes them atomically into ROOT, so workers need no shared filesystem either. Because a
shard's bytes depend only on the config, the dataset is identical to a local run.
Every node needs this package and ``bpy`` installed (``pip install mmcl3d``).
"""

from __future__ import annotations

from pathlib import Path

from datagen import io
from datagen.config import config_from_json
from datagen.errors import DatasetError
from datagen.meshes import load_library
from datagen.stages import ShardTask, ShardWorker, shape_words, threads_per_worker


class _RayShardWorker:
    """A Ray actor around one :class:`~datagen.stages.ShardWorker`; progress ticks go to a queue."""

    def __init__(self, config_json: dict, meshes: list, words: tuple, device: str, threads: int, ticks):
        self.worker = ShardWorker(config_from_json(config_json), meshes, words, device, threads)
        self.ticks = ticks

    def render_shard(self, task: ShardTask) -> bytes:
        return self.worker.shard_bytes(task, on_image=lambda: self.ticks.put(1))


def run_ray(config, root: Path, todo, workers: int, device: str, mesh_root: Path, ray_address, bar) -> None:
    try:
        import ray
        from ray.util.queue import Empty, Queue
    except ImportError:
        raise DatasetError("--backend ray needs Ray: pip install 'mmcl3d[ray]' (or ray[default])") from None

    library = load_library(mesh_root)
    meshes = [library.mesh(s) for s in config.shapes]
    words = shape_words(config, library)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=ray_address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            **({} if ray_address else {"num_cpus": max(workers, 1)}),
        )
    try:
        threads = threads_per_worker(workers) if not ray_address else 0
        ticks = Queue()
        Actor = ray.remote(num_cpus=1)(_RayShardWorker)
        mesh_ref = ray.put(meshes)
        actors = [
            Actor.remote(config.to_json(), mesh_ref, words, device, threads, ticks) for _ in range(workers)
        ]
        queue = list(todo)
        running = {}
        for actor in actors:
            if queue:
                task = queue.pop(0)
                running[actor.render_shard.remote(task)] = (actor, task)
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            _drain(ticks, bar, Empty)
            for ref in done:
                actor, task = running.pop(ref)
                data = ray.get(ref)
                (Path(root) / task.split).mkdir(parents=True, exist_ok=True)
                io.atomic_write_bytes(Path(root) / task.relpath, data)
                if queue:
                    nxt = queue.pop(0)
                    running[actor.render_shard.remote(nxt)] = (actor, nxt)
        _drain(ticks, bar, Empty)
    finally:
        if started_here:
            ray.shutdown()


def _drain(ticks, bar, empty) -> None:
    while True:
        try:
            bar.update(ticks.get_nowait())
        except empty:
            return
