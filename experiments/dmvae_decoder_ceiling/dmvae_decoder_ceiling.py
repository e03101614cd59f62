"""Can the DMVAE's image decoder draw shape at 64x64 on a CPU budget? (issue 13)

The stage-2 runs reconstruct an image's shape only 0.26-0.29 of the time (factor classifier on
reconstructions, chance 0.15) although c carries shape at 0.997. Two causes fit that: the
decoder (capacity, steps) or what it is conditioned on (c and m_img from the encoders). This
script removes the second: it trains the stage-2 image decoder (:class:`mmcl.dmvae.networks.
ImageDecoder`, Laplace likelihood b = 0.1 on [0, 1] pixels, Adam 1e-3, batch 64, as
``configs/dmvae/m3di_cpu.yaml``) on the *ground-truth* factors of each training image --
one-hot shape, x and y, the rotations, spotlight and colours -- and measures, at several step
counts, how often the factor classifier recognises the shape, x and y of the drawn test images.
If a decoder given everything cannot draw shape after N steps, no encoder can help it. The same
is measured on 1 000 *training* images: a decoder that draws the shapes it was trained on but
not those of new rotations is limited by the data (12 000 images of 7 shapes under random 3-D
rotations), not by its steps.

    python experiments/dmvae_decoder_ceiling/dmvae_decoder_ceiling.py --data runs/demo/data \\
        --classifier runs/demo/dmvae/eval/factor_classifier.pt --widths 12 \\
        --steps 4000 --eval-at 500 1000 2000 4000 --out docs/dmvae/decoder_ceiling.json

Decoder families and likelihoods (issue 29): ``--decoder broadcast`` is the spatial broadcast
decoder (:class:`mmcl.dmvae.networks.SpatialBroadcastDecoder`, ``--widths`` channels in each of
``--broadcast-layers`` layers); ``--likelihood learned`` learns one Laplace log-scale per colour
channel with the decoder, ``optimal`` uses each image's and channel's maximum-likelihood scale
(mean |x - loc|, the sigma-VAE's "optimal sigma" for a Laplace); ``--foreground-weight W``
multiplies the log-likelihood of pixels that differ from the image's border median by more
than 0.1 by ``1 + W`` (a diagnostic of where the pixels go). The test NLL in the rows is
always the fixed-scale Laplace one, so rows of all variants compare.

``--schedule cosine --warmup 100`` trains with stage 2's learning-rate schedule (linear warm-up,
cosine decay to 0 at ``--steps``; ``mmcl.optim.lr_factor``), so that the last point is
comparable with a stage-2 run of as many steps; the default keeps Adam's rate constant.

Resumable: after each evaluation the decoder, its optimiser (and schedule) and the result rows
are saved under ``--work``, and the JSON is written with the rows so far; a rerun continues from
there (a constant-rate run may be continued to more ``--steps``, a cosine one only to the same).
Progress lines give the rate and ETA. Writes the JSON (rows per width and step, seconds per
step, the command, the seed) and, at the end, a PNG: accuracy against steps and test images
drawn by the widest decoder at its last step.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from mmcl.checkpoint import load_checkpoint
from mmcl.dmvae.classifier import load_classifier
from mmcl.dmvae.data import DMVAEDataModule
from mmcl.dmvae.losses import image_log_likelihood, laplace_log_likelihood
from mmcl.dmvae.networks import IMAGE_DECODERS, image_decoder
from mmcl.machine import machine_record
from mmcl.optim import lr_factor
from mmcl.probing.probes import chance_level

REPO = Path(__file__).resolve().parents[2]
PERIODIC = ("object_color", "spotlight_color", "background_color")  # hues in [0, 1)


def load_split(data: DMVAEDataModule, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """uint8 images (N, 3, H, W) and the image latents of a whole split, in index order."""
    images, latents, index = [], {}, []
    for batch in data.dataloader(split, train=False, rank=0, world_size=1):
        images.append(batch["image"])
        index.append(batch["index"])
        for k, v in batch["latents_image"].items():
            latents.setdefault(k, []).append(v)
    order = torch.cat(index).argsort()
    return torch.cat(images)[order], {k: torch.cat(v)[order] for k, v in latents.items()}


def condition(latents: dict[str, torch.Tensor], factors, stats: dict | None = None):
    """The decoder's input: one-hot discrete factors, (sin, cos) of hues, z-scored others."""
    cols, stats = [], dict(stats or {})
    for f in factors:
        v = latents[f.name]
        if f.kind == "discrete":
            if (f.n_values or 0) > 1:
                cols.append(torch.nn.functional.one_hot(v.long(), f.n_values).float())
        elif f.name in PERIODIC:
            a = 2 * math.pi * v.float()
            cols += [torch.sin(a)[:, None], torch.cos(a)[:, None]]
        else:
            mean, std = stats.setdefault(f.name, (float(v.mean()), float(v.std()) or 1.0))
            cols.append(((v.float() - mean) / std)[:, None])
    return torch.cat(cols, 1), stats


