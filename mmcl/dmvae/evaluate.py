"""``mmcl dmvae eval``: coherence, probing matrix, test ELBO and a Fréchet distance (seed 003 §9.3).

    mmcl dmvae eval --run RUN [--classifier PATH] [--out RUN/eval]

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

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcl.cli import user_error
from mmcl.dmvae.classifier import (
    FactorClassifier,
    classifier_accuracy,
    frechet_distance,
    load_classifier,
    save_classifier,
    train_factor_classifier,
)
from mmcl.dmvae.critic import fresh_critic_mi
from mmcl.dmvae.data import MODALITIES, add_unit_images
from mmcl.dmvae.grammar import Grammar
from mmcl.dmvae.io import DMVAEError, save_figure
from mmcl.dmvae.losses import sample_gaussian
from mmcl.dmvae.protocol import EvaluatedModel
from mmcl.dmvae.run import LoadedRun, load_run
from mmcl.io import save_npz, write_csv, write_json
from mmcl.manifest import DataError, Manifest
from mmcl.paths import relative_to_folder

# m_<i>_logvar: the posterior log-variances of q(m_i | x_i), probed beside the means because a
# penalty that empties the mean can leave content in how noisy the draw is (docs/dmvae).
REPRESENTATIONS = ("c", "c_image", "c_text", "m_image", "m_text", "m_image_logvar", "m_text_logvar")
# the Multimodal3DIdent content factors, for tables of several runs (ablate); one evaluation
# reads its own from the manifest through the factor classifier (its heads: the discrete,
# non-constant content factors)
CONTENT = ("object_shape", "object_xpos", "object_ypos")
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


def write_embeddings(
    out_dir: Path,
    arrays: dict[str, dict[str, np.ndarray]],
    manifest: Manifest,
    representations: tuple[str, ...],
    source: dict,
) -> dict:
    """``embeddings_<split>.npz`` + ``embeddings.json`` (docs/formats.md) for ``mmcl probe``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    factors = numeric_factors(manifest)
    for split, arr in arrays.items():
        save_npz(out_dir / f"embeddings_{split}.npz", **arr)
    meta = {
        "representations": {r: {"factors": list(factors)} for r in representations},
        "factors": factors,
        "seed": source.get("seed"),
        "source": source,
    }
    write_json(out_dir / "embeddings.json", meta)
    return meta


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


