"""What ``mmcl dmvae eval`` measures of a DMVAE (seed 003 §9.3), one function per metric; the
orchestration (which run, classifier, files) is :mod:`mmcl.dmvae.evaluate`'s.

* **Coherence** (§2.5, Table 9.1): text -> image, c = mean of q(c | x_txt), m_img ~ N(0, I), the
  generated image is classified by a :class:`~mmcl.dmvae.classifier.FactorClassifier` trained
  on real training images (its own test accuracy is reported); image -> text, c = mean of
  q(c | x_img), m_txt ~ N(0, I), the greedy sentence is parsed exactly with the manifest's
  grammar (an unparseable sentence is wrong for every factor). Per factor (shape / x / y) and
  for all three at once.
* **Probing matrix** (Fig. 9.3a/b): c (full-set PoE mean), m_image and m_text (posterior means)
  and their posterior log-variances (``m_<i>_logvar``) x every numeric factor, probes of ``mmcl.probing`` fitted on val, scored on test; written as
  embeddings in the docs/formats.md format (``mmcl probe EVAL/embeddings`` reruns them) and as
  a heatmap. Content leakage = accuracy on shape / x / y from m_i against chance.
* **Test ELBO** per modality (Eq. 9.4, nats per example, c drawn as in training, fixed seed).
* **Fréchet distance** of generated vs real test images in the factor classifier's feature
  space (``fd_factor_classifier``; not FID, no Inception weights are available here), for
  unconditional (c ~ GMM) and text -> image samples; and unconditional text parse rate and
  joint coherence (shape / x / y of the image and the sentence generated from the same c).
* **Coherence with m from the aggregate posterior** (``text2image_aggregate``,
  ``image2text_aggregate``): as above, but m_i is the posterior mean of another example of the
  batch instead of a draw from N(0, I). Between the prior's and the reconstruction's figures it
  tells a prior that misses where q(m_i | x) puts its mass (an informative m, high KL) from
  content that does not condition the decoder.
* **Coherence with m from the fitted density** (``text2image_gmm``, ``image2text_gmm``, when the
  run's ``gmm`` stage fitted ``gmm_m_<modality>.npz``): m_i drawn from a GMM fitted on the draws
  of q(m_i | x_i) over the training set (ex-post density estimation, as for c), independent of
  the conditioning c: what ``mmcl dmvae generate --specific-prior gmm`` draws.
* **Reconstruction coherence**, the ceiling of cross-modal coherence: the same classifier and
  parser on reconstructions, c = full-set PoE mean and m_i = mean of q(m_i | x_i) of the same
  example. Low reconstruction coherence means the decoder cannot draw (or write) the factor;
  high reconstruction but low cross-modal coherence means the content does not condition it.
* **Fresh-critic MI** (:mod:`mmcl.dmvae.critic`): I(c; m_i) by a new critic trained to
  convergence on the frozen latents (c = full-set PoE mean, one seeded draw of m_i ~ q(m_i | x_i))
  of the fitting split, estimated on the scoring split,
  beside the linear and MLP probes of m_i; and I(shape, x, y; m_i), the same critic on the
  one-hot content factors, which measures content alone (c also carries image-only factors).
  The stage-1 probes of c also cover each unimodal
  expert (``c_image``, ``c_text``: the means of q(c | x_i)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcl.dmvae.classifier import (
    FactorClassifier,
)
from mmcl.dmvae.data import MODALITIES, add_unit_images
from mmcl.dmvae.grammar import Grammar
from mmcl.dmvae.losses import sample_gaussian
from mmcl.dmvae.protocol import EvaluatedModel
from mmcl.dmvae.run import LoadedRun
from mmcl.manifest import Manifest

# m_<i>_logvar: the posterior log-variances of q(m_i | x_i), probed beside the means because a
# penalty that empties the mean can leave content in how noisy the draw is (docs/dmvae).
REPRESENTATIONS = ("c", "c_image", "c_text", "m_image", "m_text", "m_image_logvar", "m_text_logvar")
NONLINEAR = {"discrete": "mlp", "continuous": "kernel_ridge"}
LINEAR = {"discrete": "logistic", "continuous": "linear"}


def _loader(data, split: str):
    for batch in data.dataloader(split, train=False, rank=0, world_size=1):
        yield add_unit_images(batch, data.image_mean, data.image_std)


def numeric_factors(manifest: Manifest) -> dict[str, dict]:
    """Every numeric, non-constant factor of the dataset (image and text), with kind and role."""
    out: dict[str, dict] = {}
    for f in manifest.factors:
        if f.numeric and not f.constant and f.name not in out:
            out[f.name] = {"kind": f.kind, "role": f.role, "n_values": f.n_values}
    return out


# ----------------------------------------------------------------------------- embeddings
@torch.no_grad()
def encode_split(module: EvaluatedModel, data, split: str, seed: int = 0) -> dict[str, np.ndarray]:
    """c (full-set PoE mean), the unimodal content means, the m_i means and log-variances and one seeded draw
    ``m_<i>_sample`` from each q(m_i | x_i) of ``split`` with every numeric factor, rows sorted by
    sample index."""
    g = torch.Generator().manual_seed(seed)
    reps: dict[str, list[torch.Tensor]] = {
        r: [] for r in REPRESENTATIONS + ("m_image_sample", "m_text_sample")
    }
    factors: dict[str, list[torch.Tensor]] = {}
    index = []
    wanted = numeric_factors(data.manifest)
    cm = module.content_model
    for batch in _loader(data, split):
        experts = cm.experts(batch["image"], batch["text"])
        reps["c"].append(cm.aggregate(experts).mean)
        reps["c_image"].append(experts.mean[:, 0])
        reps["c_text"].append(experts.mean[:, 1])
        for m in MODALITIES:
            if m in module.modalities and module.specific_sizes.get(m, 0) > 0:
                q = module.encode_specific(m, module.inputs(m, batch)[0])
                reps[f"m_{m}"].append(q.mean)
                reps[f"m_{m}_logvar"].append(q.logvar)
                reps[f"m_{m}_sample"].append(sample_gaussian(q, g))
        index.append(batch["index"])
        for modality in MODALITIES:
            for name, values in batch[f"latents_{modality}"].items():
                if name in wanted and (modality == "image" or name not in batch["latents_image"]):
                    factors.setdefault(name, []).append(values)
    order = torch.cat(index).argsort()
    out = {r: torch.cat(v)[order].float().numpy() for r, v in reps.items() if v}
    for name, parts in factors.items():
        values = torch.cat(parts)[order]
        out[f"factor:{name}"] = values.numpy().astype(np.int64 if values.dtype == torch.int64 else np.float64)
    return out


def content_one_hot(arrays: dict[str, np.ndarray], factors: list[str], sizes: dict[str, int]) -> np.ndarray:
    """The ground-truth content factors of one split, one-hot (``sizes[f]`` classes, the same for
    every split, so a class missing from one split keeps its column) and concatenated."""
    return np.concatenate([np.eye(sizes[f])[arrays[f"factor:{f}"].astype(np.int64)] for f in factors], axis=1)


# ----------------------------------------------------------------------------- coherence
def _count_images(pred: dict[str, torch.Tensor], truth: dict[str, torch.Tensor], counts: dict) -> None:
    """Add the classifier's hits per content factor of ``truth`` (and all at once) to ``counts``."""
    ok_all = torch.ones(len(next(iter(truth.values()))), dtype=torch.bool)
    for f in truth:
        ok = pred[f] == truth[f]
        counts[f] += int(ok.sum())
        ok_all &= ok
    counts["all"] += int(ok_all.sum())


