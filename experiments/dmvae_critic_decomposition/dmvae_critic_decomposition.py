"""What does the fresh critic's I(c; m_img) measure? The same critic on other pairings.

``mmcl dmvae eval`` estimates I(c; m_i) with a fresh critic on (c = full-set PoE mean, one draw
of m_i). Where MLP probes find no content factor in m_img but the critic finds nats, this script
trains the same critic (same seed, same budget) on the draws of m_i against:

* ``c``            -- the eval's pairing (reproduces its number);
* ``c_text``       -- the text expert's mean: content (and colour) without image-only information;
* ``content``      -- the ground-truth content factors one-hot (shape, x, y): content itself;
* ``image_only``   -- the ground-truth image-specific factors (rotations, spotlight, background);
* ``c_image_only`` -- what c carries beyond the text: the residual of c after a least-squares fit
  on c_text (fitted on the fitting split).

Reads the embeddings an eval wrote (``EVAL/embeddings``); writes JSON (seconds, seed, inputs).

    python experiments/dmvae_critic_decomposition/dmvae_critic_decomposition.py runs/dmvae/RUN/eval/embeddings --out docs/dmvae/critic_decomposition.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mmcl.dmvae.critic import fresh_critic_mi  # noqa: E402
from mmcl.paths import relative_inside  # noqa: E402


def one_hot(values: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n)[values.astype(np.int64)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("embeddings", type=Path, help="EVAL/embeddings of `mmcl dmvae eval`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--modality", default="image", choices=["image", "text"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    meta = json.loads((args.embeddings / "embeddings.json").read_text())
    fit, ev = (np.load(args.embeddings / f"embeddings_{s}.npz") for s in ("val", "test"))
    factors = meta["factors"]  # roles from the dataset's manifest
    content = [f for f, m in factors.items() if m["role"] == "content" and f"factor:{f}" in fit]
    image_only = [f for f, m in factors.items() if m["role"] == "image_specific" and f"factor:{f}" in fit]
    sizes = {f: int(max(fit[f"factor:{f}"].max(), ev[f"factor:{f}"].max())) + 1 for f in content}

    def inputs(arr, coef=None):
        c_text = arr["c_text"]
        design = np.c_[c_text, np.ones(len(c_text))]
        return {
            "c": arr["c"],
            "c_text": c_text,
            "content": np.concatenate([one_hot(arr[f"factor:{f}"], sizes[f]) for f in content], axis=1),
            "image_only": np.stack([arr[f"factor:{f}"] for f in image_only], axis=1),
            "c_image_only": arr["c"] - design @ coef if coef is not None else None,
        }

    design_fit = np.c_[fit["c_text"], np.ones(len(fit["c_text"]))]
    coef, *_ = np.linalg.lstsq(design_fit, fit["c"], rcond=None)
    x_fit, x_ev = inputs(fit, coef), inputs(ev, coef)
    m = f"m_{args.modality}_sample"
    results = {}
    for name in x_fit:
        t0 = time.perf_counter()
        est = fresh_critic_mi(x_fit[name], fit[m], x_ev[name], ev[m], args.seed)
        results[name] = {**est, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"I({name}; {m}) = {est['density_ratio']:.3f} nats ({results[name]['seconds']} s)", flush=True)
    out = {
        "embeddings": relative_inside(args.embeddings, REPO),
        "global_step": meta.get("source", {}).get("global_step"),
        "seed": args.seed,
        "draws_of": m,
        "fitting_split": "val",
        "scoring_split": "test",
        "n_fit": int(len(fit["c"])),
        "n_eval": int(len(ev["c"])),
        "content_factors": content,
        "image_only_factors": image_only,
        "estimates": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
