"""DMVAE modules, grammar, GMM prior and Fréchet distance on the real tiny dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmcl.data import iter_shard
from mmcl.dmvae.classifier import frechet_distance
from mmcl.dmvae.data import DMVAEDataModule
from mmcl.dmvae.gmm import ContentPrior, fit_content_prior
from mmcl.dmvae.grammar import Grammar
from mmcl.dmvae.losses import image_log_likelihood, poe
from mmcl.dmvae.networks import ImageDecoder, upsampling_start
from mmcl.dmvae.stage1 import ContentModule
from mmcl.dmvae.stage2 import SpecificModule
from mmcl.manifest import load_manifest

SMALL_CONTENT = dict(
    encoding_size=4, image_hidden_size=16, image_base_channels=4, text_embedding_dim=8, text_fbase=2
)
SMALL_SPECIFIC = dict(
    specific_size=3,
    image_hidden_size=16,
    image_base_channels=4,
    decoder_base_channels=4,
    text_embedding_dim=8,
    text_fbase=2,
    text_decoder_hidden=16,
    text_decoder_position_size=8,
    discriminator_hidden=16,
)


@pytest.fixture(scope="module")
def data(fake_shards):
    return DMVAEDataModule(str(fake_shards), batch_size=16, num_workers=0)


@pytest.fixture(scope="module")
def batch(data):
    loader = data.dataloader("train", train=False, rank=0, world_size=1)
    return data.prepare_images(next(iter(loader)))


def make_content(data) -> ContentModule:
    torch.manual_seed(0)
    return ContentModule(
        vocabulary=data.vocabulary,
        max_text_length=data.max_text_length,
        image_resolution=data.manifest.resolution,
        **SMALL_CONTENT,
    )


def make_specific(data, **kw) -> SpecificModule:
    content = make_content(data)
    module = SpecificModule(content_hparams=dict(content.hparams), **{**SMALL_SPECIFIC, **kw})
    module.load_content(content)
    return module


def test_batches_carry_unit_images(batch):
    assert batch["image01"].min() >= 0 and batch["image01"].max() <= 1
    mean = torch.tensor([0.4327, 0.2689, 0.2839]).view(1, 3, 1, 1)
    std = torch.tensor([0.1201, 0.1457, 0.1082]).view(1, 3, 1, 1)
    torch.testing.assert_close(batch["image"] * std + mean, batch["image01"], atol=1e-5, rtol=0)


def test_content_is_poe_of_the_experts(data, batch):
    module = make_content(data).eval()
    with torch.no_grad():
        experts = module.experts(batch["image"], batch["text"])
        full = module.content(batch["image"], batch["text"])
        only_text = module.content(text=batch["text"])
    ref = poe(experts.mean, experts.logvar)
    torch.testing.assert_close(full.mean, ref.mean)
    torch.testing.assert_close(full.logvar, ref.logvar)
    torch.testing.assert_close(only_text.mean, experts.mean[:, 1])
    # the full-set posterior is more precise than either expert
    assert (full.logvar <= experts.logvar.min(1).values + 1e-6).all()


def test_stage1_loss_trains(data, batch):
    """A few Adam steps on one real batch lower the MoPoE-InfoNCE loss (Eq. 9.3) clearly."""
    module = make_content(data)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = float(module._loss(batch, g)[0].detach())
    for _ in range(30):
        loss, _ = module._loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    g = torch.Generator().manual_seed(0)
    module.eval()
    assert float(module._loss(batch, g)[0]) < 0.5 * first


def _image_to_text_top1(module: ContentModule, batch: dict) -> float:
    with torch.no_grad():
        experts = module.experts(batch["image"], batch["text"])
    sim = (
        torch.nn.functional.normalize(experts.mean[:, 0], dim=-1)
        @ torch.nn.functional.normalize(experts.mean[:, 1], dim=-1).T
    )
    return float((sim.argmax(1) == torch.arange(len(sim))).float().mean())


def test_pairwise_objective_aligns_the_image_expert_with_the_text_where_eq_9_3_barely_does(data, batch):
    """With the text expert far more precise than the image expert (as the real runs learn it),
    the full-set PoE is nearly the text expert, so Eq. 9.3's positive for A = {text} / {both}
    is nearly c_A itself: its image expert learns from one subset in three. 'mopoe_pairwise'
    adds the experts' symmetric InfoNCE; after the same steps its image means retrieve their
    own sentences far better."""
    top1 = {}
    for objective in ("mopoe", "mopoe_pairwise"):
        module = make_content(data)
        module.hparams.objective = objective
        with torch.no_grad():  # the precision gap the real runs reach (log-variance -9 vs -13)
            module.text_encoder.head.linear.bias[module.encoding_size :] -= 13.0
        opt = torch.optim.Adam(module.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(60):
            loss, _ = module._loss(batch, g)
            opt.zero_grad()
            loss.backward()
            opt.step()
        top1[objective] = _image_to_text_top1(module.eval(), batch)
    assert top1["mopoe_pairwise"] >= 0.75, top1
    assert top1["mopoe_pairwise"] >= top1["mopoe"] + 0.2, top1


def test_stage1_objective_is_validated(data):
    with pytest.raises(ValueError, match="stage1.model.objective"):
        ContentModule(vocabulary=data.vocabulary, objective="pairwise_only", **SMALL_CONTENT)


def _grads(module: torch.nn.Module) -> dict[str, float]:
    return {n: (0.0 if p.grad is None else float(p.grad.abs().sum())) for n, p in module.named_parameters()}


@pytest.mark.parametrize("modality", ["image", "text"])
def test_mi_penalty_reaches_only_the_specific_encoder(data, batch, modality):
    """Eq. 9.8 penalty: gradients on the m_i encoder, none on decoder, discriminator or stage 1."""
    module = make_specific(data)
    module.train()
    content = module.content(batch)
    terms = module.vae_terms(modality, batch, content)
    module.zero_grad()
    terms["mi"].backward()
    assert sum(_grads(module.encoders[modality]).values()) > 0
    assert sum(_grads(module.decoders[modality]).values()) == 0
    assert sum(_grads(module.discriminators[modality]).values()) == 0
    assert all(p.grad is None for p in module.content_model.parameters())
    # the ELBO trains encoder and decoder but never the discriminator
    module.zero_grad()
    terms = module.vae_terms(modality, batch, content)
    (-terms["elbo"].mean()).backward()
    assert sum(_grads(module.decoders[modality]).values()) > 0
    assert sum(_grads(module.discriminators[modality]).values()) == 0
    # the discriminator loss (Eq. 9.7) trains only the discriminator
    module.zero_grad()
    terms = module.vae_terms(modality, batch, content)
    d_loss, _ = module.discriminator_loss(modality, content, terms["specific"])
    d_loss.backward()
    assert sum(_grads(module.discriminators[modality]).values()) > 0
    assert sum(_grads(module.encoders[modality]).values()) == 0
    assert sum(_grads(module.decoders[modality]).values()) == 0


def test_stage2_keeps_stage1_frozen_and_in_eval_mode(data):
    module = make_specific(data)
    module.train()
    assert not module.content_model.training
    assert all(not p.requires_grad for p in module.content_model.parameters())
    assert module.encoders["image"].training
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    assert not any(n.startswith("content_model.") for n in names)


def test_delta_scales_the_encoder_gradient(data, batch):
    """The penalty's gradient on the encoder is delta * grad(I_hat): check linearity in delta."""
    grads = {}
    for delta in (0.0, 10.0, 20.0):
        module = make_specific(data, delta=delta)
        module.train()
        torch.manual_seed(1)
        content = module.content(batch, torch.Generator().manual_seed(0))
        terms = module.vae_terms("image", batch, content, torch.Generator().manual_seed(1))
        module.zero_grad()
        (module.deltas["image"] * terms["mi"]).backward()
        p = module.encoders["image"].head.linear.weight
        grads[delta] = torch.zeros_like(p) if p.grad is None else p.grad.clone()
    assert float(grads[0.0].abs().sum()) == 0
    torch.testing.assert_close(grads[20.0], 2 * grads[10.0])


