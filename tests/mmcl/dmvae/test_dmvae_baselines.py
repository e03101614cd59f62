"""Joint multimodal VAE baselines (mmcl.dmvae.baselines): each objective against a hand-computed
value, PCGrad / IMTL-G on hand-made gradients, and fit -> eval end to end on the real tiny data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcl.dmvae.cli import main as dmvae_main
from mmcl.dmvae.losses import (
    imtl_g,
    mixture_log_density,
    mmvae_objective,
    mopoe_objective,
    mvae_objective,
    pcgrad,
)
from mmcl.encoders import Posterior

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "dmvae" / "tiny.yaml"
MODS = ["image", "text"]
# two examples, two experts, d = 2
MU = np.array([[[0.5, -1.0], [1.5, 0.0]], [[-0.3, 0.2], [0.1, 0.4]]])
VAR = np.array([[[0.5, 2.0], [1.0, 0.25]], [[1.5, 0.5], [0.2, 1.0]]])
TARGET = {"image": np.array([1.0, 1.0]), "text": np.array([-1.0, 0.5])}
W_TARGET = {"image": np.array([0.3]), "text": np.array([-0.2])}


def experts() -> Posterior:
    return Posterior(torch.tensor(MU), torch.tensor(VAR).log())


def mean_sample(post: Posterior) -> torch.Tensor:
    return post.mean  # "draws" at the mean: the objectives become closed-form


def loglik(m, z, w):
    out = -((z - torch.tensor(TARGET[m])) ** 2).sum(-1)
    if w is not None:
        out = out - ((w - torch.tensor(W_TARGET[m])) ** 2).sum(-1)
    return out


def hand_kl(mu, var):
    return 0.5 * (mu**2 + var - 1 - np.log(var)).sum(-1)


def hand_ll(m, z, w=None):
    out = -((z - TARGET[m]) ** 2).sum(-1)
    return out if w is None else out - ((w - W_TARGET[m]) ** 2).sum(-1)


def hand_product(mus, vars_, prior):
    precision = sum(1 / v for v in vars_) + (1.0 if prior else 0.0)
    return sum(m / v for m, v in zip(mus, vars_)) / precision, 1 / precision


def hand_log_normal(z, mu, var):
    return (-0.5 * (np.log(2 * np.pi * var) + (z - mu) ** 2 / var)).sum(-1)


def total(shares):
    return sum(shares.values()).numpy()


def test_mvae_objective_is_the_joint_plus_unimodal_elbos():
    got = total(mvae_objective(experts(), MODS, loglik, mean_sample, prior_expert=True))
    for b in range(2):
        mu, var = hand_product(MU[b], VAR[b], prior=True)
        want = hand_ll("image", mu) + hand_ll("text", mu) - hand_kl(mu, var)
        for i, m in enumerate(MODS):
            mu_i, var_i = hand_product([MU[b, i]], [VAR[b, i]], prior=True)
            want += hand_ll(m, mu_i) - hand_kl(mu_i, var_i)
        assert got[b] == pytest.approx(want, rel=1e-12)


def test_mopoe_objective_uses_the_drawn_subset():
    mask = torch.tensor([[True, False], [True, True]])
    got = total(mopoe_objective(experts(), MODS, loglik, mean_sample, mask))
    for b, members in enumerate(([0], [0, 1])):
        mu, var = hand_product(MU[b, members], VAR[b, members], prior=False)
        want = hand_ll("image", mu) + hand_ll("text", mu) - hand_kl(mu, var)
        assert got[b] == pytest.approx(want, rel=1e-12)


def test_mixture_density_and_mmvae_objective():
    z = torch.tensor([[0.2, 0.1], [1.0, -0.5]])
    got = mixture_log_density(z, experts()).numpy()
    for b in range(2):
        dens = [np.exp(hand_log_normal(z[b].numpy(), MU[b, k], VAR[b, k])) for k in range(2)]
        assert got[b] == pytest.approx(np.log(np.mean(dens)), rel=1e-12)
    got = total(mmvae_objective(experts(), MODS, loglik, mean_sample))
    for b in range(2):
        want = 0.0
        for k in range(2):
            zk = MU[b, k]
            mix = np.log(np.mean([np.exp(hand_log_normal(zk, MU[b, j], VAR[b, j])) for j in range(2)]))
            want += hand_ll("image", zk) + hand_ll("text", zk) + hand_log_normal(zk, 0.0, 1.0) - mix
        assert got[b] == pytest.approx(want / 2, rel=1e-12)


def test_mmvae_plus_objective_adds_specific_latents():
    w_mu = {"image": np.array([[0.4], [-0.1]]), "text": np.array([[0.0], [0.3]])}
    w_var = {"image": np.array([[0.5], [2.0]]), "text": np.array([[1.0], [0.8]])}
    specific = {m: Posterior(torch.tensor(w_mu[m]), torch.tensor(w_var[m]).log()) for m in MODS}
    got = total(mmvae_objective(experts(), MODS, loglik, mean_sample, specific))
    for b in range(2):
        want = 0.0
        for k in range(2):
            zk = MU[b, k]
            mix = np.log(np.mean([np.exp(hand_log_normal(zk, MU[b, j], VAR[b, j])) for j in range(2)]))
            want += hand_log_normal(zk, 0.0, 1.0) - mix
            for j, m in enumerate(MODS):  # own w when j == k, the auxiliary prior's draw (0) otherwise
                want += hand_ll(m, zk, w_mu[m][b] if j == k else np.zeros(1))
        want /= 2
        want -= sum(hand_kl(w_mu[m][b], w_var[m][b]) for m in MODS)
        assert got[b] == pytest.approx(want, rel=1e-12)


def test_pcgrad_removes_only_conflicting_components():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    assert torch.allclose(pcgrad([g1, g2]), torch.tensor([0.5, 1.5]))
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.1])
    assert torch.allclose(pcgrad([a, b]), a + b)


def test_imtl_g_equalises_the_projections():
    g1, g2 = torch.tensor([3.0, 0.0, 1.0]), torch.tensor([-0.5, 2.0, 0.0])
    agg = imtl_g([g1, g2])
    u1, u2 = g1 / g1.norm(), g2 / g2.norm()
    assert float(agg @ u1) == pytest.approx(float(agg @ u2), rel=1e-6) and float(agg @ u1) > 0
    same = torch.tensor([1.0, 2.0, 0.5])
    assert torch.allclose(imtl_g([same, same]), 2 * same)
    # impartial to scale: rescaling one modality's gradient (the image's is ~100x the text's
    # here) leaves the aggregate's direction unchanged, so per-dimension likelihood weights
    # cannot change what IMTL-G does to the shared encoders (docs/baselines)
    for k in (0.01, 100.0):
        cos = torch.nn.functional.cosine_similarity(imtl_g([k * g1, g2]), agg, dim=0)
        assert float(cos) == pytest.approx(1.0, abs=1e-6)
    assert (
        float(torch.nn.functional.cosine_similarity(pcgrad([100 * g1, g2]), pcgrad([g1, g2]), dim=0)) < 0.99
    )


# ----------------------------------------------------------------------------- end to end
def fit(root: Path, out: Path, *extra: str) -> int:
    argv = [
        "fit",
        "--config",
        str(CONFIG),
        "--data.root",
        str(root),
        "--out",
        str(out),
        "--stages",
        "[baseline]",
    ]
    return dmvae_main([*argv, *extra])


def metrics_rows(run: Path) -> list[dict]:
    with open(next((run / "baseline" / "logs").glob("version_*/metrics.csv"))) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "objective, impartial",
    [("mvae", "none"), ("mmvae", "none"), ("mopoe", "none"), ("mmvae_plus", "none"), ("mvae", "imtl_g")],
)
def test_each_baseline_learns_on_real_shards(fake_shards, tmp_path, objective, impartial):
    """60 steps on the 48 tiny training pairs: the text objective rises clearly above its start."""
    extra = ["--baseline.model.objective", objective, "--baseline.trainer.max_steps", "60"]
    extra += ["--baseline.model.impartial", impartial]
    if objective == "mmvae_plus":
        extra += ["--baseline.model.specific_size", "2"]
    run = tmp_path / f"{objective}_{impartial}"
    assert fit(fake_shards, run, *extra) == 0
    rows = [r for r in metrics_rows(run) if r.get("baseline/text/objective")]
    text = [float(r["baseline/text/objective"]) for r in rows]
    assert np.mean(text[-5:]) > np.mean(text[:3]) + 20, text  # nats per sentence
    cos = [float(r["baseline/grad_cos"]) for r in metrics_rows(run) if r.get("baseline/grad_cos")]
    assert cos and all(-1 <= c <= 1 for c in cos)


def test_impartial_baseline_fits_and_evaluates_like_the_dmvae(fake_shards, tmp_path):
    run = tmp_path / "pcgrad"
    assert fit(fake_shards, run, "--baseline.model.impartial", "pcgrad") == 0
    ckpt = torch.load(run / "baseline" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 8 and ckpt["hyper_parameters"]["impartial"] == "pcgrad"
    cos = [r["baseline/grad_cos"] for r in metrics_rows(run) if r.get("baseline/grad_cos")]
    assert len(cos) >= 4  # logged every step under impartial optimisation
    out = tmp_path / "eval"
    argv = [
        "eval",
        "--run",
        str(run),
        "--out",
        str(out),
        "--classifier-epochs",
        "1",
        "--n-unconditional",
        "20",
    ]
    assert dmvae_main([*argv, "--probes", "logistic", "linear"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for direction in ("text2image", "image2text", "reconstruction_image", "reconstruction_text"):
        assert set(metrics["coherence"][direction]) >= {"object_shape", "object_xpos", "object_ypos", "all"}
    assert metrics["specific_size"] == {"image": 0, "text": 0} and "unconditional" in metrics
    assert set(metrics["elbo"]) == {"image", "text"} and math.isfinite(metrics["elbo"]["text"]["elbo"])
    emb = json.loads((out / "embeddings" / "embeddings.json").read_text())
    assert set(emb["representations"]) == {"c", "c_image", "c_text"}  # no w without MMVAE+
    assert metrics.get("mi_fresh_critic", {}) == {}
    samples = tmp_path / "samples"
    gen = ["generate", "--run", str(run), "--out", str(samples), "--columns", "2", "--rows", "2"]
    assert dmvae_main(gen) == 0
    made = json.loads((samples / "samples.json").read_text())
    assert {"text2image", "image2text"} <= set(made["files"])
    # no w_i in PoE/MoE/MoPoE models: the grids must not claim their rows are draws of m
    assert made["rows"] == {"image": "a repeat (this model has no m_img)",
                            "text": "one sampled sentence (this model has no m_txt)"}  # fmt: skip


def test_baseline_run_resumes_to_the_straight_run(fake_shards, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert fit(fake_shards, straight) == 0
    assert fit(fake_shards, resumed, "--baseline.trainer.max_steps", "4") == 0
    assert fit(fake_shards, resumed) == 0
    a = torch.load(straight / "baseline/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(resumed / "baseline/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert b["global_step"] == 8
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=0, msg=k)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--baseline.model.objective", "jmvae"], "baseline.model.objective"),
        (["--baseline.model.specific_size", "3"], "specific_size must be 0 for mopoe"),
        (["--baseline.model.impartial", "nash"], "baseline.model.impartial"),
        (["--stages", "[1,baseline]"], "either the DMVAE"),
    ],
)
def test_bad_baseline_settings_are_one_sentence(fake_shards, tmp_path, capsys, argv, message):
    base = ["fit", "--config", str(CONFIG), "--data.root", str(fake_shards), "--out", str(tmp_path / "r")]
    stages = [] if "--stages" in argv else ["--stages", "[baseline]"]
    assert dmvae_main([*base, *stages, *argv]) == 2
    assert message in capsys.readouterr().err
