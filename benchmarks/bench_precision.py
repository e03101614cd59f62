"""Seconds per training step of the demo's image encoder in fp32 and bf16 autocast, natively and
with torch held to AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: how a CPU
without native bf16 runs, emulated on this one), with what ``mmcl.precision`` chooses in each.

One thread, ConvNet 64x64 with global max pool, batch 32, AdamW; per precision the best of 3
rounds of 4 steps, the two precisions alternating. Writes docs/bench/precision.json.

    python benchmarks/bench_precision.py [--out docs/bench/precision.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPS = {"native": {}, "avx2_cap": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}


def measure() -> dict:
    """One process's timings (its ISA cap comes from the environment)."""
    import torch

    from mmcl.encoders import image_encoder
    from mmcl.precision import choose_precision, step_seconds

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = image_encoder(16, backbone="convnet", resolution=64, base_channels=32, global_max_pool=True)
    best = step_seconds(model, torch.rand(32, 3, 64, 64))
    chosen, reason = choose_precision("cpu", None)
    other = "32-true" if chosen == "bf16-mixed" else "bf16-mixed"
    return {
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "seconds_per_step": {k: round(v, 4) for k, v in best.items()},
        "bf16_over_fp32": round(best["bf16-mixed"] / best["32-true"], 2),
        "chosen": chosen,
        "reason": reason,
        "chosen_over_other": round(best[chosen] / best[other], 2),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "docs/bench/precision.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure()))
        return 0
    from mmcl.machine import machine_record

    results = {}
    for name, env in CAPS.items():
        out = subprocess.run(
            [sys.executable, __file__, "--child"],
            env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
            capture_output=True, text=True, check=True, cwd=REPO,
        )  # fmt: skip
        results[name] = {"env": env, **json.loads(out.stdout.strip().splitlines()[-1])}
        print(name, results[name], flush=True)
    import torch

    doc = {
        "what": "demo image encoder (ConvNet 64x64, max pool, batch 32), one thread, s/step",
        "machine": machine_record(torch=torch.__version__),
        "results": results,
        "command": "python benchmarks/bench_precision.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(args.out)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