@pytest.mark.parametrize("bad", [-1.0, float("nan"), {"image": 400.0}, {"image": 1.0, "text": -0.5}])
def test_delta_must_be_nonnegative_per_modality(data, bad):
    with pytest.raises(ValueError, match="delta"):
        make_specific(data, delta=bad)


def test_per_modality_delta(data):
    module = make_specific(data, delta={"image": 400.0, "text": 0.0})
    assert module.deltas == {"image": 400.0, "text": 0.0}


def test_image_decoder_sizes():
    assert upsampling_start(64) == (4, 4)
    assert upsampling_start(224) == (7, 5)
    assert upsampling_start(32) == (4, 3)
    for res in (32, 64, 224):
        dec = ImageDecoder(6, res, base_channels=4)
        out = dec(torch.randn(2, 6))
        assert out.shape == (2, 3, res, res) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="resolution"):
        upsampling_start(100)


def test_image_decoder_residual_layers_keep_the_plain_stack_loadable():
    """res_blocks = 0 must stay the decoder every committed run was saved with (same state
    keys); res_blocks = 1 adds one 3x3 layer per resolution and still fits a target."""
    plain, deeper = ImageDecoder(6, 32, base_channels=4), ImageDecoder(6, 32, base_channels=4, res_blocks=1)
    plain_keys = set(plain.state_dict())
    assert all(k.startswith(("linear.", "deconv.")) for k in plain_keys)
    assert [k for k in plain_keys if "body" in k] == []
    extra = [k for k in deeper.state_dict() if ".body.0.weight" in k]
    assert len(extra) == 3  # 4x4 -> 8 -> 16 -> 32: one layer after each of three upsamplings
    torch.manual_seed(0)
    z, target = torch.randn(8, 6), torch.rand(8, 3, 32, 32)
    opt = torch.optim.Adam(deeper.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = (deeper(z) - target).abs().mean()
        first = first if first is not None else float(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.8 * first


# ----------------------------------------------------------------------------- grammar
def test_grammar_parses_every_real_sentence_exactly(fake_shards):
    manifest = load_manifest(fake_shards)
    grammar = Grammar(manifest)
    n = 0
    for split in ("train", "val", "test"):
        for shard in manifest.shards(split):
            for raw in iter_shard(shard):
                meta = json.loads(raw.members["json"])
                sentence = raw.members["txt"].decode()
                parsed = grammar.parse(sentence)
                assert parsed is not None, sentence
                assert parsed.object_shape == meta["text"]["object_shape"]
                assert parsed.object_xpos == meta["text"]["object_xpos"]
                assert parsed.object_ypos == meta["text"]["object_ypos"]
                assert parsed.template == meta["text"]["text_phrasing"]
                assert parsed.colour_name == meta["text"]["object_color_name"]
                ids, _ = manifest.tokenizer.encode_padded(sentence)
                assert grammar.parse_ids(ids) == parsed
                n += 1
    assert n == 80


def test_grammar_rejects_near_misses(fake_shards):
    manifest = load_manifest(fake_shards)
    grammar = Grammar(manifest)
    good = 'A "red" cow is at the top-left of the image.'
    assert grammar.parse(good).object_shape == [s["word"] for s in manifest.raw["shapes"]].index("cow")
    for bad in (
        'A "red" cow is at the top-left of the picture.',  # template 1 says "image"
        'A "red" cow is at the left-top of the image.',  # y before x
        'A "notacolour" cow is at the top-left of the image.',
        'A "red" cow cow is at the top-left of the image.',
    ):
        assert grammar.parse(bad) is None, bad
    tok = manifest.tokenizer
    ids, _ = tok.encode_padded(good)
    broken = ids.clone()
    broken[-1] = tok.vocabulary.index("cow")  # a token after <eos> padding
    assert grammar.parse_ids(broken) is None
    assert grammar.parse_ids(ids[1:]) is None  # no <bos>


# ----------------------------------------------------------------------------- GMM, FD
@pytest.mark.parametrize("k", [1, 2])
def test_gmm_prior_recovers_a_mixture(tmp_path, k):
    rng = np.random.default_rng(0)
    a = rng.normal([4.0, 0.0], 0.5, size=(3000, 2))
    b = rng.normal([-4.0, 1.0], 1.0, size=(1000, 2))
    x = np.concatenate([a, b]) if k == 2 else a
    prior = fit_content_prior(x, n_components=k, seed=0)
    prior.save(tmp_path / "gmm.npz", {"k": k})
    loaded, meta = ContentPrior.load(tmp_path / "gmm.npz")
    assert meta == {"k": k}
    s = loaded.sample(20000, seed=1).numpy()
    np.testing.assert_allclose(s.mean(0), x.mean(0), atol=0.1)
    np.testing.assert_allclose(np.cov(s, rowvar=False), np.cov(x, rowvar=False), atol=0.2)
    assert loaded.log_density(x).mean() > loaded.log_density(x + 8).mean() + 5
    with pytest.raises(ValueError, match="exceeds"):
        fit_content_prior(x[:5], n_components=10)


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, size=(20000, 3))
    b = rng.normal(0, 1, size=(20000, 3)) + np.array([2.0, 0.0, 0.0])
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=0.1)
    c = rng.normal(0, 2, size=(20000, 3))  # Tr(1 + 4 - 2 * 2) = 1 per dimension
    assert frechet_distance(a, c) == pytest.approx(3.0, abs=0.1)


