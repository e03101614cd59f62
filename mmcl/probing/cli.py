"""``mmcl probe DIR``: linear and nonlinear probes of every factor (SPEC §4, seed 003 §2.5.1).

Reads ``DIR/embeddings_{val,test}.npz`` + ``DIR/embeddings.json`` (docs/formats.md), fits the
probes on val, scores them on test, and writes ``results.{csv,json,md,png}`` to ``--out``
(default ``DIR/probe``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from mmcl.cli import user_error
from mmcl.paths import relative_to_folder
from mmcl.probing.io import EmbeddingsError, load_embeddings
from mmcl.probing.probes import ALL_PROBES, CV_FOLDS, ProbeResult, probe_representation
from mmcl.probing.report import write_all


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmcl probe", description=__doc__.splitlines()[0])
    p.add_argument("directory", help="directory with embeddings_{val,test}.npz and embeddings.json")
    p.add_argument("--out", help="output directory (default DIR/probe)")
    p.add_argument(
        "--probes",
        type=_csv_list,
        default=list(ALL_PROBES),
        help=f"comma-separated subset of {','.join(ALL_PROBES)} (default: all)",
    )
    p.add_argument("--representations", type=_csv_list, help="comma-separated representations (default: all)")
    p.add_argument("--factors", type=_csv_list, help="comma-separated factors (default: all listed)")
    p.add_argument(
        "--max-samples", type=int, help="at most this many samples per split (seeded random subset)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the subset and of the classifiers (default 0)"
    )
    p.add_argument("--fit-split", default="val", help="split the probes are fitted on (default val)")
    p.add_argument("--test-split", default="test", help="split the probes are scored on (default test)")
    p.add_argument(
        "--device", default="auto", help="torch device of the kernel ridge probe (auto, cpu, cuda)"
    )
    p.add_argument(
        "--solver",
        default="eigh",
        choices=["eigh", "cholesky"],
        help="kernel ridge solver: one eigendecomposition per gamma and fold (eigh, default) or one "
        "Cholesky factorisation per alpha (cholesky; same numbers, faster on small CPUs)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads")
    return p


def run_probes(
    directory: str | Path,
    out: str | Path | None = None,
    probes: list[str] | None = None,
    representations: list[str] | None = None,
    factors: list[str] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    fit_split: str = "val",
    test_split: str = "test",
    device: str | None = "auto",
    solver: str = "eigh",
    log=print,
) -> tuple[list[ProbeResult], dict[str, Any]]:
    """The library entry point behind ``mmcl probe``; returns the results and the JSON header."""
    probes = list(ALL_PROBES) if probes is None else list(probes)
    bad = [p for p in probes if p not in ALL_PROBES]
    if bad or not probes:
        raise EmbeddingsError(f"unknown probe(s) {bad}; choose from {', '.join(ALL_PROBES)}")
    if max_samples is not None and max_samples < CV_FOLDS:
        raise EmbeddingsError(
            f"--max-samples {max_samples} is fewer than the {CV_FOLDS} cross-validation folds"
        )
    emb = load_embeddings(directory, (fit_split, test_split), representations, factors, max_samples, seed)
    n_fit = len(next(iter(emb.features.values()))[fit_split])
    if n_fit < CV_FOLDS:
        raise EmbeddingsError(
            f"{Path(directory) / f'embeddings_{fit_split}.npz'} has {n_fit} samples, fewer than "
            f"the {CV_FOLDS} cross-validation folds of the kernel ridge probe"
        )
    notes: list[str] = []
    results: list[ProbeResult] = []
    t0 = time.perf_counter()
    for rep in emb.meta["representations"]:
        chosen: dict[str, tuple] = {}
        for name in emb.factors_of(rep):
            meta = emb.factor_meta(name)
            y_fit, y_test = emb.targets[name][fit_split], emb.targets[name][test_split]
            if meta.get("n_values") == 1 or len(set(y_fit.tolist())) < 2:
                notes.append(f"{rep}/{name}: constant factor (one value) skipped")
                continue
            chosen[name] = (y_fit, y_test, meta)
        if not chosen:
            continue
        log(f"probing {rep}: {len(chosen)} factors, {n_fit} fitting samples")
        results += probe_representation(
            rep,
            emb.features[rep][fit_split],
            emb.features[rep][test_split],
            chosen,
            tuple(probes),
            seed,
            None if device == "auto" else device,
            solver,
        )
    if not results:
        raise EmbeddingsError(f"nothing to probe in {directory}: every selected factor is constant")
    out_dir = Path(out) if out is not None else Path(directory) / "probe"
    header = {
        "input": relative_to_folder(directory, out_dir),  # relative to results.json's folder
        "fit_split": fit_split,
        "test_split": test_split,
        "probes": probes,
        "seed": seed,
        "max_samples": max_samples,
        "embeddings_seed": emb.meta.get("seed"),
        "kernel_ridge_grid": {
            "alpha": [1.0, 0.1, 0.01, 0.001],
            "gamma": "logspace(-2, 2, 4)",
            "cv": CV_FOLDS,
            "solver": solver,
        },
        "seconds": round(time.perf_counter() - t0, 3),
        "notes": notes,
    }
    write_all(results, header, out_dir)
    return results, header


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        results, header = run_probes(
            args.directory,
            args.out,
            args.probes,
            args.representations,
            args.factors,
            args.max_samples,
            args.seed,
            args.fit_split,
            args.test_split,
            args.device,
            args.solver,
        )
    except EmbeddingsError as err:
        return user_error("mmcl probe", err)
    out_dir = Path(args.out) if args.out else Path(args.directory) / "probe"
    print((out_dir / "results.md").read_text())
    print(f"wrote {out_dir}/results.{{csv,json,md,png}} ({len(results)} probes, {header['seconds']:.1f}s)")
    return 0
