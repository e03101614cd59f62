"""Which MI penalty takes content out of m_img? The synthetic stage-2 problem of
``mmcl.dmvae.synthetic`` (answer known), one row per (penalty, delta), each a real stage-2 fit.

    python scripts/dmvae_penalty_toy.py --out docs/dmvae/penalty_toy.json

Per row: I(c; m_img) by a fresh critic (H(k) = log 4 = 1.39 nats is all the content there is),
the training critic's last estimate (Eq. 9.8) and accuracy, KL of q(m_img | x) (what m_img still
describes) and the ELBO of the last step, and the seconds. Resumable: finished rows are kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
import warnings
from pathlib import Path

import torch

from mmcl.dmvae.synthetic import NOISE, fresh_mi, specific_kl, train_image_stage2

GRID = [
    ("none", 0.0),
    ("density_ratio", 100.0),
    ("density_ratio", 1000.0),
    ("symmetric", 100.0),
    ("symmetric", 1000.0),
    ("hsic", 100.0),
    ("hsic", 1000.0),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=600)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    done = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = {(r["mi_penalty"], r["delta"], r["steps"]): r for r in done}
    for i, (penalty, delta) in enumerate(GRID):
        if (penalty, delta, args.steps) in rows:
            continue
        t0 = time.perf_counter()
        kwargs = {} if penalty == "none" else {"mi_penalty": penalty}
        module, pairs, cache = train_image_stage2(delta, args.steps, **kwargs)
        metrics = {k: float(v) for k, v in module.trainer.callback_metrics.items()}
        row = {
            "mi_penalty": penalty,
            "delta": delta,
            "steps": args.steps,
            "fresh_critic_mi": fresh_mi(module, pairs, cache),
            "training_critic_mi": metrics.get("stage2/image/mi"),
            "training_critic_accuracy": metrics.get("stage2/image/disc_acc"),
            "kl_m_image": specific_kl(module, pairs),
            "elbo_last_step": metrics.get("stage2/image/elbo"),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        rows[(penalty, delta, args.steps)] = row
        print(f"[{i + 1}/{len(GRID)}] " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": "python scripts/dmvae_penalty_toy.py --out "
            + str(args.out)
            + f" --steps {args.steps}",
            "content_noise": NOISE,
            "entropy_of_content_nats": 1.3863,
            "seed": 0,
            "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1},
            "rows": list(rows.values()),
        }
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
