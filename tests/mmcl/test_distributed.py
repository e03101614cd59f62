"""mmcl.distributed: 2 real CPU processes (gloo, DDP) give the one-process loss and gradients.

Each rank encodes half of a global batch, gathers the embeddings of both ranks with gradients
and evaluates the global loss; DDP averages the parameter gradients. The result must equal one
process on the whole batch (SPEC §3). Batch norm uses running statistics here (eval mode): with
per-rank batch statistics a k-rank step legitimately differs (see mmcl.distributed).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mmcl.distributed import gather_no_grad, gather_with_grad, global_contrastive_loss
from mmcl.encoders import image_encoder, text_encoder

GLOBAL_BATCH, WORLD, VOCAB, MAX_LEN = 8, 2, 30, 16
CASES = list(
    itertools.product(["infonce_symmetric", "nt_xent"], ["cosine", "euclidean"], ["mlp", "encoders"])
)


class Pair(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(0)
        if kind == "mlp":
            self.f1 = nn.Sequential(nn.Linear(6, 16), nn.LeakyReLU(), nn.Linear(16, 3))
            self.f2 = nn.Sequential(nn.Linear(5, 16), nn.LeakyReLU(), nn.Linear(16, 3))
        else:
            self.f1 = image_encoder(3)
            self.f2 = text_encoder(VOCAB, MAX_LEN, 3)
            self.eval()  # batch norm from running statistics (see module docstring)
        self.log_tau = nn.Parameter(torch.tensor(-0.5))  # learnable temperature

    def forward(self, x1, x2):
        return self.f1(x1), self.f2(x2)


def global_inputs(kind: str):
    g = torch.Generator().manual_seed(1)
    if kind == "mlp":
        return torch.randn(GLOBAL_BATCH, 6, generator=g), torch.randn(GLOBAL_BATCH, 5, generator=g)
    images = torch.randn(GLOBAL_BATCH, 3, 16, 16, generator=g)
    tokens = torch.randint(1, VOCAB, (GLOBAL_BATCH, MAX_LEN), generator=g)
    tokens[:, 10:] = 0
    return images, tokens


def run_case(model: nn.Module, x1, x2, loss: str, similarity: str):
    z1, z2 = model(x1, x2)
    value = global_contrastive_loss(z1, z2, tau=model_tau(model).exp(), similarity=similarity, loss=loss)
    value.backward()
    params = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return value.detach(), {n: p.grad.detach().clone() for n, p in params.named_parameters()}


def model_tau(model):
    return (model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model).log_tau


def _worker(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {}
        local = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
        for loss, similarity, kind in CASES:
            model = nn.parallel.DistributedDataParallel(Pair(kind))
            x1, x2 = global_inputs(kind)
            results[(loss, similarity, kind)] = run_case(model, x1[local], x2[local], loss, similarity)
        # gather helpers: rank order, and identity of the no-grad variant
        x = torch.full((2, 3), float(rank), requires_grad=True)
        gathered = gather_with_grad(x)
        (gathered * torch.arange(4.0)[:, None]).sum().backward()
        results["gather"] = (gather_no_grad(x), gathered.detach(), x.grad)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("loss, similarity, kind", CASES)
def test_two_ranks_equal_one_process(ranks, loss, similarity, kind):
    torch.set_num_threads(1)
    x1, x2 = global_inputs(kind)
    ref_loss, ref_grads = run_case(Pair(kind), x1, x2, loss, similarity)
    for rank, res in enumerate(ranks):
        value, grads = res[(loss, similarity, kind)]
        assert value.item() == pytest.approx(ref_loss.item(), abs=1e-5), f"rank {rank}"
        assert grads.keys() == ref_grads.keys()
        for name, ref in ref_grads.items():
            assert ref.abs().max() > 0 or name.endswith("bias"), name  # the comparison is not vacuous
            assert torch.allclose(grads[name], ref, atol=1e-5, rtol=1e-4), f"rank {rank}: {name}"


def test_gather_order_and_gradient_routing(ranks):
    for rank, res in enumerate(ranks):
        no_grad, with_grad, grad = res["gather"]
        expected = torch.tensor([0.0, 0, 1, 1])[:, None].expand(4, 3)
        assert torch.equal(no_grad, expected) and torch.equal(with_grad, expected)
        # d/dx of sum_r sum_i w_i * gathered_i, summed over both ranks' identical objectives
        assert torch.equal(grad, WORLD * torch.arange(4.0)[2 * rank : 2 * rank + 2, None].expand(2, 3))


def test_single_process_is_identity():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x and torch.equal(gather_no_grad(x), x)
    with pytest.raises(ValueError, match="loss must be one of"):
        global_contrastive_loss(x, x, loss="triplet")


@pytest.mark.slow
def test_mmcl_fit_with_ddp_on_two_cpu_processes(fake_shards, tmp_path):
    """The real CLI with strategy ddp on 2 CPU processes: each rank gets half of every epoch."""
    root = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "mmcl.cli",
        "fit",
        "--config",
        "configs/train/quickstart.yaml",
        "--data.root",
        str(fake_shards),
        "--data.batch_size",
        "4",
        "--data.num_workers",
        "1",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.max_steps",
        "12",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.log_every_n_steps",
        "3",
        "--trainer.default_root_dir",
        str(root),
        "--checkpoint.every_n_train_steps",
        "6",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    # 48 train samples / (2 ranks * 4) = 6 steps per epoch: 12 steps are exactly 2 epochs
    assert ckpt["global_step"] == 12 and ckpt["epoch"] == 1
    metrics = (root / "logs" / "version_0" / "metrics.csv").read_text()
    assert "perf/samples_per_sec_per_device" in metrics and "val/loss" in metrics
