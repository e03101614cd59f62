"""``mmcl dmvae generate``: cross-modal and unconditional sample grids (seed 003 Fig. 9.1).

    mmcl dmvae generate --run RUN [--modes text2image image2text unconditional] [--columns 8] [--rows 5]

Every grid follows Fig. 9.1b: along a *column* the content c is the same, along a *row* the
modality-specific m is the same: rows are draws from the prior N(0, I) (the thesis), or with
``--specific-prior gmm`` from the density the ``gmm`` stage fitted on the aggregate posterior
of m_i (``RUN/gmm_m_<modality>.npz``; docs/dmvae says when this matters).

* text2image: c = mean of q(c | x_txt) of test sentences (printed above their columns);
* image2text: c = mean of q(c | x_img) of test images (shown in the top row), generated
  sentences in the cells (sampled token by token, seeded), each marked when it does not parse;
* unconditional: c ~ GMM prior (``RUN/gmm.npz``), one image grid and one text grid sharing c.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import torch

from mmcl.cli import user_error
from mmcl.dmvae.data import add_unit_images
from mmcl.dmvae.gmm import ContentPrior
from mmcl.dmvae.grammar import Grammar
from mmcl.dmvae.io import DMVAEError, save_figure
from mmcl.dmvae.protocol import EvaluatedModel
from mmcl.dmvae.run import load_run
from mmcl.io import write_json
from mmcl.manifest import DataError
from mmcl.paths import relative_to_folder

MODES = ("text2image", "image2text", "unconditional")


SPECIFIC_PRIORS = ("normal", "gmm")


def rows_are(module: EvaluatedModel, modality: str, specific_prior: str = "normal") -> str:
    """What a grid's rows vary: a draw of m_i (from N(0, I) or the fitted density), or nothing
    for a model without m_i (the MVAE/MMVAE/MoPoE baselines: image rows repeat, text rows are
    token-sampling draws)."""
    name = "m_img" if modality == "image" else "m_txt"
    if module.specific_sizes[modality]:
        return f"one {name} ~ " + ("N(0, I)" if specific_prior == "normal" else f"GMM of q({name} | x)")
    return f"{'a repeat' if modality == 'image' else 'one sampled sentence'} (this model has no {name})"


@torch.no_grad()
def prior_specific(
    module: EvaluatedModel, modality: str, n: int, seed: int, density: ContentPrior | None = None
) -> torch.Tensor:
    """``n`` draws of m_modality from N(0, I), or from ``density`` (a fitted GMM) when given."""
    if density is not None and module.specific_sizes[modality]:
        return density.sample(n, seed)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, module.specific_sizes[modality], generator=g)


@torch.no_grad()
def decode_grid(
    module: EvaluatedModel,
    modality: str,
    content: torch.Tensor,
    specific: torch.Tensor,
    seed: int = 0,
    greedy: bool = False,
) -> torch.Tensor:
    """Outputs for every (row r, column k) pair of ``specific[r]`` and ``content[k]``:
    images (R, K, 3, H, W) in [0, 1] or token ids (R, K, L), sentences sampled token by token
    (seeded) so that the rows show the variety the decoder has learnt, or greedy."""
    r, k = len(specific), len(content)
    c = content.unsqueeze(0).expand(r, k, -1).reshape(r * k, -1)
    m = specific.unsqueeze(1).expand(r, k, -1).reshape(r * k, -1)
    out = module.generate(modality, c, m, greedy=greedy, generator=torch.Generator().manual_seed(seed))
    return out.reshape(r, k, *out.shape[1:])


@torch.no_grad()
def conditioning_batch(data, split: str, n: int) -> dict:
    """The first ``n`` examples of ``split`` (reading order), with ``image01``."""
    loader = data.dataloader(split, train=False, rank=0, world_size=1)
    parts: list[dict] = []
    got = 0
    for batch in loader:
        parts.append(add_unit_images(batch, data.image_mean, data.image_std))
        got += len(batch["text"])
        if got >= n:
            break
    out = {k: torch.cat([p[k] for p in parts])[:n] for k in ("image", "image01", "text")}
    return out


def _imshow(ax, image: torch.Tensor) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid_figure(
    images: torch.Tensor,
    column_titles: list[str] | None = None,
    header_images: torch.Tensor | None = None,
    title: str = "",
    row_label: str = "m ~ N(0, I)",
):
    """(R, K, 3, H, W) images as a grid; optional wrapped titles or an extra top row of images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, k = images.shape[:2]
    extra = 1 if header_images is not None else 0
    title_h = 0.9 if column_titles else 0.0
    fig, axes = plt.subplots(
        r + extra, k, figsize=(1.35 * k, 1.35 * (r + extra) + title_h + 0.4), squeeze=False
    )
    for j in range(k):
        if header_images is not None:
            _imshow(axes[0, j], header_images[j])
        for i in range(r):
            _imshow(axes[i + extra, j], images[i, j])
        if column_titles:
            axes[0, j].set_title("\n".join(textwrap.wrap(column_titles[j], 22)), fontsize=5.5)
    if header_images is not None:
        axes[0, 0].set_ylabel("input", fontsize=7)
    axes[extra, 0].set_ylabel(row_label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def text_grid_figure(
    sentences: list[list[str]],
    ok: list[list[bool]],
    header_images: torch.Tensor | None = None,
    title: str = "",
):
    """(R, K) generated sentences; red text marks a sentence the grammar does not accept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, k = len(sentences), len(sentences[0])
    extra = 1 if header_images is not None else 0
    fig, axes = plt.subplots(
        r + extra,
        k,
        figsize=(1.9 * k, 1.0 * r + 1.6 * extra + 0.5),
        squeeze=False,
        gridspec_kw={"height_ratios": [1.6] * extra + [1.0] * r},
    )
    for j in range(k):
        if header_images is not None:
            _imshow(axes[0, j], header_images[j])
        for i in range(r):
            ax = axes[i + extra, j]
            ax.axis("off")
            ax.text(
                0.5,
                0.5,
                "\n".join(textwrap.wrap(sentences[i][j], 26)),
                ha="center",
                va="center",
                fontsize=5.5,
                color="black" if ok[i][j] else "tab:red",
                transform=ax.transAxes,
            )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def generate(
    run_dir: str | Path,
    modes: list[str],
    columns: int = 8,
    rows: int = 5,
    seed: int = 0,
    split: str = "test",
    out: str | Path | None = None,
    data_root: str | None = None,
    specific_prior: str = "normal",
    log=print,
) -> dict:
    """Write the sample grids of ``modes`` to ``out`` (default RUN/samples); returns what was made."""
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise DMVAEError(f"--modes takes {', '.join(MODES)}, got {modes}")
    if specific_prior not in SPECIFIC_PRIORS:
        raise DMVAEError(f"--specific-prior takes {' or '.join(SPECIFIC_PRIORS)}, got {specific_prior!r}")
    if columns < 1 or rows < 1:
        raise DMVAEError(f"--columns and --rows must be >= 1, got {columns} and {rows}")
    run = load_run(run_dir, data_root, need_prior="unconditional" in modes)
    module, data = run.module, run.data
    densities: dict = {}
    if specific_prior == "gmm":
        densities = run.specific_priors
        missing = [m for m in module.modalities if module.specific_sizes[m] and m not in densities]
        if missing:
            raise DMVAEError(
                f"--specific-prior gmm: {run.layout.specific_gmm(missing[0])} not found; fit it with "
                f"`mmcl dmvae fit --stages [gmm] --out {run.layout.root}`"
            )
    grammar = Grammar(data.manifest)
    out_dir = Path(out) if out else run.layout.samples_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict = {
        "run": relative_to_folder(run.layout.root, out_dir),
        "global_step": run.global_step,
        "seed": seed,
        "rows": {m: rows_are(module, m, specific_prior) for m in module.modalities},
        "files": {},
    }
    image_row_label = (
        ("m ~ N(0, I)" if specific_prior == "normal" else "m ~ GMM")
        if module.specific_sizes.get("image")
        else "no m"
    )
    cond = conditioning_batch(data, split, columns) if {"text2image", "image2text"} & set(modes) else None
    if cond is not None and len(cond["text"]) < columns:
        raise DMVAEError(f"split {split!r} has only {len(cond['text'])} examples for {columns} columns")

    def text_cells(ids: torch.Tensor) -> tuple[list[list[str]], list[list[bool]]]:
        sents = [[grammar.detokenize(ids[i, j]) for j in range(ids.shape[1])] for i in range(ids.shape[0])]
        ok = [
            [grammar.parse_ids(ids[i, j]) is not None for j in range(ids.shape[1])]
            for i in range(ids.shape[0])
        ]
        return sents, ok

    def grid(modality: str, content: torch.Tensor, grid_seed: int) -> torch.Tensor:
        """Column k = content[k], row r = the r-th draw of m (seeded by ``grid_seed``)."""
        specific = prior_specific(module, modality, rows, grid_seed, densities.get(modality))
        return decode_grid(module, modality, content, specific, grid_seed)

    with torch.no_grad():
        if "text2image" in modes and "image" in module.modalities:
            content = module.content_model.content(text=cond["text"]).mean
            images = grid("image", content, seed)
            sentences = [grammar.detokenize(t) for t in cond["text"]]
            fig = image_grid_figure(
                images,
                sentences,
                title=f"text -> image: column = c of the sentence above, row = {made['rows']['image']}",
                row_label=image_row_label,
            )
            path = out_dir / "text2image.png"
            save_figure(fig, path)
            made["files"]["text2image"] = path.name
        if "image2text" in modes and "text" in module.modalities:
            content = module.content_model.content(image=cond["image"]).mean
            ids = grid("text", content, seed)
            sents, ok = text_cells(ids)
            fig = text_grid_figure(
                sents,
                ok,
                cond["image01"],
                title=f"image -> text: column = c of the image above, row = {made['rows']['text']} "
                "(red: not a sentence of the grammar)",
            )
            path = out_dir / "image2text.png"
            save_figure(fig, path)
            made["files"]["image2text"] = path.name
            made["image2text_sentences"] = sents
        if "unconditional" in modes:
            content = run.prior.sample(columns, seed)
            if "image" in module.modalities:
                images = grid("image", content, seed + 1)
                fig = image_grid_figure(
                    images,
                    title=f"unconditional images: column = one c ~ GMM, row = {made['rows']['image']}",
                    row_label=image_row_label,
                )
                path = out_dir / "unconditional_image.png"
                save_figure(fig, path)
                made["files"]["unconditional_image"] = path.name
            if "text" in module.modalities:
                ids = grid("text", content, seed + 2)
                sents, ok = text_cells(ids)
                fig = text_grid_figure(
                    sents,
                    ok,
                    title=f"unconditional text: the same columns of c ~ GMM, row = {made['rows']['text']}",
                )
                path = out_dir / "unconditional_text.png"
                save_figure(fig, path)
                made["files"]["unconditional_text"] = path.name
                made["unconditional_sentences"] = sents
    write_json(out_dir / "samples.json", made)
    for name, path in made["files"].items():
        log(f"{name}: {out_dir / path}")
    return made


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmcl dmvae generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run directory of `mmcl dmvae fit`")
    p.add_argument("--modes", nargs="+", default=list(MODES), help=f"any of {', '.join(MODES)}")
    p.add_argument("--columns", type=int, default=8, help="columns = different c (default 8)")
    p.add_argument("--rows", type=int, default=5, help="rows = different m (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", help="split of the conditioning examples (default test)")
    p.add_argument("--data", default=None, help="dataset root (default: the run's data.root)")
    p.add_argument("--out", default=None, help="output folder (default RUN/samples)")
    p.add_argument(
        "--specific-prior",
        default="normal",
        choices=SPECIFIC_PRIORS,
        help="rows draw m_i from N(0, I) (thesis, default) or the GMM fitted on q(m_i | x) by the gmm stage",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        generate(
            args.run,
            args.modes,
            args.columns,
            args.rows,
            args.seed,
            args.split,
            args.out,
            args.data,
            args.specific_prior,
        )
    except (DMVAEError, DataError) as exc:
        return user_error("mmcl dmvae generate", exc)
    return 0