def _count_sentences(
    grammar: Grammar, ids: torch.Tensor, truth: dict[str, torch.Tensor], counts: dict
) -> None:
    """Add parsed sentences and their hits per content factor to ``counts`` (an unparseable
    sentence is wrong for every factor)."""
    for i in range(len(ids)):
        parsed = grammar.parse_ids(ids[i])
        if parsed is None:
            continue
        counts["parsed"] += 1
        oks = [getattr(parsed, f) == int(truth[f][i]) for f in truth]
        for f, ok in zip(truth, oks):
            counts[f] += int(ok)
        counts["all"] += int(all(oks))


@torch.no_grad()
def coherence(
    module: EvaluatedModel,
    classifier: FactorClassifier,
    grammar: Grammar,
    data,
    split: str,
    seed: int,
    specific_priors: dict | None = None,
) -> dict[str, Any]:
    """Cross-modal coherence on ``split`` plus classifier features of real and text->image images;
    with ``specific_priors`` (modality -> fitted density of m_i) also the ``*_gmm`` rows."""
    g = torch.Generator().manual_seed(seed)
    cm = module.content_model
    dens = specific_priors or {}
    factors = tuple(classifier.factors)  # the manifest's discrete content factors
    t2i = {f: 0 for f in (*factors, "all")}
    i2t = {f: 0 for f in (*factors, "all", "parsed")}
    t2i_agg = {f: 0 for f in (*factors, "all")}
    i2t_agg = {f: 0 for f in (*factors, "all", "parsed")}
    t2i_gmm = {f: 0 for f in (*factors, "all")}
    i2t_gmm = {f: 0 for f in (*factors, "all", "parsed")}
    rec_img = {f: 0 for f in (*factors, "all")}
    rec_txt = {f: 0 for f in (*factors, "all", "parsed")}
    n = 0
    feats_real, feats_t2i = [], []
    for step, batch in enumerate(_loader(data, split)):
        b = len(batch["text"])
        n += b
        truth = {f: batch["latents_image"][f] for f in factors}
        feats_real.append(classifier.features(batch["image01"]))
        c_full = cm.content(image=batch["image"], text=batch["text"]).mean
        if "image" in module.modalities:
            c = cm.content(text=batch["text"]).mean
            m = torch.randn(b, module.specific_sizes["image"], generator=g)
            images = module.generate("image", c, m)
            feats_t2i.append(classifier.features(images))
            _count_images(classifier.predict(images), truth, t2i)
            m_own = module.encode_specific("image", batch["image"]).mean
            _count_images(classifier.predict(module.generate("image", c_full, m_own)), truth, rec_img)
            # m from the aggregate posterior: the posterior mean of the next example of the batch
            _count_images(classifier.predict(module.generate("image", c, m_own.roll(1, 0))), truth, t2i_agg)
            if "image" in dens:  # m from the density fitted on the aggregate posterior
                m = dens["image"].sample(b, seed + 2 * step + 1)
                _count_images(classifier.predict(module.generate("image", c, m)), truth, t2i_gmm)
        if "text" in module.modalities:
            c = cm.content(image=batch["image"]).mean
            m = torch.randn(b, module.specific_sizes["text"], generator=g)
            _count_sentences(grammar, module.generate("text", c, m), truth, i2t)
            m_own = module.encode_specific("text", batch["text"]).mean
            _count_sentences(grammar, module.generate("text", c_full, m_own), truth, rec_txt)
            _count_sentences(grammar, module.generate("text", c, m_own.roll(1, 0)), truth, i2t_agg)
            if "text" in dens:
                m = dens["text"].sample(b, seed + 2 * step + 2)
                _count_sentences(grammar, module.generate("text", c, m), truth, i2t_gmm)
    out: dict[str, Any] = {"n": n}
    if "image" in module.modalities:
        out["text2image"] = {f: v / n for f, v in t2i.items()}
        out["text2image_aggregate"] = {f: v / n for f, v in t2i_agg.items()}
        out["reconstruction_image"] = {f: v / n for f, v in rec_img.items()}
        if "image" in dens:
            out["text2image_gmm"] = {f: v / n for f, v in t2i_gmm.items()}
    if "text" in module.modalities:
        out["image2text"] = {f: v / n for f, v in i2t.items()}
        out["image2text_aggregate"] = {f: v / n for f, v in i2t_agg.items()}
        out["reconstruction_text"] = {f: v / n for f, v in rec_txt.items()}
        if "text" in dens:
            out["image2text_gmm"] = {f: v / n for f, v in i2t_gmm.items()}
    out["_features_real"] = torch.cat(feats_real).numpy()
    if feats_t2i:
        out["_features_text2image"] = torch.cat(feats_t2i).numpy()
    return out


