"""Which MI penalty takes content out of m_img? The synthetic stage-2 problem of
``mmcl.dmvae.synthetic`` (answer known), one row per (penalty, delta), each a real stage-2 fit.

    python experiments/dmvae_penalty_toy/dmvae_penalty_toy.py --out docs/dmvae/penalty_toy.json

``--grid input`` compares HSIC on the draw of m_img with HSIC on its mean and adds an MLP probe
of the cell from the mean (what ``mmcl dmvae eval`` reads).

Per row: I(c; m_img) by a fresh critic (H(k) = log 4 = 1.39 nats is all the content there is),
the training critic's last estimate (Eq. 9.8) and accuracy, KL of q(m_img | x) (what m_img still
describes) and the ELBO of the last step, and the seconds. Resumable: finished rows are kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import torch

from mmcl.dmvae.synthetic import NOISE, fresh_mi, mean_probe_accuracy, specific_kl, train_image_stage2
from mmcl.machine import machine_record

GRIDS = {
    # which penalty (docs/dmvae/penalty_toy.json)
    "penalties": [
        ("none", 0.0, "sample"),
        ("density_ratio", 100.0, "sample"),
        ("density_ratio", 1000.0, "sample"),
        ("symmetric", 100.0, "sample"),
        ("symmetric", 1000.0, "sample"),
        ("hsic", 100.0, "sample"),
        ("hsic", 1000.0, "sample"),
    ],
    # HSIC on the draw of m or on its mean (docs/dmvae/penalty_input_toy.json)
    "input": [
        ("none", 0.0, "sample"),
        ("hsic", 1000.0, "sample"),
        ("hsic", 1000.0, "mean"),
        ("hsic", 1000.0, "whitened_mean"),
        ("hsic", 100.0, "whitened_mean"),
        ("hsic", 4000.0, "sample"),
        ("hsic", 4000.0, "whitened_mean"),
        ("hsic", 1000.0, "both"),
    ],
    # the same with a probe of the log-variances too, and the penalties that also see them
    # (docs/dmvae/penalty_posterior_toy.json)
    "posterior": [
        ("none", 0.0, "sample"),
        ("hsic", 1000.0, "both"),
        ("hsic", 1000.0, "posterior"),
        ("hsic", 1000.0, "all"),
    ],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--grid", choices=sorted(GRIDS), default="penalties")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    done = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = {(r["mi_penalty"], r["delta"], r["steps"], r.get("penalty_input", "sample")): r for r in done}
    grid = GRIDS[args.grid]
    for i, (penalty, delta, penalty_input) in enumerate(grid):
        if (penalty, delta, args.steps, penalty_input) in rows:
            continue
        t0 = time.perf_counter()
        kwargs = {} if penalty == "none" else {"mi_penalty": penalty, "penalty_input": penalty_input}
        module, pairs, cache = train_image_stage2(delta, args.steps, **kwargs)
        metrics = {k: float(v) for k, v in module.trainer.callback_metrics.items()}
        row = {
            "mi_penalty": penalty,
            "delta": delta,
            "penalty_input": penalty_input,
            "steps": args.steps,
            "fresh_critic_mi": fresh_mi(module, pairs, cache),
            "training_critic_mi": metrics.get("stage2/image/mi"),
            "training_critic_accuracy": metrics.get("stage2/image/disc_acc"),
            "kl_m_image": specific_kl(module, pairs),
            "mean_mlp_probe_accuracy": mean_probe_accuracy(module, pairs)
            if args.grid != "penalties"
            else None,
            "logvar_mlp_probe_accuracy": mean_probe_accuracy(module, pairs, part="logvar")
            if args.grid == "posterior"
            else None,
            "elbo_last_step": metrics.get("stage2/image/elbo"),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        rows[(penalty, delta, args.steps, penalty_input)] = row
        print(f"[{i + 1}/{len(grid)}] " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": "python experiments/dmvae_penalty_toy/dmvae_penalty_toy.py --out "
            + str(args.out)
            + f" --steps {args.steps} --grid {args.grid}",
            "content_noise": NOISE,
            "entropy_of_content_nats": 1.3863,
            "seed": 0,
            "machine": machine_record(torch=torch.__version__, threads=1),
            "rows": list(rows.values()),
        }
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