@torch.no_grad()
def judge(decoder, classifier, cond, latents, batch: int = 250) -> tuple[dict[str, float], torch.Tensor]:
    decoder.eval()
    drawn = torch.cat([decoder(cond[i : i + batch]) for i in range(0, len(cond), batch)])
    decoder.train()
    pred = {k: [] for k in classifier.factors}
    for i in range(0, len(drawn), batch):
        for k, v in classifier.predict(drawn[i : i + batch]).items():
            pred[k].append(v)
    acc = {k: float((torch.cat(v) == latents[k]).float().mean()) for k, v in pred.items()}
    return acc, drawn


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="runs/demo/data")
    p.add_argument("--classifier", required=True, help="factor classifier .pt written by `mmcl dmvae eval`")
    p.add_argument("--widths", type=int, nargs="+", default=[12], help="decoder_base_channels to try")
    p.add_argument("--decoder", choices=IMAGE_DECODERS, default="deconv", help="image decoder family")
    p.add_argument("--broadcast-layers", type=int, default=4, help="layers of the broadcast decoder")
    p.add_argument("--broadcast-kernel", type=int, default=3, help="kernel of its convolutions")
    p.add_argument(
        "--likelihood",
        choices=LIKELIHOODS,
        default="fixed",
        help="Laplace scale: fixed --scale, learned, optimal",
    )
    p.add_argument("--foreground-weight", type=float, default=0.0, help="extra weight of object pixels")
    p.add_argument("--res-blocks", type=int, default=0, help="ImageDecoder res_blocks (extra 3x3 layers)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--eval-at", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--schedule", choices=("constant", "cosine"), default="constant", help="Adam's rate over --steps"
    )
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (stage 2: 100)")
    p.add_argument("--scale", type=float, default=0.1, help="Laplace b of the likelihood")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="runs/dmvae/decoder_ceiling", help="resume state")
    p.add_argument("--out", default="docs/dmvae/decoder_ceiling.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)

    data = DMVAEDataModule(args.data, batch_size=args.batch_size, eval_batch_size=500, num_workers=0)
    factors = [f for f in data.manifest.factors_of("image") if not f.constant]
    t0 = time.perf_counter()
    train_u8, train_lat = load_split(data, "train")
    test_u8, test_lat = load_split(data, "test")
    train_cond, stats = condition(train_lat, factors)
    test_cond, _ = condition(test_lat, factors, stats)
    seen = torch.arange(0, len(train_u8), max(1, len(train_u8) // 1000))[:1000]  # training images judged
    print(f"[ceiling] {len(train_u8)} train / {len(test_u8)} test images loaded in {time.perf_counter() - t0:.0f}s, "
          f"condition of {train_cond.shape[1]} dims", flush=True)  # fmt: skip
    classifier, cls_meta = load_classifier(args.classifier)
    real_acc, _ = judge(torch.nn.Identity(), classifier, test_u8.float() / 255, test_lat)
    print(f"[ceiling] factor classifier on the real test images: {real_acc}", flush=True)
    fixed = {  # what every version of the JSON records besides its rows
        "condition_dims": int(train_cond.shape[1]),
        "train_images": len(train_u8),
        "test_images": len(test_u8),
        "classifier_real_test_accuracy": real_acc,
        "classifier_meta": {k: v for k, v in cls_meta.items() if k != "dataset"},
        "chance": {k: chance_level("discrete", test_lat[k].numpy()) for k in classifier.factors},
    }

    rows: list[dict] = []
    last_drawn = None
    for width in args.widths:
        variant = variant_name(args, width)
        if args.schedule == "cosine":  # a cosine run is defined by its length: never continued to another
            variant += f"_cosine{args.steps}_warmup{args.warmup}"
        elif args.warmup:
            variant += f"_warmup{args.warmup}"
        state_path = work / f"{variant}.pt"
        torch.manual_seed(args.seed)
        decoder = image_decoder(
            args.decoder, train_cond.shape[1], data.manifest.resolution or 64, width,
            res_blocks=args.res_blocks, broadcast_layers=args.broadcast_layers, broadcast_kernel=args.broadcast_kernel,
        )  # fmt: skip
        log_scale = torch.nn.Parameter(torch.full((1, 3, 1, 1), math.log(args.scale)))  # --likelihood learned
        params = list(decoder.parameters()) + ([log_scale] if args.likelihood == "learned" else [])
        opt = torch.optim.Adam(params, lr=args.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(args.warmup, args.schedule, args.steps))
        step, seconds, done_rows = 0, 0.0, []
        if state_path.is_file():
            state = load_checkpoint(state_path, "decoder-ceiling state")
            decoder.load_state_dict(state["decoder"])
            if "log_scale" in state:
                log_scale.data.copy_(state["log_scale"])
            opt.load_state_dict(state["optimizer"])
            if "schedule" in state:  # states written before --schedule existed ran at a constant rate
                sched.load_state_dict(json.loads(state["schedule"]))
            step, seconds, done_rows = state["step"], state["seconds"], json.loads(state["rows"])
            torch.set_rng_state(state["rng"])
            print(f"[ceiling] width {width}: resuming at step {step}", flush=True)
        rows += done_rows
        n_params = sum(p.numel() for p in params)
        t_start = time.perf_counter() - seconds
        while step < args.steps:
            idx = torch.randint(len(train_u8), (args.batch_size,))
            x = train_u8[idx].float() / 255
            loss = -pixel_log_likelihood(x, decoder(train_cond[idx]), args, log_scale).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            elapsed = time.perf_counter() - t_start
            if step % 100 == 0:
                rate = step / elapsed
                print(f"[ceiling] width {width} step {step}/{args.steps} loss {loss.item():.0f} "
                      f"{rate:.2f} steps/s ETA {(args.steps - step) / rate / 60:.1f} min", flush=True)  # fmt: skip
            if step in args.eval_at or step == args.steps:
                acc, drawn = judge(decoder, classifier, test_cond, test_lat)
                train_acc, _ = judge(
                    decoder, classifier, train_cond[seen], {k: v[seen] for k, v in train_lat.items()}
                )
                row = {"variant": variant, "decoder": args.decoder, "likelihood": args.likelihood,
                       "foreground_weight": args.foreground_weight, "seed": args.seed,
                       "learned_scale": [round(float(b), 4) for b in log_scale.detach().exp().flatten()],
                       "width": width, "res_blocks": args.res_blocks, "step": step, "parameters": n_params, "seconds": round(elapsed, 1),
                       "seconds_per_step": round(elapsed / step, 4), "test_nll": None, "accuracy": acc,
                       "train_accuracy": train_acc}  # fmt: skip
                with torch.no_grad():
                    row["test_nll"] = round(
                        float(
                            -laplace_log_likelihood(
                                test_u8[:500].float() / 255, drawn[:500], args.scale
                            ).mean()
                        ),
                        1,
                    )
                rows.append(row)
                done_rows.append(row)
                print(f"[ceiling] width {width} step {step}: test {acc}, train {train_acc}, "
                      f"test NLL {row['test_nll']}", flush=True)  # fmt: skip
                state = {"decoder": decoder.state_dict(), "optimizer": opt.state_dict(), "step": step,
                         "seconds": elapsed, "rows": json.dumps(done_rows), "rng": torch.get_rng_state(),
                         "schedule": json.dumps(sched.state_dict()), "log_scale": log_scale.detach()}  # fmt: skip
                torch.save(state, state_path)
                last_drawn = drawn
                write_result(out, args, argv, rows, fixed)
        if last_drawn is None:
            _, last_drawn = judge(decoder, classifier, test_cond, test_lat)

    result = write_result(out, args, argv, rows, fixed)
    plot(result, last_drawn, test_u8, out.with_suffix(".png"))
    print(f"[ceiling] wrote {out} and {out.with_suffix('.png')}")
    return 0


LIKELIHOODS = ("fixed", "learned", "optimal")


def variant_name(args, width: int) -> str:
    """The name of one trained decoder (its resume file and its rows)."""
    name = f"width{width}" + (f"_res{args.res_blocks}" if args.res_blocks else "")
    if args.decoder != "deconv":
        name = f"{args.decoder}{width}x{args.broadcast_layers}" + (
            f"_k{args.broadcast_kernel}" if args.broadcast_kernel != 3 else ""
        )
    if args.likelihood != "fixed":
        name += f"_{args.likelihood}"
    if args.foreground_weight:
        name += f"_fg{args.foreground_weight:g}"
    if args.seed:
        name += f"_seed{args.seed}"
    return name


def pixel_log_likelihood(x: torch.Tensor, loc: torch.Tensor, args, log_scale: torch.Tensor) -> torch.Tensor:
    """Per-image Laplace log-likelihood under ``args.likelihood`` and ``args.foreground_weight``
    (stage 2's objective with the same options: :func:`mmcl.dmvae.losses.image_log_likelihood`)."""
    scale = log_scale.exp() if args.likelihood == "learned" else args.scale
    return image_log_likelihood(
        x, loc, "laplace", scale, args.likelihood == "optimal", args.foreground_weight
    )


def write_result(out: Path, args, argv, rows: list[dict], fixed: dict) -> dict:
    """The JSON of the rows so far (rewritten after every evaluation, so a killed run keeps them)."""
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:])),
        "seed": args.seed,
        "settings": {k: v for k, v in vars(args).items() if k not in ("work",)},
        **fixed,
        "rows": rows,
        "machine": machine_record(threads=args.threads),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def plot(result: dict, drawn: torch.Tensor, real: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 4.2))
    ax = fig.add_axes([0.05, 0.14, 0.3, 0.74])
    variants = list(dict.fromkeys(r.get("variant", f"width{r['width']}") for r in result["rows"]))
    for variant in variants:
        rows = [r for r in result["rows"] if r.get("variant", f"width{r['width']}") == variant]
        for key, factor, style in (("accuracy", "object_shape", "-o"), ("train_accuracy", "object_shape", "--o"),
                                   ("accuracy", "object_xpos", ":s")):  # fmt: skip
            where = "test" if key == "accuracy" else "train"
            ax.plot([r["step"] for r in rows], [r[key][factor] for r in rows], style,
                    label=f"{factor.split('_')[1]} ({where}), {variant}")  # fmt: skip
    for factor, ls in (("object_shape", "-"),):
        ax.axhline(result["classifier_real_test_accuracy"][factor], color="k", ls=ls, lw=0.8,
                   label="shape, real images")  # fmt: skip
        ax.axhline(result["chance"][factor], color="grey", ls="--", lw=0.8, label="shape, chance")
    ax.set_xlabel("decoder training steps (batch 64)")
    ax.set_ylabel("factor classifier accuracy on drawn test images")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("decoder given the true factors", fontsize=9)
    n = 8
    for i in range(n):
        for row, imgs in enumerate((real[:n].float() / 255, drawn[:n])):
            a = fig.add_axes([0.38 + i * 0.077, 0.5 - row * 0.4, 0.072, 0.36])
            a.imshow(imgs[i].permute(1, 2, 0).clamp(0, 1).numpy())
            a.set_xticks([])
            a.set_yticks([])
            if i == 0:
                a.set_ylabel("real" if row == 0 else f"drawn ({variants[-1]})", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
