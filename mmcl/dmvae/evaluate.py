"""``mmcl dmvae eval``: coherence, probing matrix, test ELBO and a Fréchet distance (seed 003 §9.3).

    mmcl dmvae eval --run RUN [--classifier PATH] [--out RUN/eval]

What each figure is and how it is measured: :mod:`mmcl.dmvae.metrics`; this module picks the run,
the factor classifier and the parts to run, times them and writes metrics.json, the embeddings,
the probing matrix and its plot.
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
from mmcl.dmvae.grammar import Grammar
from mmcl.dmvae.io import DMVAEError, save_figure
from mmcl.dmvae.metrics import (
    REPRESENTATIONS,
    coherence,
    content_one_hot,
    encode_split,
    leakage,
    numeric_factors,
    probing,
    probing_matrix,
    test_elbo,
    unconditional,
)
from mmcl.dmvae.run import load_run
from mmcl.io import save_npz, write_csv, write_json
from mmcl.manifest import DataError, Manifest
from mmcl.paths import relative_to_folder


# ----------------------------------------------------------------------------- files
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