@torch.no_grad()
def unconditional(
    run: LoadedRun, classifier: FactorClassifier, grammar: Grammar, n: int, seed: int, batch_size: int = 250
) -> dict[str, Any]:
    """Samples with c ~ GMM: classifier features of the images, parse rate of the sentences and
    their joint coherence (the image and the sentence of the same c agree on shape / x / y)."""
    module = run.module
    content = run.prior.sample(n, seed)
    g = torch.Generator().manual_seed(seed + 1)
    feats, parsed_n = [], 0
    factors = tuple(classifier.factors)  # the manifest's discrete content factors
    agree = {f: 0 for f in (*factors, "all")}
    for start in range(0, n, batch_size):
        c = content[start : start + batch_size]
        b = len(c)
        pred = None
        if "image" in module.modalities:
            images = module.generate("image", c, torch.randn(b, module.specific_sizes["image"], generator=g))
            feats.append(classifier.features(images))
            pred = classifier.predict(images)
        if "text" in module.modalities:
            ids = module.generate("text", c, torch.randn(b, module.specific_sizes["text"], generator=g))
            for i in range(b):
                parsed = grammar.parse_ids(ids[i])
                if parsed is None:
                    continue
                parsed_n += 1
                if pred is not None:
                    oks = [getattr(parsed, f) == int(pred[f][i]) for f in factors]
                    for f, ok in zip(factors, oks):
                        agree[f] += int(ok)
                    agree["all"] += int(all(oks))
    out: dict[str, Any] = {"n": n}
    if "text" in module.modalities:
        out["text_parse_rate"] = parsed_n / n
    if "text" in module.modalities and "image" in module.modalities:
        out["joint_coherence"] = {f: v / n for f, v in agree.items()}
    if feats:
        out["_features"] = torch.cat(feats).numpy()
    return out