def plot_probing_matrix(
    matrix: dict, factors: list[str], roles: dict[str, str], path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = [r for r in REPRESENTATIONS if r in matrix["nonlinear"] or r in matrix["linear"]]
    fig, axes = plt.subplots(1, 2, figsize=(1.0 * len(factors) * 2 + 2, 0.7 * len(reps) + 2.8), squeeze=False)
    for ax, family in zip(axes[0], ("linear", "nonlinear")):
        grid = np.full((len(reps), len(factors)), np.nan)
        for i, rep in enumerate(reps):
            for j, f in enumerate(factors):
                cell = matrix[family].get(rep, {}).get(f)
                if cell is not None:
                    grid[i, j] = cell["score"]
        ax.imshow(np.clip(grid, 0, 1), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i, rep in enumerate(reps):
            for j, f in enumerate(factors):
                cell = matrix[family].get(rep, {}).get(f)
                if cell is None:
                    continue
                txt = f"{cell['score']:.2f}\n({cell['chance']:.2f})"
                ax.text(
                    j,
                    i,
                    txt,
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if cell["score"] < 0.6 else "black",
                )
        ax.set_yticks(range(len(reps)), reps)
        ax.set_xticks(
            range(len(factors)),
            [f"{f}\n[{roles.get(f, '')}]" for f in factors],
            rotation=60,
            ha="right",
            fontsize=6.5,
        )
        label = "logistic acc. / linear R²" if family == "linear" else "MLP acc. / kernel ridge R²"
        ax.set_title(f"{family}: {label}\n(chance in brackets)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def leakage(matrix: dict, content: tuple[str, ...] = CONTENT) -> dict[str, dict[str, dict[str, float]]]:
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


# ----------------------------------------------------------------------------- driver
def get_classifier(path: Path, data, epochs: int, seed: int, log=print) -> tuple[FactorClassifier, dict]:
    """Load the factor classifier at ``path`` if it was trained on this dataset, else train it."""
    want = {
        "dataset_config_sha256": data.manifest.raw.get("config_sha256"),
        "dataset_seed": data.manifest.raw.get("seed"),
        "epochs": epochs,
        "seed": seed,
    }
    if path.is_file():
        model, meta = load_classifier(path)
        if all(meta.get(k) == v for k, v in want.items()):
            log(f"factor classifier: reusing {path} (test accuracy {meta.get('test_accuracy')})")
            return model, meta
        log(f"factor classifier: {path} was trained for another dataset or setting; retraining")
    t0 = time.perf_counter()
    model = train_factor_classifier(data, epochs=epochs, seed=seed, log=log)
    meta = {
        **want,
        "test_accuracy": classifier_accuracy(model, data, "test"),
        "seconds": round(time.perf_counter() - t0, 1),
        "dataset": str(data.root),
    }
    save_classifier(model, path, meta)
    log(f"factor classifier: test accuracy {meta['test_accuracy']} -> {path}")
    return model, meta


def evaluate(
    run_dir: str | Path,
    out: str | Path | None = None,
    classifier_path: str | Path | None = None,
    classifier_epochs: int = 6,
    seed: int = 0,
    split: str = "test",
    probes: list[str] | None = None,
    probe_max_samples: int | None = None,
    n_unconditional: int = 2000,
    data_root: str | None = None,
    skip: tuple[str, ...] = (),
    probe_factors: list[str] | None = None,
    probe_representations: list[str] | None = None,
    log=print,
) -> dict[str, Any]:
    """Run every evaluation of one DMVAE run; writes metrics.json and friends to ``out``.
    ``probe_representations``: the latents probed (default all of ``REPRESENTATIONS``)."""
    unknown = sorted(set(probe_representations or ()) - set(REPRESENTATIONS))
    if unknown:
        raise DMVAEError(
            f"--probe-representations: unknown {', '.join(unknown)}; expected some of {', '.join(REPRESENTATIONS)}"
        )
    t0 = mark = time.perf_counter()
    seconds: dict[str, float] = {}  # per part, in metrics.json: where an eval's time goes

    def part_done(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        seconds[name], mark = round(now - mark, 1), now
        log(f"{name}: {seconds[name]:.0f}s")

    run = load_run(run_dir, data_root)
    module, data = run.module, run.data
    out_dir = Path(out) if out else run.layout.eval_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    grammar = Grammar(data.manifest)
    cls_path = Path(classifier_path) if classifier_path else out_dir / "factor_classifier.pt"
    classifier, cls_meta = get_classifier(cls_path, data, classifier_epochs, seed, log)
    part_done("factor classifier")
    metrics: dict[str, Any] = {
        # paths relative to the folder of metrics.json (mmcl.paths)
        "run": relative_to_folder(run.layout.root, out_dir),
        "stage2_checkpoint": relative_to_folder(run.checkpoint, out_dir),
        "global_step": run.global_step,
        "delta": module.deltas,
        "specific_size": module.specific_sizes,
        "encoding_size": module.content_size,
        "split": split,
        "seed": seed,
        "factor_classifier": {
            "path": relative_to_folder(cls_path, out_dir),
            "test_accuracy": cls_meta.get("test_accuracy"),
        },
    }
    log("coherence ...")
    coh = coherence(module, classifier, grammar, data, split, seed, run.specific_priors)
    real_feats = coh.pop("_features_real")
    t2i_feats = coh.pop("_features_text2image", None)
    metrics["coherence"] = coh
    part_done("coherence")
    fd: dict[str, float] = {}
    if t2i_feats is not None:
        fd["text2image"] = frechet_distance(t2i_feats, real_feats)
    if run.prior is not None and "unconditional" not in skip:
        log("unconditional samples ...")
        unc = unconditional(run, classifier, grammar, n_unconditional, seed)
        feats = unc.pop("_features", None)
        if feats is not None:
            fd["unconditional"] = frechet_distance(feats, real_feats)
        metrics["unconditional"] = unc
        part_done("unconditional samples")
    metrics["fd_factor_classifier"] = fd
    log("test ELBO ...")
    metrics["elbo"] = test_elbo(module, data, split, seed)
    part_done("test ELBO")
    if "probing" not in skip:
        log("embeddings + probing ...")
        arrays = {s: encode_split(module, data, s, seed) for s in ("val", split)}
        emb_dir = out_dir / "embeddings"
        wanted = probe_representations or REPRESENTATIONS
        reps = tuple(r for r in REPRESENTATIONS if r in arrays[split] and r in wanted)
        part_done("embeddings")
        write_embeddings(
            emb_dir,
            arrays,
            data.manifest,
            reps,
            {
                "command": "mmcl dmvae eval",
                "checkpoint": str(run.checkpoint.resolve()),
                "global_step": run.global_step,
                "seed": seed,
                "dataset": str(data.root),
            },
        )
        results = probing(
            emb_dir,
            out_dir / "probing",
            probes or ["linear", "kernel_ridge", "logistic", "mlp"],
            seed,
            probe_max_samples,
            probe_factors,
            log,
            reps,
        )
        factors = [f for f in numeric_factors(data.manifest) if any(r["factor"] == f for r in results)]
        matrix = probing_matrix(results, factors)
        roles = {f: m["role"] for f, m in numeric_factors(data.manifest).items()}
        plot_probing_matrix(
            matrix,
            factors,
            roles,
            out_dir / "probing_matrix.png",
            f"DMVAE probing matrix (delta {module.deltas}, step {run.global_step})",
        )
        write_csv(
            out_dir / "probing_matrix.csv",
            [
                {"family": fam, "representation": rep, "factor": f, **cell}
                for fam, reps_ in matrix.items()
                for rep, cells in reps_.items()
                for f, cell in cells.items()
            ],
        )
        metrics["leakage"] = leakage(matrix, tuple(classifier.factors))
        part_done("probing")
        if "critic" not in skip:
            log("fresh-critic MI ...")
            metrics["mi_fresh_critic"] = {
                # I(c; m_i) of the model's stochastic m_i: one draw per example (a collapsed
                # posterior's mean can vary with x while its draws carry nothing)
                rep: fresh_critic_mi(
                    arrays["val"]["c"],
                    arrays["val"][f"{rep}_sample"],
                    arrays[split]["c"],
                    arrays[split][f"{rep}_sample"],
                    seed,
                )
                for rep in ("m_image", "m_text")
                if rep in arrays[split]
            }
            # I(content factors; m_i): c also carries what only the image shows (MoPoE-InfoNCE
            # contrasts c_A with a full set that contains A), which m_image must keep, so
            # I(c; m_image) > 0 even when no content is left (docs/dmvae, critic decomposition)
            present = [f for f in classifier.factors if f"factor:{f}" in arrays[split]]
            if present:
                sizes = {
                    f: int(max(arrays[s][f"factor:{f}"].max() for s in ("val", split))) + 1 for f in present
                }
                onehot = {s: content_one_hot(arrays[s], present, sizes) for s in ("val", split)}
                metrics["mi_fresh_critic_content"] = {
                    rep: fresh_critic_mi(
                        onehot["val"],
                        arrays["val"][f"{rep}_sample"],
                        onehot[split],
                        arrays[split][f"{rep}_sample"],
                        seed,
                    )
                    for rep in ("m_image", "m_text")
                    if rep in arrays[split]
                }
            part_done("fresh-critic MI")
    rows = []
    for direction in ("text2image", "image2text"):
        for f, v in coh.get(direction, {}).items():
            rows.append(
                {
                    "direction": direction,
                    "factor": f,
                    "coherence": v,
                    "classifier_test_accuracy": (cls_meta.get("test_accuracy") or {}).get(f, "")
                    if direction == "text2image"
                    else "",
                }
            )
    write_csv(out_dir / "coherence.csv", rows)
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    metrics["part_seconds"] = seconds
    write_json(out_dir / "metrics.json", metrics)
    log(summary(metrics, run.layout.root))
    return metrics


def summary(metrics: dict, run_dir: str | Path | None = None) -> str:
    lines = [
        f"DMVAE eval of {run_dir or metrics['run']} (step {metrics['global_step']}, delta {metrics['delta']})"
    ]
    acc = metrics["factor_classifier"]["test_accuracy"] or {}
    lines.append("  factor classifier test accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    for direction, vals in metrics["coherence"].items():
        if isinstance(vals, dict):
            lines.append(f"  coherence {direction}: " + ", ".join(f"{k} {v:.3f}" for k, v in vals.items()))
    for m, vals in metrics["elbo"].items():
        lines.append(
            f"  test ELBO {m}: {vals['elbo']:.1f} nats (log-lik {vals['log_likelihood']:.1f}, "
            f"KL {vals['kl']:.1f}, I_hat {vals['mi_estimate']:.3f})"
        )
    if metrics.get("fd_factor_classifier"):
        lines.append(
            "  FD (factor-classifier features): "
            + ", ".join(f"{k} {v:.3f}" for k, v in metrics["fd_factor_classifier"].items())
        )
    for rep, est in (metrics.get("mi_fresh_critic") or {}).items():
        lines.append(
            f"  I(c; {rep}) by a fresh critic: {est['density_ratio']:.3f} nats "
            f"(DV lower bound {est['dv_lower_bound']:.3f}, {est['steps']} steps)"
        )
    for rep, est in (metrics.get("mi_fresh_critic_content") or {}).items():
        lines.append(
            f"  I(shape, x, y; {rep}) by a fresh critic: {est['density_ratio']:.3f} nats ({est['steps']} steps)"
        )
    for rep, fam in (metrics.get("leakage") or {}).items():
        what = "content" if rep.startswith("c") else "leakage"
        for family in ("linear", "nonlinear"):
            if family in fam:
                lines.append(
                    f"  {what} {rep} ({family}): "
                    + ", ".join(
                        f"{f} {v:.3f} (chance {fam['chance'][f]:.3f})" for f, v in fam[family].items()
                    )
                )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmcl dmvae eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run directory of `mmcl dmvae fit`")
    p.add_argument("--out", default=None, help="output folder (default RUN/eval)")
    p.add_argument(
        "--classifier",
        default=None,
        help="factor classifier file: reused if trained on this dataset, else trained and saved "
        "(default OUT/factor_classifier.pt)",
    )
    p.add_argument("--classifier-epochs", type=int, default=6)
    p.add_argument(
        "--split", default="test", help="split of coherence, ELBO and probe scoring (default test)"
    )
    p.add_argument("--probes", nargs="+", default=None, help="linear kernel_ridge logistic mlp (default all)")
    p.add_argument("--probe-max-samples", type=int, default=None, help="subsample val/test for the probes")
    p.add_argument(
        "--probe-factors", nargs="+", default=None, help="factors to probe (default: every numeric one)"
    )
    p.add_argument(
        "--probe-representations",
        nargs="+",
        default=None,
        help=f"latents to probe (default all: {' '.join(REPRESENTATIONS)})",
    )
    p.add_argument(
        "--n-unconditional", type=int, default=2000, help="unconditional samples for FD / parse rate"
    )
    p.add_argument(
        "--skip", nargs="*", default=[], help="parts to skip: probing (implies critic) critic unconditional"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="dataset root (default: the run's data.root)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        evaluate(
            args.run,
            args.out,
            args.classifier,
            args.classifier_epochs,
            args.seed,
            args.split,
            args.probes,
            args.probe_max_samples,
            args.n_unconditional,
            args.data,
            tuple(args.skip),
            args.probe_factors,
            args.probe_representations,
        )
    except (DMVAEError, DataError) as exc:
        return user_error("mmcl dmvae eval", exc)
    return 0
