"""What makes the DMVAE generate and disentangle: the fresh critic, the autoregressive text
decoder and the MI penalty, each trained a little and checked on its outcome."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mmcl.data import iter_shard
from mmcl.dmvae.critic import fresh_critic_mi
from mmcl.dmvae.grammar import Grammar
from mmcl.dmvae.networks import AutoregressiveTextDecoder
from mmcl.dmvae.synthetic import fresh_mi, mean_probe_accuracy, specific_kl, train_image_stage2
from mmcl.manifest import load_manifest


def correlated_gaussians(n: int, rho: float, d: int, rng: np.random.Generator):
    c = rng.standard_normal((n, d))
    return c, rho * c + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))


@pytest.mark.parametrize("rho, d", [(0.0, 2), (0.8, 1), (0.9, 2)])
def test_fresh_critic_approaches_the_gaussian_mutual_information(rho, d):
    """A critic trained on samples (not the closed-form ratio) estimates -d/2 log(1 - rho^2)."""
    rng = np.random.default_rng(0)
    c_fit, m_fit = correlated_gaussians(4000, rho, d, rng)
    c_ev, m_ev = correlated_gaussians(4000, rho, d, rng)
    torch.set_num_threads(1)
    est = fresh_critic_mi(c_fit, m_fit, c_ev, m_ev, seed=0)
    truth = -0.5 * d * math.log(1 - rho**2)
    assert est["density_ratio"] == pytest.approx(truth, abs=0.06 + 0.06 * truth)
    # the Donsker-Varadhan bound stays below the truth (up to sampling error)
    assert est["dv_lower_bound"] <= truth + 0.04
    if rho == 0:
        assert est["heldout_bce"] > 2 * math.log(2) - 0.01


def test_fresh_critic_is_seeded():
    rng = np.random.default_rng(1)
    c, m = correlated_gaussians(600, 0.7, 1, rng)
    a = fresh_critic_mi(c, m, c, m, seed=3, max_steps=300)
    b = fresh_critic_mi(c, m, c, m, seed=3, max_steps=300)
    assert a == b


def _factor_latents(records: list[dict], seed: int = 0) -> torch.Tensor:
    """One-hot shape / x / y / phrasing and a fixed random code per colour name: the latents a
    sentence is written from."""
    g = torch.Generator().manual_seed(seed)
    colours = sorted({r["object_color_index"] for r in records})
    code = {k: torch.randn(8, generator=g) for k in colours}
    rows = []
    for r in records:
        parts = [
            torch.nn.functional.one_hot(torch.tensor(r["object_shape"]), 7),
            torch.nn.functional.one_hot(torch.tensor(r["object_xpos"]), 3),
            torch.nn.functional.one_hot(torch.tensor(r["object_ypos"]), 3),
            torch.nn.functional.one_hot(torch.tensor(r["text_phrasing"]), 5),
        ]
        rows.append(torch.cat([p.float() for p in parts] + [code[r["object_color_index"]]]))
    return torch.stack(rows)


def test_autoregressive_decoder_writes_grammar_sentences_from_their_latents(fake_shards):
    """After a short teacher-forced fit the greedy decoder reproduces the training sentences
    token for token, and the grammar parses them back to their factors."""
    manifest = load_manifest(fake_shards)
    tokenizer = manifest.tokenizer
    records, ids = [], []
    for shard in manifest.shards("train"):
        for raw in iter_shard(shard):
            records.append(json.loads(raw.members["json"])["text"])
            ids.append(tokenizer.encode_padded(raw.members["txt"].decode())[0])
    tokens = torch.stack(ids)
    latent = _factor_latents(records)
    vocab = list(tokenizer.vocabulary)
    torch.manual_seed(0)
    decoder = AutoregressiveTextDecoder(
        latent.shape[1], len(vocab), tokens.shape[1], hidden_size=64, embedding_dim=16,
        bos_id=vocab.index("<bos>"), eos_id=vocab.index("<eos>"), pad_id=vocab.index("<pad>"),
    )  # fmt: skip
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    target = tokens[:, 1:]
    mask = target != 0
    for _ in range(150):
        logits = decoder(latent, tokens)
        nll = (
            -(torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask).sum(1).mean()
        )
        opt.zero_grad()
        nll.backward()
        opt.step()
    generated = decoder.generate(latent)
    exact = (generated == tokens).all(1).float().mean()
    assert exact >= 0.95, f"only {exact:.2f} of the sentences reproduced"
    grammar = Grammar(manifest)
    parsed = [grammar.parse_ids(row) for row in generated]
    ok = [
        p is not None and (p.object_shape, p.object_xpos, p.object_ypos) ==
        (r["object_shape"], r["object_xpos"], r["object_ypos"])
        for p, r in zip(parsed, records)
    ]  # fmt: skip
    assert np.mean(ok) >= 0.95
    # an untrained decoder does not (the assertion above can fail)
    fresh = AutoregressiveTextDecoder(latent.shape[1], len(vocab), tokens.shape[1], 64, 16)
    assert (fresh.generate(latent) == tokens).all(1).float().mean() < 0.5


# ----------------------------------------------------------------------------- MI penalty
def test_mi_penalty_empties_the_draws_of_m_and_with_both_inputs_its_mean():
    """A few hundred real stage-2 steps: with the HSIC penalty m_img gives up the square's
    cell (fresh-critic MI with c near 0) but keeps its brightness (KL stays well above 0)."""
    torch.set_num_threads(1)
    plain, pairs, cache = train_image_stage2(delta=0.0, steps=600)
    penalised, _, _ = train_image_stage2(delta=1000.0, steps=600, mi_penalty="hsic")
    mi_plain, mi_penalised = fresh_mi(plain, pairs, cache), fresh_mi(penalised, pairs, cache)
    # without the penalty m_img carries the content k (H(k) = log 4 = 1.39 nats)
    assert mi_plain > 0.8, mi_plain
    assert mi_penalised < 0.25 * mi_plain, (mi_plain, mi_penalised)
    assert specific_kl(penalised, pairs) > 2.0, "m_img should still describe the brightness"
    # ... yet an MLP still reads the cell from the *mean* of q(m_img | x) (what eval's probes
    # read): HSIC at the median bandwidth misses content kept in a direction of small spread.
    # Adding HSIC of the whitened batch of means ('both') empties the mean as well
    # (docs/dmvae/penalty_input_toy.json).
    both, _, _ = train_image_stage2(delta=1000.0, steps=600, mi_penalty="hsic", penalty_input="both")
    probe_plain = mean_probe_accuracy(plain, pairs)
    probe_sample = mean_probe_accuracy(penalised, pairs)
    probe_both = mean_probe_accuracy(both, pairs)
    assert probe_plain > 0.95, probe_plain  # chance 0.25
    assert probe_sample > 0.7, probe_sample  # the draws' penalty alone leaves the mean readable
    assert probe_both < 0.4, probe_both
    assert specific_kl(both, pairs) > 2.0, "m_img should still describe the brightness"
    assert fresh_mi(both, pairs, cache) < 0.25 * mi_plain
