"""The harness of the encoder trials in docs/demo/README.md, kept as a record (not a tool).

It trains the demo's image/text encoders on a draft dataset held in memory with a plain loop
(the same encoders, symmetric InfoNCE with cosine similarity and tau 0.1, Adam(W) at 1e-3 with
50 warm-up steps and cosine decay, bf16 autocast, clipping at 2, batch 64), one CPU thread, and
probes image shape / x / y and text shape on val -> test with the project's logistic and MLP
probes (SPEC 4). Variants: ``base`` (ConvImageBackbone), ``maxpool`` (with the global max pool
that became ``global_max_pool``), ``s1max`` (a stride-1 3x3 stem before it). Each result is
appended to results.jsonl. Run from the repository with the project's venv, e.g.

    python docs/demo/trials/trial.py --root DATA --variant maxpool --wd 0.05 --seed 0
"""

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmcl.data import IMAGE_MEAN, IMAGE_STD, SampleDecoder, iter_shard, load_manifest
from mmcl.encoders import ConvImageBackbone, Encoder, LinearHead, downsampling_sizes, text_encoder
from mmcl.losses import infonce_symmetric
from mmcl.probing.probes import logistic_accuracy, mlp_accuracy, standardize


def load(root, split, limit=None):
    m = load_manifest(root)
    dec = SampleDecoder(m)
    imgs, txts, lat = [], [], []
    for sh in m.shards(split):
        for raw in iter_shard(sh):
            s = dec(raw)
            imgs.append(s["image"])
            txts.append(s["text"])
            lat.append([s["latents"]["image"][k] for k in ("object_shape", "object_xpos", "object_ypos")])
            if limit and len(imgs) >= limit:
                break
        if limit and len(imgs) >= limit:
            break
    return torch.stack(imgs), torch.stack(txts), np.array(lat), m


class PoolBackbone(nn.Module):
    """Strided convs; flatten of last map + global max-pool of the last (and optionally earlier) maps."""

    def __init__(self, resolution=64, hidden_size=100, base_channels=32, max_channels=256, first_stride=2,
                 pool="max"):
        super().__init__()
        layers = []
        c_in = 3
        sizes = downsampling_sizes(resolution)
        if first_stride == 1:
            layers += [nn.Conv2d(3, base_channels // 2, 3, 1, 1, bias=False), nn.BatchNorm2d(base_channels // 2),
                       nn.SiLU()]
            c_in = base_channels // 2
        for i, _ in enumerate(sizes):
            c_out = min(base_channels * 2**i, max_channels)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU()]
            c_in = c_out
        self.convnet = nn.Sequential(*layers)
        self.pool = pool
        extra = c_in if pool != "none" else 0
        self.linear = nn.Linear(c_in * sizes[-1] ** 2 + extra, hidden_size)
        self.out_features = hidden_size

    def forward(self, x):
        h = self.convnet(x)
        parts = [h.flatten(1)]
        if self.pool == "max":
            parts.append(h.amax((2, 3)))
        elif self.pool == "avg":
            parts.append(h.mean((2, 3)))
        return self.linear(torch.cat(parts, 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--variant", default="base")
    p.add_argument("--steps", type=int, default=3500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.0)
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--enc", type=int, default=16)
    p.add_argument("--base", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--cl", action="store_true", help="channels-last memory format")
    p.add_argument("--out", default="results.jsonl")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    xi, xt, _, m = load(a.root, "train", a.train_limit)
    vi, vt, vl, _ = load(a.root, "val")
    ti, tt, tl, _ = load(a.root, "test")
    print(f"loaded {len(xi)} train in {time.time() - t0:.0f}s", flush=True)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)

    def norm(u8):
        x = (u8.float() / 255 - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if a.cl else x

    res = xi.shape[-1]
    v = a.variant
    if v == "base":
        bb = ConvImageBackbone(res, 100, a.base)
    elif v == "maxpool":
        bb = PoolBackbone(res, 100, a.base, pool="max")
    elif v == "avgpool":
        bb = PoolBackbone(res, 100, a.base, pool="avg")
    elif v == "s1":
        bb = PoolBackbone(res, 100, a.base, first_stride=1, pool="none")
    elif v == "s1max":
        bb = PoolBackbone(res, 100, a.base, first_stride=1, pool="max")
    else:
        raise SystemExit(v)
    img = Encoder(bb, LinearHead(100, a.enc, True))
    if a.cl:
        img = img.to(memory_format=torch.channels_last)
    txt = text_encoder(len(m.tokenizer.vocabulary) if hasattr(m.tokenizer, "vocabulary") else m.tokenizer.vocab_size,
                       m.tokenizer.max_length, a.enc)
    params = list(img.parameters()) + list(txt.parameters())
    opt = torch.optim.Adam(params, lr=a.lr, weight_decay=a.wd) if a.wd == 0 else torch.optim.AdamW(
        params, lr=a.lr, weight_decay=a.wd)
    warm = 50

    def factor(s):
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, a.steps - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    g = torch.Generator().manual_seed(a.seed)
    n = len(xi)
    perm = torch.randperm(n, generator=g)
    pos = 0

    def evaluate():
        img.eval()
        txt.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            zv = torch.cat([img(norm(vi[i:i + 500])).float() for i in range(0, len(vi), 500)]).numpy()
            zt = torch.cat([img(norm(ti[i:i + 500])).float() for i in range(0, len(ti), 500)]).numpy()
            wv = torch.cat([txt(vt[i:i + 500]).float() for i in range(0, len(vt), 500)]).numpy()
            wt = torch.cat([txt(tt[i:i + 500]).float() for i in range(0, len(tt), 500)]).numpy()
        img.train()
        txt.train()
        out = {}
        a_, b_ = standardize(zv, zt)
        for j, name in enumerate(("shape", "x", "y")):
            out[f"img_{name}"] = round(logistic_accuracy(a_, vl[:, j], b_, tl[:, j], 0), 4)
        out["img_shape_mlp"] = round(mlp_accuracy(a_, vl[:, 0], b_, tl[:, 0], 0), 4)
        c_, d_ = standardize(wv, wt)
        out["txt_shape"] = round(logistic_accuracy(c_, vl[:, 0], d_, tl[:, 0], 0), 4)
        return out

    t1 = time.time()
    losses = []
    for step in range(a.steps):
        if pos + a.batch > n:
            perm = torch.randperm(n, generator=g)
            pos = 0
        idx = perm[pos:pos + a.batch]
        pos += a.batch
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z1 = img(norm(xi[idx]))
            z2 = txt(xt[idx])
        loss = infonce_symmetric(z1.float(), z2.float(), tau=a.tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            el = time.time() - t1
            print(f"step {step + 1} loss {np.mean(losses[-250:]):.3f} {(step + 1) * a.batch / el:.0f} samples/s",
                  flush=True)
        if a.eval_every and (step + 1) % a.eval_every == 0 and step + 1 < a.steps:
            print(f"eval@{step + 1}", evaluate(), flush=True)
    train_s = time.time() - t1
    res_ = evaluate()
    res_.update(variant=v, steps=a.steps, batch=a.batch, lr=a.lr, wd=a.wd, tau=a.tau, enc=a.enc, n_train=n,
                train_s=round(train_s), final_loss=round(float(np.mean(losses[-250:])), 3), tag=a.tag,
                seed=a.seed, threads=a.threads, dataset=a.root)
    print("RESULT", json.dumps(res_), flush=True)
    with open(a.out, "a") as fh:
        fh.write(json.dumps(res_) + "\n")


if __name__ == "__main__":
    main()