@torch.no_grad()
def test_elbo(module: EvaluatedModel, data, split: str, seed: int) -> dict[str, dict[str, float]]:
    """Mean ELBO, log-likelihood, KL and MI estimate per modality (c drawn as in training)."""
    g = torch.Generator().manual_seed(seed)
    sums: dict[str, dict[str, float]] = {
        m: {"elbo": 0.0, "log_likelihood": 0.0, "kl": 0.0, "mi_estimate": 0.0} for m in module.modalities
    }
    n = 0
    for batch in _loader(data, split):
        content = module.content(batch, g)
        b = len(content)
        n += b
        for m in module.modalities:
            terms = module.vae_terms(m, batch, content, g)
            for k in ("elbo", "log_likelihood", "kl"):
                sums[m][k] += float(terms[k].sum())
            sums[m]["mi_estimate"] += float(terms["mi"]) * b
    return {m: {k: v / n for k, v in s.items()} for m, s in sums.items()}


# ----------------------------------------------------------------------------- probing
def probing(
    emb_dir: Path,
    out_dir: Path,
    probes: list[str],
    seed: int,
    max_samples: int | None,
    factors: list[str] | None = None,
    log=print,
    representations: tuple[str, ...] = REPRESENTATIONS,
) -> list[dict]:
    from mmcl.probing.cli import run_probes

    results, _ = run_probes(
        emb_dir,
        out_dir,
        probes=probes,
        representations=list(representations),
        factors=factors,
        max_samples=max_samples,
        seed=seed,
        log=log,
    )
    return [r.to_dict() for r in results]


def probing_matrix(results: list[dict], factors: list[str]) -> dict[str, dict[str, dict[str, dict]]]:
    """``{family: {representation: {factor: {score, chance, probe}}}}`` for family linear/nonlinear."""
    out: dict[str, dict] = {"linear": {}, "nonlinear": {}}
    for r in results:
        kind = "continuous" if r["kind"] == "continuous" else "discrete"
        for family, table in (("linear", LINEAR), ("nonlinear", NONLINEAR)):
            if r["probe"] == table[kind]:
                out[family].setdefault(r["representation"], {})[r["factor"]] = {
                    "score": r["score"],
                    "chance": r["chance"],
                    "probe": r["probe"],
                    "metric": r["metric"],
                }
    return out


def leakage(matrix: dict, content: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
    """Accuracy on the ``content`` factors from each latent against chance, per probe family
    (for m_i: content leakage, the ablation's y-axis)."""
    out: dict[str, dict] = {}
    for family in ("linear", "nonlinear"):
        for rep in ("m_image", "m_text", "m_image_logvar", "m_text_logvar", "c", "c_image", "c_text"):
            cells = matrix[family].get(rep, {})
            for f in content:
                if f in cells:
                    out.setdefault(rep, {}).setdefault(family, {})[f] = cells[f]["score"]
                    out[rep].setdefault("chance", {})[f] = cells[f]["chance"]
    return out