def test_content_cache_equals_the_frozen_stage1_forward(data, batch):
    """Stage 2 encodes the training split once (ContentCache); the cached experts must be what the
    frozen stage-1 network computes for the same examples."""
    from types import SimpleNamespace

    from mmcl.dmvae.fit import ContentCache

    module = make_specific(data).train()
    ContentCache(log=lambda m: None).on_fit_start(SimpleNamespace(datamodule=data), module)
    assert module.content_cache.shape == (48, 2, 2, 4)
    cached = module.experts(batch, use_cache=True)
    fresh = module.experts(batch, use_cache=False)
    torch.testing.assert_close(cached.mean, fresh.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.logvar, fresh.logvar, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(foreground_weight=-1.0), "foreground_weight"),
        (dict(foreground_weight="4"), "foreground_weight"),
        (dict(optimal_image_scale=True, learn_image_scale=True), "exclude each other"),
    ],
)
def test_image_likelihood_options_are_validated(data, bad, match):
    with pytest.raises(ValueError, match=match):
        make_specific(data, **bad)


def test_optimal_scale_and_foreground_weight_reach_the_stage2_objective(data, batch):
    """The stage-2 image term uses the options (issue 29) and a few Adam steps raise its ELBO."""
    fixed = make_specific(data)
    tuned = make_specific(data, optimal_image_scale=True, foreground_weight=4.0)
    tuned.load_state_dict(fixed.state_dict())
    x = batch["image01"]
    loc = torch.full_like(x, 0.5)
    assert not torch.allclose(fixed.log_likelihood("image", x, loc), tuned.log_likelihood("image", x, loc))
    torch.testing.assert_close(
        tuned.log_likelihood("image", x, loc), image_log_likelihood(x, loc, "laplace", 0.1, True, 4.0)
    )
    tuned.train()
    opt = torch.optim.Adam(
        [*tuned.encoders["image"].parameters(), *tuned.decoders["image"].parameters()], lr=3e-3
    )

    def elbo() -> torch.Tensor:
        content = tuned.content(batch, torch.Generator().manual_seed(0))
        return tuned.vae_terms("image", batch, content, torch.Generator().manual_seed(1))["elbo"].mean()

    first = float(elbo().detach())
    for _ in range(20):
        loss = -elbo()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(elbo().detach()) > first + 0.1 * abs(first)
