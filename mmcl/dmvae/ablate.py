"""``mmcl dmvae ablate``: the delta ablation of seed 003 §9.3.2 (Fig. 9.2b, 9.3).

    mmcl dmvae ablate --config configs/dmvae/default.yaml --deltas 0 10 100 400 1600 --out DIR [KEY VALUE ...]

Stage 1 is trained once (``DIR/stage1``, or reused with ``--stage1_checkpoint``); for every
delta a stage-2 run ``DIR/delta_<d>`` is fitted on that frozen stage 1 with
``stage2.model.delta = d`` for both modalities, or with ``--modality image`` (``text``) a run
``DIR/delta_image_<d>`` with delta d for that modality only and the other modality's delta held
at ``--other-delta`` (default: the config's), so each delta_i is swept on its own; then
evaluated with one shared factor
classifier (``DIR/factor_classifier.pt``). Extra arguments go to every ``mmcl dmvae fit``.
Everything is resumable: finished fits are skipped, evaluations are reused when their
``metrics.json`` belongs to the run's current checkpoint. Stage-2 fits of different deltas are
independent, so they may also be run side by side beforehand (``mmcl dmvae fit ... --out
DIR/delta_<d> --stages [2,gmm] --stage1_checkpoint DIR/stage1/checkpoints/last.ckpt
--stage2.model.delta <d>``); ``ablate`` then only evaluates and plots.

Outputs: ``DIR/ablation.json``, ``DIR/ablation.csv`` (one row per delta) and
``DIR/ablation.png``: content leakage into m_img and m_txt (MLP and logistic probe accuracy
on shape / x / y against chance), coherence (text -> image, image -> text) and the test ELBO
per modality, each against delta on the thesis' axis (linear to 50, logarithmic above).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmcl.cli import renamed_flags, user_error
from mmcl.dmvae.classifier import content_factor_sizes
from mmcl.dmvae.evaluate import evaluate
from mmcl.dmvae.fit import fit
from mmcl.dmvae.io import DMVAEError, RunLayout, read_checkpoint, save_figure
from mmcl.dmvae.run import load_run
from mmcl.io import write_csv, write_json
from mmcl.manifest import DataError
from mmcl.paths import relative_to_folder

THESIS_DELTAS = (0.0, 10.0, 100.0, 400.0, 1600.0)


def delta_dir(root: Path, delta: float, modality: str = "both") -> Path:
    return root / (f"delta_{delta:g}" if modality == "both" else f"delta_{modality}_{delta:g}")


def delta_argument(delta: float, modality: str, other_delta: float | None) -> str:
    """The ``--stage2.model.delta`` value of one ablation point."""
    if modality == "both":
        return str(float(delta))
    other = "text" if modality == "image" else "image"
    return json.dumps({modality: float(delta), other: float(other_delta)})


def configured_delta(config: str, fit_args: list[str], modality: str) -> float:
    """The delta the config (and the extra fit arguments) give the modality held fixed."""
    from mmcl.dmvae.fit import parse_config

    _, cfg = parse_config(["--config", config, *fit_args])
    value = cfg.stage2.model.delta
    other = "text" if modality == "image" else "image"
    return float(value[other] if isinstance(value, dict) else value)


def ablation_row(delta: float, metrics: dict) -> dict[str, Any]:
    row: dict[str, Any] = {"delta": delta, "global_step": metrics["global_step"]}
    for direction in ("text2image", "image2text"):
        for f, v in metrics["coherence"].get(direction, {}).items():
            row[f"coherence_{direction}_{f}"] = v
    for m, vals in metrics["elbo"].items():
        row[f"elbo_{m}"] = vals["elbo"]
        row[f"mi_estimate_{m}"] = vals["mi_estimate"]
    for rep, fam in (metrics.get("leakage") or {}).items():
        for family in ("linear", "nonlinear"):
            for f, v in fam.get(family, {}).items():
                row[f"leakage_{rep}_{family}_{f}"] = v
        for f, v in fam.get("chance", {}).items():
            row[f"chance_{f}"] = v
    for k, v in (metrics.get("fd_factor_classifier") or {}).items():
        row[f"fd_factor_classifier_{k}"] = v
    for rep, est in (metrics.get("mi_fresh_critic") or {}).items():
        row[f"mi_fresh_critic_{rep}"] = est.get("density_ratio")
    for rep, est in (metrics.get("mi_fresh_critic_content") or {}).items():
        row[f"mi_content_critic_{rep}"] = est.get("density_ratio")
    for direction in (
        "reconstruction_image",
        "reconstruction_text",
        "text2image_aggregate",
        "image2text_aggregate",
        "text2image_gmm",
        "image2text_gmm",
    ):
        for f, v in metrics["coherence"].get(direction, {}).items():
            row[f"coherence_{direction}_{f}"] = v
    return row


def plot_ablation(rows: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["delta"])
    x = [r["delta"] for r in rows]
    colours = {
        "object_shape": "tab:blue",
        "object_xpos": "tab:orange",
        "object_ypos": "tab:green",
        "all": "black",
    }
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))

    def axis(ax, label):
        ax.set_xscale("symlog", linthresh=50, linscale=1.0)
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.set_xlabel("delta (linear to 50, log above)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)

    # the content factors the runs' evaluations measured (their classifier's: the manifest's
    # discrete content factors), in their order
    content = [k.removeprefix("chance_") for k in rows[0] if k.startswith("chance_")]
    spare = iter(("tab:red", "tab:cyan", "tab:olive", "tab:pink", "tab:gray"))
    colours.update({f: next(spare, "tab:gray") for f in content if f not in colours})
    for ax, rep in zip(axes[:2], ("m_image", "m_text")):
        for f in content:
            for family, style in (("nonlinear", "-o"), ("linear", "--s")):
                key = f"leakage_{rep}_{family}_{f}"
                if all(key in r for r in rows):
                    ax.plot(
                        x,
                        [r[key] for r in rows],
                        style,
                        color=colours[f],
                        ms=4,
                        label=f"{f} ({'MLP' if family == 'nonlinear' else 'logistic'})",
                    )
            if all(f"chance_{f}" in r for r in rows):
                ax.axhline(rows[0][f"chance_{f}"], color=colours[f], lw=0.8, ls=":")
        axis(ax, f"content accuracy from {rep} (dotted: chance)")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"content leakage into {rep}", fontsize=9)
        ax.legend(fontsize=6)
    ax = axes[2]
    for direction, style in (("text2image", "-o"), ("image2text", "--s")):
        for f in (*content, "all"):
            key = f"coherence_{direction}_{f}"
            if all(key in r for r in rows):
                ax.plot(x, [r[key] for r in rows], style, color=colours[f], ms=4, label=f"{direction} {f}")
    axis(ax, "coherence")
    ax.set_ylim(0, 1.02)
    ax.set_title("cross-modal coherence", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[3]
    for m, colour in (("image", "tab:purple"), ("text", "tab:brown")):
        key = f"elbo_{m}"
        if all(key in r for r in rows):
            base = rows[0][key]
            ax.plot(
                x,
                [r[key] - base for r in rows],
                "-o",
                color=colour,
                ms=4,
                label=f"{m} (delta {x[0]:g}: {base:.1f} nats)",
            )
    axis(ax, "test ELBO minus ELBO at the smallest delta (nats)")
    ax.set_title("test ELBO per modality", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(title or "DMVAE delta ablation (seed 003 §9.3.2)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _metrics_current(eval_dir: Path, layout: RunLayout) -> dict | None:
    path = eval_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    ckpt = read_checkpoint(layout.checkpoint("2"), "stage-2")
    return metrics if metrics.get("global_step") == ckpt.get("global_step") else None


def ablate(
    config: str,
    deltas: list[float],
    out: str | Path,
    fit_args: list[str] | None = None,
    stage1_checkpoint: str | None = None,
    classifier_epochs: int = 6,
    seed: int = 0,
    probe_all_factors: bool = False,
    modality: str = "both",
    other_delta: float | None = None,
    log=print,
) -> list[dict]:
    fit_args = list(fit_args or [])
    for d in deltas:
        if not d >= 0:
            raise DMVAEError(f"--deltas must all be >= 0, got {d}")
    if modality not in ("both", "image", "text"):
        raise DMVAEError(f"--modality must be both, image or text, got {modality!r}")
    if modality != "both" and other_delta is None:
        other_delta = configured_delta(config, fit_args, modality)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    if stage1_checkpoint is None:
        fit(["--config", config, "--out", str(root), "--stages", "[1]", *fit_args], log)
        stage1_checkpoint = str(RunLayout(root).checkpoint("1"))
    rows = []
    for d in deltas:
        run = delta_dir(root, d, modality)
        log(f"== delta {d:g}: {run}")
        fit(
            [
                "--config",
                config,
                "--out",
                str(run),
                "--stages",
                "[2,gmm]",
                "--stage1_checkpoint",
                stage1_checkpoint,
                *fit_args,
                "--stage2.model.delta",
                delta_argument(d, modality, other_delta),
            ],
            log,
        )
        layout = RunLayout(run)
        metrics = _metrics_current(layout.eval_dir, layout)
        if metrics is None:
            content = content_factor_sizes(load_run(run).data.manifest.content_factors())
            metrics = evaluate(
                run,
                classifier_path=root / "factor_classifier.pt",
                classifier_epochs=classifier_epochs,
                seed=seed,
                probes=["logistic", "mlp"] if not probe_all_factors else None,
                probe_factors=None if probe_all_factors else list(content),
                log=log,
            )
        else:
            log(f"delta {d:g}: reusing {layout.eval_dir / 'metrics.json'}")
        rows.append({"modality": modality, **ablation_row(d, metrics)})
    write_csv(root / "ablation.csv", rows)
    write_json(
        root / "ablation.json",
        {
            "config": config,
            "fit_args": fit_args,
            "stage1_checkpoint": stage1_checkpoint,
            "modality": modality,
            "other_delta": other_delta,
            "rows": rows,
        },
    )
    plot_ablation(
        rows,
        root / "ablation.png",
        "" if modality == "both" else f"delta_{modality} ablation (other modality's delta {other_delta:g})",
    )
    log(f"ablation: {root / 'ablation.csv'}, {root / 'ablation.png'}")
    return rows


def collect(metrics_files: dict[float, Path], out: Path, title: str = "") -> list[dict]:
    """The ablation table and plot from ``mmcl dmvae eval`` outputs given per delta (runs made
    elsewhere or earlier, e.g. side by side): ``OUT.json``, ``OUT.csv``, ``OUT.png``."""
    rows = []
    for d, path in sorted(metrics_files.items()):
        if not Path(path).is_file():
            raise DMVAEError(f"{path}: no metrics.json for delta {d:g} (run `mmcl dmvae eval` first)")
        rows.append(ablation_row(d, json.loads(Path(path).read_text())))
    sources = {f"{d:g}": relative_to_folder(p, out.parent) for d, p in metrics_files.items()}
    write_json(out.with_suffix(".json"), {"rows": rows, "metrics": sources})
    write_csv(out.with_suffix(".csv"), rows)
    plot_ablation(rows, out.with_suffix(".png"), title)
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmcl dmvae ablate", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="DMVAE YAML (configs/dmvae/*.yaml); not needed with --collect")
    p.add_argument("--deltas", type=float, nargs="+", default=list(THESIS_DELTAS))
    p.add_argument("--out", required=True, help="ablation folder (stage1/, delta_<d>/, ablation.*)")
    p.add_argument("--stage1_checkpoint", default=None, help="reuse this stage-1 checkpoint")
    p.add_argument("--classifier-epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed")
    p.add_argument(
        "--modality",
        default="both",
        choices=("both", "image", "text"),
        help="sweep delta for both modalities at once, or for one with the other held fixed",
    )
    p.add_argument(
        "--other-delta",
        type=float,
        default=None,
        help="delta of the modality held fixed with --modality (default: the config's)",
    )
    p.add_argument(
        "--probe-all-factors",
        action="store_true",
        help="probe every factor (default: the content factors, the leakage the ablation plots)",
    )
    p.add_argument(
        "--collect",
        nargs="+",
        metavar="DELTA=METRICS_JSON",
        help="only tabulate and plot these `mmcl dmvae eval` outputs (runs made elsewhere) into "
        "OUT/ablation.{json,csv,png}; nothing is fitted",
    )
    return p


def main(argv: list[str]) -> int:
    # one spelling with `mmcl dmvae fit` and the config key
    argv = renamed_flags(argv, {"--stage1-checkpoint": "--stage1_checkpoint"}, "mmcl dmvae ablate")
    args, fit_args = build_parser().parse_known_args(argv)
    if args.collect:
        try:
            files = {}
            for item in args.collect:
                delta, sep, path = item.partition("=")
                if not sep:
                    raise DMVAEError(f"--collect takes DELTA=METRICS_JSON, got {item!r}")
                files[float(delta)] = Path(path)
            collect(files, Path(args.out) / "ablation")
        except (DMVAEError, ValueError) as exc:
            return user_error("mmcl dmvae ablate", exc)
        return 0
    if not args.config:
        return user_error("mmcl dmvae ablate", DMVAEError("--config is required (or --collect)"))
    try:
        ablate(
            args.config,
            args.deltas,
            args.out,
            fit_args,
            args.stage1_checkpoint,
            args.classifier_epochs,
            args.seed,
            args.probe_all_factors,
            args.modality,
            args.other_delta,
        )
    except (DMVAEError, DataError) as exc:
        return user_error("mmcl dmvae ablate", exc)
    return 0
