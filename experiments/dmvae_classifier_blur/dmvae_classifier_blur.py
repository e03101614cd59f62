"""How sharp must a drawn image be for the factor classifier to recognise its shape? (issue 13)

Text -> image coherence asks the factor classifier (trained on real renders) to name the shape
of a generated image. A Laplace-likelihood decoder draws something like a blurred image, so
this script calibrates the judge: it blurs the *real* test images with a Gaussian of growing
width (sigma in pixels) and reports the classifier's accuracy on them, beside how far each
blurred image lies from the sharp one (mean L1 over the image, summed over pixels and channels
on [0, 1], and the Laplace negative log-likelihood of the sharp image under the blurred one as
location, the stage-2 image likelihood with scale b). A decoder has to draw at least as
sharply as the blur at which the classifier's accuracy falls below a target before coherence
can reach it.

    python experiments/dmvae_classifier_blur/dmvae_classifier_blur.py --data runs/demo/data \\
        --classifier runs/dmvae/factor_classifier.pt --out docs/dmvae/classifier_blur.json

Writes the JSON (a row per sigma, the command, the settings) and a PNG beside it (accuracy
against sigma; test images at a few sigmas).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torchvision.transforms.functional import gaussian_blur

from mmcl.dmvae.classifier import load_classifier
from mmcl.dmvae.data import DMVAEDataModule
from mmcl.dmvae.losses import laplace_log_likelihood
from mmcl.machine import machine_record
from mmcl.probing.probes import chance_level

# judge and load_split are the decoder-ceiling experiment's, in the folder beside this one
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dmvae_decoder_ceiling"))
from dmvae_decoder_ceiling import judge, load_split  # noqa: E402


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (N, 3, H, W) images in [0, 1]; the kernel spans +-3 sigma."""
    if sigma <= 0:
        return images
    return gaussian_blur(images, kernel_size=2 * max(1, round(3 * sigma)) + 1, sigma=sigma)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="runs/demo/data")
    p.add_argument("--classifier", required=True, help="factor classifier .pt written by `mmcl dmvae eval`")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5])
    p.add_argument("--scale", type=float, default=0.1, help="Laplace b of the stage-2 image likelihood")
    p.add_argument("--split", default="test")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="docs/dmvae/classifier_blur.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)

    data = DMVAEDataModule(args.data, batch_size=64, eval_batch_size=500, num_workers=0)
    images_u8, latents = load_split(data, args.split)
    sharp = images_u8.float() / 255
    classifier, cls_meta = load_classifier(args.classifier)
    rows, shown = [], {}
    for sigma in args.sigmas:
        blurred = blur(sharp, sigma)
        acc, _ = judge(torch.nn.Identity(), classifier, blurred, latents)
        with torch.no_grad():
            l1 = float((blurred - sharp).abs().sum((1, 2, 3)).mean())
            nll = float(-laplace_log_likelihood(sharp, blurred, args.scale).mean())
        rows.append({"sigma": sigma, "accuracy": acc, "l1": round(l1, 1), "laplace_nll": round(nll, 1)})
        shown[sigma] = blurred[:6]
        print(
            f"[blur] sigma {sigma}: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()) + f", L1 {l1:.0f}"
        )

    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:])),
        "settings": vars(args),
        "images": len(sharp),
        "chance": {k: chance_level("discrete", latents[k].numpy()) for k in classifier.factors},
        "classifier_meta": {k: v for k, v in cls_meta.items() if k != "dataset"},
        "rows": rows,
        "machine": machine_record(threads=args.threads),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, shown, out.with_suffix(".png"))
    print(f"[blur] wrote {out} and {out.with_suffix('.png')}")
    return 0


def plot(result: dict, shown: dict[float, torch.Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 4.2))
    ax = fig.add_axes([0.05, 0.14, 0.3, 0.74])
    sigmas = [r["sigma"] for r in result["rows"]]
    for factor, style in (("object_shape", "-o"), ("object_xpos", ":s"), ("object_ypos", ":^")):
        ax.plot(sigmas, [r["accuracy"][factor] for r in result["rows"]], style, label=factor.split("_")[1])
    ax.axhline(result["chance"]["object_shape"], color="grey", ls="--", lw=0.8, label="shape, chance")
    ax.axhline(0.6, color="tab:red", lw=0.8, label="issue 13 target (shape 0.6)")
    ax.set_xlabel("Gaussian blur sigma of the real test images (pixels)")
    ax.set_ylabel("factor classifier accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("the coherence judge on blurred real images", fontsize=9)
    picked = [s for s in shown if s in (0, 1.0, 1.5, 2.0)] or list(shown)[:4]
    for row, sigma in enumerate(picked):
        for i, img in enumerate(shown[sigma]):
            a = fig.add_axes([0.4 + i * 0.095, 0.76 - row * 0.23, 0.09, 0.21])
            a.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            a.set_xticks([])
            a.set_yticks([])
            if i == 0:
                a.set_ylabel(f"sigma {sigma:g}", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
