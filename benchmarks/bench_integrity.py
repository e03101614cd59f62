"""What the corrupt-data safeguards cost when reading shards (issue 14).

Side by side, interleaved round by round on the same shards: the baseline decode (torchvision's
libpng on the raw bytes, what ``mmcl.data`` did before) against ours the first time a process
sees an image (:func:`mmcl.png.check_png`, then the same decode) and every later time
(:func:`mmcl.png.decode_png_rgb` finds the image's digest among those it checked), and the sha256 of each shard that ``data.verify`` computes the
first time a process opens it, as a fraction of the time its images take to decode.

    python benchmarks/bench_integrity.py --data runs/demo/data --shards 4 --rounds 3

Prints one JSON document and writes docs/bench/integrity.json (paths relative to the repo).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from mmcl import png
from mmcl.data import iter_shard
from mmcl.machine import machine_record
from mmcl.manifest import load_manifest
from mmcl.paths import relative_inside
from mmcl.png import TORCHVISION_DECODE, check_png

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "runs" / "demo" / "data")
    p.add_argument("--split", default="train")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "integrity.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", DeprecationWarning)
    if TORCHVISION_DECODE is None:
        raise SystemExit("bench_integrity: torchvision's PNG decoder is not available")
    shards = load_manifest(args.data).shards(args.split)[: args.shards]
    pngs = [[raw.members["png"] for raw in iter_shard(s)] for s in shards]
    n_images = sum(map(len, pngs))

    def baseline():
        for blobs in pngs:
            for b in blobs:
                TORCHVISION_DECODE(b)

    def ours():  # the first time a process sees these images: check, then decode
        for blobs in pngs:
            for b in blobs:
                check_png(b)
                TORCHVISION_DECODE(b)

    def ours_seen():  # what mmcl.png.decode_png_rgb does for images it has checked before
        for blobs in pngs:
            for b in blobs:
                png.decode_png_rgb(b)

    def sha256():
        for s in shards:
            hashlib.sha256(s.path.read_bytes()).hexdigest()

    times: dict[str, list[float]] = {"baseline": [], "ours": [], "ours_seen": [], "sha256": []}
    baseline()  # warm the page cache and the decoder
    ours_seen()  # remembers every image's digest
    for _ in range(args.rounds):
        for name, fn in (
            ("baseline", baseline),
            ("ours", ours),
            ("ours_seen", ours_seen),
            ("sha256", sha256),
        ):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": machine_record(torch=torch.__version__, threads=1),
        "settings": {
            "data": relative_inside(args.data, REPO),
            "split": args.split,
            "shards": len(shards),
            "images": n_images,
            "rounds": args.rounds,
            "resolution": load_manifest(args.data).resolution,
        },  # fmt: skip
        "ms_per_image": {
            "baseline_decode": 1e3 * med["baseline"] / n_images,
            "checked_decode": 1e3 * med["ours"] / n_images,
            "checked_before_decode": 1e3 * med["ours_seen"] / n_images,
        },
        "check_overhead_ratio": med["ours"] / med["baseline"],
        "seen_overhead_ratio": med["ours_seen"] / med["baseline"],
        "sha256_ms_per_shard": 1e3 * med["sha256"] / len(shards),
        "sha256_fraction_of_decode": med["sha256"] / med["ours"],
        "seconds": times,
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
